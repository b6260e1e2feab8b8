//! The transport conformance suite: every behaviour of the request path, written once and run
//! against each transport (`conformance_in_process.rs`, `amqp_conformance.rs`).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test crates

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use kernel_client::Client;
use kernel_errors::{Error, Kind};
use kernel_inst::MemoryInstrumenter;
use kernel_proto::examples::{Greeted, HelloRequest, HelloResponse};
use kernel_proto::platform::PlatformError;
use kernel_server::{Endpoint, Request, Service, codes};
use kernel_transport::{
    ContentType, Destination, Envelope, InProcessBroker, MessageType, Source, Transport, codec,
};
use tokio::sync::{Notify, mpsc, oneshot};

pub use kernel_testkit::{bounded, unique};

mod operations;
#[allow(unused_imports)] // used by the conformance suites, not by every test crate
pub use operations::*;

/// Makes transports that behave like separate processes on one broker.
pub trait Harness: Send + Sync + 'static {
    /// A new "process" on the broker under test.
    fn connect(&self) -> impl Future<Output = Arc<dyn Transport>> + Send;
}

/// The embedded broker.
pub struct InProcess(pub InProcessBroker);

impl Harness for InProcess {
    async fn connect(&self) -> Arc<dyn Transport> {
        Arc::new(self.0.connect())
    }
}

/// Each "process" is its own AMQP connection to the real RabbitMQ (`KERNEL_AMQP_URL`).
pub struct Amqp(pub String);

impl Harness for Amqp {
    async fn connect(&self) -> Arc<dyn Transport> {
        let transport = bounded(
            "an AMQP connection",
            kernel_transport::AmqpTransport::connect(&self.0),
        )
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", self.0));
        Arc::new(transport)
    }
}

/// The harness on the broker `cargo xtask services up` started.
pub fn amqp() -> Amqp {
    Amqp(kernel_testkit::engine_address("KERNEL_AMQP_URL"))
}

/// The broker's URL, a loopback proxy in front of it, and the URL that goes through the proxy.
pub async fn proxied_broker() -> (String, kernel_testkit::Proxy, String) {
    let url = kernel_testkit::engine_address("KERNEL_AMQP_URL");
    let authority = url
        .split_once('@')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("amqp://user:password@host:port/vhost")
        .to_owned();
    let proxy = kernel_testkit::Proxy::start(&authority).await;
    let through_proxy = url.replacen(&authority, &proxy.address(), 1);
    (url, proxy, through_proxy)
}

/// A running service; stops when dropped or on `stop()`.
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), Error>>,
}

impl Running {
    /// Stops the service and waits for it to finish its requests in flight.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        bounded("the service's shutdown", &mut self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `service` in the background, returning once its work queue is consumed
/// ([`Service::serving`]).
pub async fn serve(service: Service) -> Running {
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = service.clone();
    let task = tokio::spawn(service.serve_with_shutdown(async {
        let _ = stopped.await;
    }));
    bounded("the service to start consuming", handle.serving()).await;
    Running {
        stop: Some(stop),
        task,
    }
}

/// What the greeter's handlers saw.
#[derive(Default)]
pub struct Seen {
    pub hello: AtomicUsize,
    pub expired: AtomicUsize,
}

/// The greeter used by most cases: `hello` greets, `fail` returns a typed error, `panic`
/// panics on "boom", `expired` counts its executions.
pub fn greeter(
    name: &str,
    instance: &str,
    seen: Arc<Seen>,
    client: &Client,
) -> kernel_server::ServiceBuilder {
    let hello_seen = Arc::clone(&seen);
    let instance = instance.to_owned();
    let hello = move |request: Request<HelloRequest>| {
        let seen = Arc::clone(&hello_seen);
        let instance = instance.clone();
        async move {
            seen.hello.fetch_add(1, Ordering::SeqCst);
            Ok(HelloResponse {
                greeting: format!("hello, {}", request.message().name),
                served_by: instance,
            })
        }
    };
    let fail = |request: Request<HelloRequest>| async move {
        Err::<HelloResponse, _>(
            Error::not_found(
                "test.greeter.fail.nobody",
                format!("nobody called {}", request.message().name),
            )
            .with_context("greeter"),
        )
    };
    let panic = |request: Request<HelloRequest>| async move {
        if request.message().name == "boom" {
            panic!("the handler blew up");
        }
        Ok::<_, Error>(HelloResponse {
            greeting: "calm".into(),
            served_by: String::new(),
        })
    };
    let expired = move |_: Request<HelloRequest>| {
        let seen = Arc::clone(&seen);
        async move {
            seen.expired.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Error>(HelloResponse::default())
        }
    };
    Service::builder(name, client)
        .version("1.0.0")
        .endpoint(Endpoint::new("hello", hello).open())
        .endpoint(Endpoint::new("fail", fail).open())
        .endpoint(Endpoint::new("panic", panic).open())
        .endpoint(Endpoint::new("expired", expired).open())
}

/// A client on a new "process" of the harness.
pub async fn client(harness: &impl Harness) -> Client {
    Client::builder(harness.connect().await)
        .calling_as("test.caller")
        .deadline(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A greeter and a client in separate "processes", the greeter already serving.
pub async fn greeter_and_client(harness: &impl Harness) -> (String, Arc<Seen>, Running, Client) {
    let name = unique("greeter");
    let seen = Arc::new(Seen::default());
    let server_side = client(harness).await;
    let service = greeter(&name, "a", Arc::clone(&seen), &server_side)
        .build()
        .unwrap();
    let running = serve(service).await;
    (name, seen, running, client(harness).await)
}

pub fn hello(name: &str) -> HelloRequest {
    HelloRequest {
        name: name.to_owned(),
    }
}

/// Sends a raw request from a fresh "process" and returns the envelope that answers it.
async fn raw_call(harness: &impl Harness, service: &str, mut request: Envelope) -> Envelope {
    let transport = harness.connect().await;
    let mut replies = transport.consume(Source::Instance).await.unwrap();
    request.reply_to = transport.instance_queue().to_owned();
    transport
        .send(Destination::Service(service), request)
        .await
        .unwrap();
    bounded("the raw reply", replies.next())
        .await
        .expect("a reply")
        .into_parts()
        .0
}

// ---- the cases -------------------------------------------------------------------------------

pub async fn request_reply(harness: impl Harness) {
    let (service, seen, running, client) = greeter_and_client(&harness).await;
    let reply: HelloResponse = client.call(&service, "hello", &hello("ada")).await.unwrap();
    assert_eq!(reply.greeting, "hello, ada");
    assert_eq!(seen.hello.load(Ordering::SeqCst), 1);
    running.stop().await;
}

pub async fn error_reply(harness: impl Harness) {
    let (service, _, running, client) = greeter_and_client(&harness).await;
    let error = client
        .call::<HelloResponse>(&service, "fail", &hello("bob"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::NotFound);
    assert_eq!(error.code(), "test.greeter.fail.nobody");
    assert_eq!(error.description(), "nobody called bob");
    assert_eq!(error.context(), ["greeter"]);
    running.stop().await;
}

pub async fn unknown_endpoint(harness: impl Harness) {
    let (service, _, running, client) = greeter_and_client(&harness).await;
    let error = client
        .call::<HelloResponse>(&service, "nope", &hello("x"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::NotFound);
    assert_eq!(error.code(), codes::UNKNOWN_ENDPOINT);
    running.stop().await;
}

/// A call to a service nobody serves fails with `NoRoute`, not `Timeout`: the broker said so
/// at once instead of the call waiting out its 30-second deadline.
pub async fn unknown_service_fails_fast(harness: impl Harness) {
    let client = client(&harness).await;
    let service = unique("nobody");
    let request = hello("x");
    let call = client
        .call::<HelloResponse>(&service, "hello", &request)
        .deadline(Duration::from_secs(30));
    let error = bounded("the no-route error (well before the 30 s deadline)", call)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::NoRoute);
    assert_eq!(error.code(), kernel_transport::codes::NO_ROUTE);
}

/// Two services subscribed to one topic each receive a publication once.
pub async fn publication_reaches_two_services(harness: impl Harness) {
    let topic = unique("greeted");
    let (sender, mut received) = mpsc::unbounded_channel();
    let mut running = Vec::new();
    for subscriber in ["audit", "stats"] {
        let sender = sender.clone();
        let on_greeted = move |request: Request<Greeted>| {
            let sender = sender.clone();
            async move {
                let _ = sender.send((
                    subscriber,
                    request.message().name.clone(),
                    request.topic().to_owned(),
                ));
                Ok::<_, Error>(Greeted::default())
            }
        };
        let service = Service::builder(unique(subscriber), &client(&harness).await)
            .endpoint(
                Endpoint::new("greeted", on_greeted)
                    .open()
                    .subscribe(&topic),
            )
            .build()
            .unwrap();
        running.push(serve(service).await);
    }
    let publisher = client(&harness).await;
    let greeted = Greeted {
        name: "ada".into(),
        count: 1,
    };
    publisher.publish(&topic, &greeted).await.unwrap();

    let mut got = vec![
        bounded("the first subscriber", received.recv())
            .await
            .unwrap(),
        bounded("the second subscriber", received.recv())
            .await
            .unwrap(),
    ];
    got.sort();
    assert_eq!(
        got,
        [
            ("audit", "ada".to_owned(), topic.clone()),
            ("stats", "ada".to_owned(), topic.clone())
        ]
    );
    for service in running {
        service.stop().await;
    }
    assert!(
        received.try_recv().is_err(),
        "each subscriber got the publication exactly once"
    );
}

pub async fn json_and_protobuf(harness: impl Harness) {
    let (service, _, running, client) = greeter_and_client(&harness).await;
    let proto: HelloResponse = client.call(&service, "hello", &hello("pb")).await.unwrap();
    let json: HelloResponse = client
        .call(&service, "hello", &hello("js"))
        .json()
        .await
        .unwrap();
    assert_eq!(
        (proto.greeting.as_str(), json.greeting.as_str()),
        ("hello, pb", "hello, js")
    );

    // The JSON reply really is JSON, in the protobuf JSON mapping.
    let request = Envelope::request(
        &service,
        "hello",
        ContentType::Json,
        r#"{"name":"raw"}"#.into(),
    );
    let reply = raw_call(&harness, &service, request).await;
    assert_eq!(reply.content_type, ContentType::Json);
    assert_eq!(
        std::str::from_utf8(&reply.payload).unwrap(),
        r#"{"greeting":"hello, raw","servedBy":"a"}"#
    );
    running.stop().await;
}

/// Garbage in either content type, or an unknown content type, gets `BadRequest`.
pub async fn malformed_payload_is_bad_request(harness: impl Harness) {
    let (service, seen, running, _) = greeter_and_client(&harness).await;
    for (content_type, payload) in [
        (ContentType::Protobuf, &b"\xff\xff\xff\xff"[..]),
        (ContentType::Json, &b"{\"name\": 42"[..]),
        (ContentType::Unsupported, &b"<xml/>"[..]),
    ] {
        let request = Envelope::request(&service, "hello", content_type, payload.to_vec().into());
        let reply = raw_call(&harness, &service, request).await;
        assert_eq!(reply.message_type, MessageType::Error);
        let message = codec::decode::<PlatformError>(reply.content_type, &reply.payload).unwrap();
        let error = Error::from(message);
        assert_eq!(error.kind(), Kind::BadRequest, "{content_type:?}");
        assert_eq!(error.code(), codes::BAD_REQUEST);
    }
    assert_eq!(
        seen.hello.load(Ordering::SeqCst),
        0,
        "the handler never ran"
    );
    running.stop().await;
}

pub async fn panicking_handler_then_next_call_succeeds(harness: impl Harness) {
    let (service, _, running, client) = greeter_and_client(&harness).await;
    let error = client
        .call::<HelloResponse>(&service, "panic", &hello("boom"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Kind::InternalServerError);
    assert_eq!(error.code(), codes::PANIC);
    let calm: HelloResponse = client
        .call(&service, "panic", &hello("calm"))
        .await
        .unwrap();
    assert_eq!(calm.greeting, "calm");
    running.stop().await;
}

/// A request whose deadline passed before it was handled is not executed. The service holds
/// one request at a time, so once a later request is answered the expired one was settled.
pub async fn expired_request_is_not_executed(harness: impl Harness) {
    let name = unique("greeter");
    let seen = Arc::new(Seen::default());
    let service = greeter(&name, "a", Arc::clone(&seen), &client(&harness).await)
        .capacity(1)
        .build()
        .unwrap();
    let running = serve(service).await;

    let transport = harness.connect().await;
    let payload = codec::encode(ContentType::Protobuf, &hello("late")).unwrap();
    let mut expired = Envelope::request(&name, "expired", ContentType::Protobuf, payload);
    expired.deadline = Some(SystemTime::now() - Duration::from_secs(1));
    expired.reply_to = transport.instance_queue().to_owned();
    transport
        .send(Destination::Service(&name), expired)
        .await
        .unwrap();

    let client = client(&harness).await;
    let _: HelloResponse = client.call(&name, "hello", &hello("after")).await.unwrap();
    assert_eq!(
        seen.expired.load(Ordering::SeqCst),
        0,
        "the expired request ran"
    );
    assert_eq!(seen.hello.load(Ordering::SeqCst), 1);
    running.stop().await;
}

/// Says when the server counts a counter: the signal the retry tests wait on.
struct CounterSignal {
    bucket: &'static str,
    seen: Arc<Notify>,
}

impl kernel_inst::Instrumenter for CounterSignal {
    fn counter(&self, bucket: &str, _delta: i64, _sample_rate: f64) {
        if bucket == self.bucket {
            self.seen.notify_one();
        }
    }

    fn gauge(&self, _bucket: &str, _value: f64, _sample_rate: f64) {}

    fn timing(&self, _bucket: &str, _elapsed: Duration, _sample_rate: f64) {}
}

/// Attempt 1 times out and attempt 2 (same message id) reaches the instance while the first
/// still runs: the server drops the retry instead of running the handler again, and the first
/// invocation's reply, arriving during attempt 2, completes the call.
pub async fn late_reply_to_attempt_one_completes_the_call(harness: impl Harness) {
    let name = unique("slow");
    let invocations = Arc::new(AtomicUsize::new(0));
    let release_first = Arc::new(Notify::new());
    let handler = {
        let (invocations, release_first) = (Arc::clone(&invocations), Arc::clone(&release_first));
        move |_: Request<HelloRequest>| {
            let (invocations, release_first) =
                (Arc::clone(&invocations), Arc::clone(&release_first));
            async move {
                let n = invocations.fetch_add(1, Ordering::SeqCst) + 1;
                if n == 1 {
                    release_first.notified().await;
                }
                Ok::<_, Error>(HelloResponse {
                    greeting: "hi".into(),
                    served_by: format!("invocation {n}"),
                })
            }
        }
    };
    let retried = Arc::new(Notify::new());
    let signal = CounterSignal {
        bucket: "server.retry.inflight",
        seen: Arc::clone(&retried),
    };
    let service = Service::builder(&name, &client(&harness).await)
        .endpoint(Endpoint::new("hello", handler).open())
        .instrumenter(Arc::new(signal))
        .build()
        .unwrap();
    let running = serve(service).await;

    let client = client(&harness).await;
    let call = {
        let (client, name) = (client.clone(), name.clone());
        tokio::spawn(async move {
            client
                .call::<HelloResponse>(&name, "hello", &hello("x"))
                .attempt_timeout(Duration::from_millis(300))
                .attempts(3)
                .deadline(Duration::from_secs(15))
                .await
        })
    };
    bounded("the second attempt to reach the server", retried.notified()).await;
    release_first.notify_one();
    let reply = bounded("the call", call).await.unwrap().unwrap();
    assert_eq!(reply.served_by, "invocation 1");
    assert_eq!(
        invocations.load(Ordering::SeqCst),
        1,
        "the retry ran the handler again"
    );
    running.stop().await;
}

/// A retry of a request that was already answered gets the same reply again; the handler
/// does not run twice.
pub async fn an_answered_request_retried_is_answered_from_the_cache(harness: impl Harness) {
    let (service, seen, running, _) = greeter_and_client(&harness).await;
    let transport = harness.connect().await;
    let mut replies = transport.consume(Source::Instance).await.unwrap();
    let payload = codec::encode(ContentType::Protobuf, &hello("once")).unwrap();
    let mut request = Envelope::request(&service, "hello", ContentType::Protobuf, payload);
    request.reply_to = transport.instance_queue().to_owned();
    let mut answers = Vec::new();
    for _ in 0..2 {
        transport
            .send(Destination::Service(&service), request.clone())
            .await
            .unwrap();
        let reply = bounded("a reply", replies.next()).await.unwrap().envelope;
        assert_eq!(reply.correlation_id, request.message_id);
        answers.push(reply.payload.clone());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(
        seen.hello.load(Ordering::SeqCst),
        1,
        "the retry ran the handler again"
    );
    running.stop().await;
}

/// A reply nobody waits for is dropped and counted; calls go on working.
pub async fn stray_reply_is_ignored(harness: impl Harness) {
    let (service, _, running, _) = greeter_and_client(&harness).await;
    let memory = MemoryInstrumenter::new();
    let client = Client::builder(harness.connect().await)
        .instrumenter(Arc::new(memory.clone()))
        .build()
        .unwrap();
    client.start().await.unwrap();

    let stranger = harness.connect().await;
    let payload = codec::encode(ContentType::Protobuf, &HelloResponse::default()).unwrap();
    let mut stray = Envelope::request(&service, "hello", ContentType::Protobuf, Default::default())
        .reply(ContentType::Protobuf, payload);
    stray.correlation_id = "nobody-waits-for-this".into();
    stranger
        .send(
            Destination::Instance(client.transport().instance_queue()),
            stray,
        )
        .await
        .unwrap();

    // The stray reply is ahead of this call's reply in the instance queue.
    let reply: HelloResponse = client
        .call(&service, "hello", &hello("after"))
        .await
        .unwrap();
    assert_eq!(reply.greeting, "hello, after");
    assert_eq!(memory.snapshot().counter("client.reply.stray"), Some(1));
    running.stop().await;
}

/// A heartbeat ping to a process's instance queue is answered by that process's reply router,
/// with a pong correlated to the ping.
pub async fn heartbeat_to_an_instance_is_answered(harness: impl Harness) {
    let client = client(&harness).await;
    client.start().await.unwrap();
    let prober = harness.connect().await;
    let mut pongs = prober.consume(Source::Instance).await.unwrap();
    let ping = Envelope::ping(prober.instance_queue());
    let ping_id = ping.message_id.clone();
    prober
        .send(
            Destination::Instance(client.transport().instance_queue()),
            ping,
        )
        .await
        .unwrap();
    let pong = bounded("the pong", pongs.next()).await.unwrap().envelope;
    assert_eq!(pong.message_type, MessageType::Heartbeat);
    assert_eq!(pong.correlation_id, ping_id);
    assert_eq!(pong.payload.as_ref(), kernel_transport::PONG);
}

/// Two instances of one service share its work queue: 1,000 calls are all answered, each
/// exactly once, and both instances serve some.
pub async fn two_instances_share_the_work_queue(harness: impl Harness) {
    let name = unique("shared");
    let (seen_a, seen_b) = (Arc::new(Seen::default()), Arc::new(Seen::default()));
    let a = greeter(&name, "a", Arc::clone(&seen_a), &client(&harness).await).capacity(8);
    let a = serve(a.build().unwrap()).await;
    let b = greeter(&name, "b", Arc::clone(&seen_b), &client(&harness).await).capacity(8);
    let b = serve(b.build().unwrap()).await;

    let client = client(&harness).await;
    let requests: Vec<_> = (0..1000).map(|i| hello(&i.to_string())).collect();
    let calls = requests
        .iter()
        .enumerate()
        .map(|(i, request)| (i, client.call::<HelloResponse>(&name, "hello", request)));
    let outcomes = bounded("1,000 calls", kernel_client::parallel(calls, 64)).await;
    let mut by_instance = [0usize; 2];
    for (i, outcome) in outcomes.iter() {
        let reply = outcome
            .as_ref()
            .unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        assert_eq!(reply.greeting, format!("hello, {i}"));
        by_instance[usize::from(reply.served_by == "b")] += 1;
    }
    let executions = seen_a.hello.load(Ordering::SeqCst) + seen_b.hello.load(Ordering::SeqCst);
    assert_eq!(executions, 1000, "each call executed exactly once");
    assert!(
        by_instance[0] > 0 && by_instance[1] > 0,
        "both instances served: {by_instance:?}"
    );
    a.stop().await;
    b.stop().await;
}

/// Shutdown with calls in flight lets them complete; a call after shutdown fails with a typed
/// error within its deadline.
pub async fn shutdown_finishes_in_flight_calls(harness: impl Harness) {
    let name = unique("draining");
    let started = Arc::new(AtomicUsize::new(0));
    let all_started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let handler = {
        let (started, all_started, release) = (
            Arc::clone(&started),
            Arc::clone(&all_started),
            Arc::clone(&release),
        );
        move |request: Request<HelloRequest>| {
            let (started, all_started, release) = (
                Arc::clone(&started),
                Arc::clone(&all_started),
                Arc::clone(&release),
            );
            async move {
                let released = release.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                if started.fetch_add(1, Ordering::SeqCst) + 1 == 4 {
                    all_started.notify_one();
                }
                released.await;
                Ok::<_, Error>(HelloResponse {
                    greeting: request.message().name.clone(),
                    served_by: String::new(),
                })
            }
        }
    };
    let service = Service::builder(&name, &client(&harness).await)
        .endpoint(Endpoint::new("hello", handler).open())
        .build()
        .unwrap();
    let running = serve(service).await;

    let client = client(&harness).await;
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (client, name) = (client.clone(), name.clone());
            tokio::spawn(async move {
                client
                    .call::<HelloResponse>(&name, "hello", &hello(&i.to_string()))
                    .attempts(1)
                    .await
            })
        })
        .collect();
    bounded("four requests in flight", all_started.notified()).await;

    // Shut down while all four are in flight, then let the handlers finish.
    let stopping = tokio::spawn(running.stop());
    release.notify_waiters();
    for (i, call) in calls.into_iter().enumerate() {
        let reply = bounded("an in-flight call", call).await.unwrap().unwrap();
        assert_eq!(reply.greeting, i.to_string());
    }
    bounded("the shutdown", stopping).await.unwrap();

    let request = hello("late");
    let after = client
        .call::<HelloResponse>(&name, "hello", &request)
        .deadline(Duration::from_secs(5));
    let error = bounded("the call after shutdown", after).await.unwrap_err();
    assert_eq!(error.kind(), Kind::NoRoute, "{error}");
}

/// A handler's call made with `request.call(..)` carries the request's session and trace ids,
/// names the request as its parent, and ends no later than the request's deadline.
pub async fn calls_made_for_a_request_inherit_its_context(harness: impl Harness) {
    let (back, front) = (unique("context.back"), unique("context.front"));
    // The back service reports what it received.
    let seen_by_back = |request: Request<HelloRequest>| async move {
        let deadline = request
            .deadline()
            .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis());
        Ok::<_, Error>(HelloResponse {
            greeting: format!(
                "{}|{}|{}",
                request.session_id(),
                request.trace_id(),
                request.context().parent_message_id()
            ),
            served_by: deadline.to_string(),
        })
    };
    let back_side = client(&harness).await;
    let back_service = Service::builder(&back, &back_side)
        .endpoint(Endpoint::new("context", seen_by_back).open())
        .build()
        .unwrap();
    let back_running = serve(back_service).await;

    // The front service relays to it and checks the relayed context against its own request.
    let front_side = client(&harness).await;
    let calls = front_side.clone();
    let relay = move |request: Request<HelloRequest>| {
        let (calls, back) = (calls.clone(), back.clone());
        async move {
            let seen: HelloResponse = request
                .call(&calls, &back, "context", request.message())
                .await?;
            let own_deadline = request
                .deadline()
                .and_then(|at| at.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis());
            let relayed_deadline: u128 = seen.served_by.parse().unwrap_or(u128::MAX);
            let expected = format!(
                "{}|{}|{}",
                request.session_id(),
                request.trace_id(),
                request.message_id()
            );
            Ok::<_, Error>(HelloResponse {
                greeting: (seen.greeting == expected).to_string(),
                served_by: (relayed_deadline > 0 && relayed_deadline <= own_deadline).to_string(),
            })
        }
    };
    let front_service = Service::builder(&front, &front_side)
        .endpoint(Endpoint::new("relay", relay).open())
        .build()
        .unwrap();
    let front_running = serve(front_service).await;

    let caller = client(&harness).await;
    let verdict: HelloResponse = caller
        .call(&front, "relay", &hello("ctx"))
        .session_id("session-1")
        .trace_id("trace-1")
        .deadline(Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(
        verdict.greeting, "true",
        "session, trace and parent relayed"
    );
    assert_eq!(
        verdict.served_by, "true",
        "the relayed deadline is no later than the request's"
    );
    front_running.stop().await;
    back_running.stop().await;
}

/// A call to a service that starts serving a moment later (its only instance restarting)
/// succeeds even with one attempt: an undeliverable request uses up no attempt for the first
/// attempt timeout.
pub async fn a_call_rides_through_a_brief_absence_of_its_service(harness: impl Harness) {
    let name = unique("absent");
    let caller = client(&harness).await;
    let call = {
        let name = name.clone();
        tokio::spawn(async move {
            caller
                .call::<HelloResponse>(&name, "hello", &hello("early"))
                .attempts(1)
                .attempt_timeout(Duration::from_secs(3))
                .deadline(Duration::from_secs(10))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !call.is_finished(),
        "the call gave up while the service was away"
    );
    let service = greeter(
        &name,
        "a",
        Arc::new(Seen::default()),
        &client(&harness).await,
    )
    .build()
    .unwrap();
    let running = serve(service).await;
    let reply = bounded("the call once the service serves", call)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply.greeting, "hello, early");
    running.stop().await;
}

/// One caller floods a service of capacity 2 (a 50 ms handler) with 20 calls at a time;
/// another calls once every 200 ms with a 1 s deadline. Every trickle call succeeds, and the
/// flood is told `Overloaded` (`kernel.server.capacity`) instead of queueing without end.
pub async fn a_flood_does_not_starve_a_trickle(harness: impl Harness) {
    flood_and_trickle(harness, false).await;
}

/// The same, with the flood sending each call under another of 1,000 invented `from` values.
pub async fn a_flood_under_a_thousand_names_does_not_starve_a_trickle(harness: impl Harness) {
    flood_and_trickle(harness, true).await;
}

async fn flood_and_trickle(harness: impl Harness, rotate: bool) {
    let name = unique("admission");
    let slow = |_: Request<HelloRequest>| async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok::<_, Error>(HelloResponse::default())
    };
    let server_side = client(&harness).await;
    let service = Service::builder(&name, &server_side)
        .capacity(2)
        .endpoint(Endpoint::new("slow", slow).open())
        .build()
        .unwrap();
    let running = serve(service).await;
    let flood = client(&harness).await.calling_as("test.flood");
    let trickle = client(&harness).await.calling_as("test.trickle");
    // The trickle is a caller the service knows before the flood starts.
    trickle
        .call::<HelloResponse>(&name, "slow", &hello("first"))
        .await
        .unwrap();

    let stop = Arc::new((Notify::new(), std::sync::atomic::AtomicBool::new(false)));
    let mut flooders = tokio::task::JoinSet::new();
    for task in 0..20 {
        let (flood, name, stop) = (flood.clone(), name.clone(), Arc::clone(&stop));
        flooders.spawn(async move {
            let mut overloaded = 0;
            let request = hello("flood");
            // Bounded: at most 200 calls per task, or until told to stop.
            for n in 0..200 {
                if stop.1.load(Ordering::SeqCst) {
                    break;
                }
                let flood = if rotate {
                    flood.calling_as(format!("spoof-{}", (task * 200 + n) % 1000))
                } else {
                    flood.clone()
                };
                let call = flood
                    .call::<HelloResponse>(&name, "slow", &request)
                    .attempts(1)
                    .deadline(Duration::from_secs(2));
                tokio::select! {
                    outcome = call => {
                        if let Err(error) = outcome {
                            assert_eq!(error.kind(), Kind::Overloaded, "{error:?}");
                            assert_eq!(error.code(), kernel_server::codes::CAPACITY);
                            overloaded += 1;
                        }
                    }
                    () = stop.0.notified() => break,
                }
            }
            overloaded
        });
    }
    for n in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let reply = trickle
            .call::<HelloResponse>(&name, "slow", &hello("trickle"))
            .deadline(Duration::from_secs(1))
            .await;
        assert!(reply.is_ok(), "trickle call {n}: {reply:?}");
    }
    stop.1.store(true, Ordering::SeqCst);
    stop.0.notify_waiters();
    let mut overloaded = 0;
    while let Some(done) = bounded("the flood to stop", flooders.join_next()).await {
        overloaded += done.unwrap();
    }
    assert!(overloaded > 0, "the flood was never told it was overloaded");
    // Overloaded replies never count against the callee: the flood's breaker stays closed.
    assert_eq!(
        flood.circuit_state(&name, "slow"),
        kernel_client::CircuitState::Closed
    );
    running.stop().await;
}

#[macro_export]
/// Generates one `#[tokio::test]` per case for a harness expression.
macro_rules! conformance_suite {
    ($harness:expr) => {
        $crate::conformance_suite!(@cases $harness;
            request_reply, error_reply, unknown_endpoint, unknown_service_fails_fast,
            publication_reaches_two_services, json_and_protobuf, malformed_payload_is_bad_request,
            panicking_handler_then_next_call_succeeds, expired_request_is_not_executed,
            late_reply_to_attempt_one_completes_the_call, stray_reply_is_ignored,
            heartbeat_to_an_instance_is_answered, an_answered_request_retried_is_answered_from_the_cache,
            two_instances_share_the_work_queue, shutdown_finishes_in_flight_calls,
            calls_made_for_a_request_inherit_its_context,
            a_call_rides_through_a_brief_absence_of_its_service,
            a_flood_does_not_starve_a_trickle,
            a_flood_under_a_thousand_names_does_not_starve_a_trickle,
            default_endpoints_answer_in_protobuf_and_json,
            a_hanging_check_is_reported_failed_within_its_timeout,
            the_registry_sees_instances_come_and_go,
            a_trace_id_is_made_and_seen_two_hops_down);
    };
    (@cases $harness:expr; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                support::$case($harness).await;
            }
        )*
    };
}
