//! Rolling upgrades on a real RabbitMQ: a peer speaking the recorded v1 wire
//! (`tests/fixtures/wire-v1/`, written with lapin alone) and the current kernel understand each
//! other both ways, and each side tolerates what a newer peer may add (docs/wire.md §12).
//!
//! - an old client calls a kernel service: its replies, error replies and pongs have exactly
//!   the recorded shape, and unknown headers and properties on a request change nothing;
//! - an old server answers a kernel client with the recorded replies: the client gets the
//!   typed response or error, an unknown error kind mapped as §12 says; the kernel's own
//!   requests, pings and publications have the recorded shape.
//!
//! "The recorded shape", for what the current kernel sends, is the fixture's plus the
//! `user_id` property (its broker user), which the kernel added after the fixtures were
//! recorded and which v1 receivers ignore (`fixture::Fixture::shape_from_kernel`); the fixtures
//! themselves stay as recorded and are replayed without it.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

#[path = "../support/mod.rs"]
mod support;

mod fixture;
mod old_peer;

use futures_util::StreamExt;
use kernel_client::Client;
use kernel_errors::{Error, Kind};
use kernel_proto::examples::{Greeted, HelloRequest, HelloResponse};
use kernel_proto::platform::PlatformError;
use kernel_transport::{ContentType, Destination, Envelope, MessageType, Source, Transport, codec};
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;
use support::Harness as _;
use support::amqp;
use tokio::sync::mpsc;

use fixture::{Shape, fixture, header, property};
use old_peer::{OldPeer, answer, next};

// ---- an old client and a new server ------------------------------------------------------------

/// A kernel greeter (`support::greeter`) serving on RabbitMQ, and an old peer.
async fn new_greeter_and_old_client() -> (String, support::Running, OldPeer) {
    let (service, _, running, _) = support::greeter_and_client(&amqp()).await;
    (service, running, OldPeer::connect().await)
}

#[test]
fn each_fixtures_bytes_are_what_it_says_they_are() {
    let request = fixture("request").message::<HelloRequest>();
    assert_eq!(request.name, "ada");
    let reply = fixture("reply").message::<HelloResponse>();
    assert_eq!(reply.greeting, "hello, ada");
    let error = Error::from(fixture("error").message::<PlatformError>());
    assert_eq!(
        (error.kind(), error.code()),
        (Kind::NotFound, "test.greeter.fail.nobody")
    );
    assert_eq!(fixture("publication").message::<Greeted>().count, 1);
    assert_eq!(fixture("ping").payload, b"PING");
    assert_eq!(fixture("pong").payload, b"PONG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_clients_request_gets_a_reply_of_the_recorded_shape() {
    let (service, running, mut old) = new_greeter_and_old_client().await;
    let request = old.replay("request", &service);
    old.publish(&request).await;

    let reply = old.next().await;
    let recorded = fixture("reply");
    assert_eq!(Shape::of(&reply), recorded.shape_from_kernel());
    assert_eq!(
        property(reply.properties.correlation_id()),
        request.properties["message_id"].as_str().unwrap()
    );
    assert_eq!(header(&reply, "service"), service);
    assert_eq!(header(&reply, "endpoint"), "hello");
    let decoded = codec::decode::<HelloResponse>(ContentType::Protobuf, &reply.data).unwrap();
    assert_eq!(decoded, recorded.message::<HelloResponse>());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_clients_failing_request_gets_an_error_reply_of_the_recorded_shape() {
    let (service, running, mut old) = new_greeter_and_old_client().await;
    let mut request = old.replay("request", &service);
    request.set_header("endpoint", "fail");
    old.publish(&request).await;

    let reply = old.next().await;
    let recorded = fixture("error");
    assert_eq!(Shape::of(&reply), recorded.shape_from_kernel());
    assert_eq!(
        property(reply.properties.correlation_id()),
        request.properties["message_id"].as_str().unwrap()
    );
    let decoded = codec::decode::<PlatformError>(ContentType::Protobuf, &reply.data).unwrap();
    assert_eq!(decoded, recorded.message::<PlatformError>());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_clients_ping_gets_a_pong_of_the_recorded_shape() {
    let (service, running, mut old) = new_greeter_and_old_client().await;
    let ping = old.replay("ping", &service);
    old.publish(&ping).await;

    let pong = old.next().await;
    let recorded = fixture("pong");
    assert_eq!(Shape::of(&pong), recorded.shape_from_kernel());
    assert_eq!(
        property(pong.properties.correlation_id()),
        ping.properties["message_id"].as_str().unwrap()
    );
    assert_eq!(pong.data, recorded.payload);
    running.stop().await;
}

/// What a newer client may add to a request: headers and AMQP properties v1 does not name,
/// header values that are not long strings. The server answers as if they were not there,
/// and does not reflect them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_clients_unknown_headers_and_properties_are_ignored() {
    let (service, running, mut old) = new_greeter_and_old_client().await;
    let request = old.replay("request", &service);
    let mut properties = request.basic_properties();
    let mut headers = properties.headers().clone().unwrap();
    headers.insert(
        "x-wire-v2-option".into(),
        AMQPValue::LongString("on".into()),
    );
    headers.insert("x-wire-v2-priority".into(), AMQPValue::LongInt(7));
    headers.insert("x-wire-v2-hedged".into(), AMQPValue::Boolean(true));
    properties = properties
        .with_headers(headers)
        .with_app_id("wire-v2-client".into())
        .with_type("kernel.v2.request".into())
        .with_priority(5)
        .with_timestamp(1_764_031_000);
    old.channel
        .basic_publish(
            "h2o".into(),
            service.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &request.payload,
            properties,
        )
        .await
        .unwrap();

    let reply = old.next().await;
    assert_eq!(Shape::of(&reply), fixture("reply").shape_from_kernel());
    assert_eq!(
        property(reply.properties.correlation_id()),
        request.properties["message_id"].as_str().unwrap()
    );
    let decoded = codec::decode::<HelloResponse>(ContentType::Protobuf, &reply.data).unwrap();
    assert_eq!(decoded.greeting, "hello, ada");
    running.stop().await;
}

// ---- a new client and an old server ------------------------------------------------------------

/// An old server for `service`: answers each request with a recorded answer chosen by its
/// endpoint (`hello`: reply, `fail`: error, `future`: an error of a kind v1 does not know,
/// with a header v1 does not know either), and each ping with the recorded pong. Sends the
/// shape of everything it receives to the test.
async fn old_server(service: &str) -> mpsc::UnboundedReceiver<Shape> {
    let old = OldPeer::connect().await;
    let mut work = old.serve(service, None).await;
    let (shapes, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = work.next().await {
            let shape = Shape::of(&delivery);
            let message_type = shape.message_type.clone();
            let _ = shapes.send(shape);
            let response = match (
                message_type.as_str(),
                header(&delivery, "endpoint").as_str(),
            ) {
                ("heartbeat", _) => answer("pong", &delivery),
                (_, "hello") => answer("reply", &delivery),
                (_, "fail") => answer("error", &delivery),
                (_, "future") => {
                    let mut error = answer("error", &delivery);
                    error.set_header("x-wire-v2-retry-after", "5");
                    let mut message = error.message::<PlatformError>();
                    message.r#type = 0;
                    message.kind = "SESSION_EXPIRED".into();
                    message.http_code = 401;
                    error.payload = codec::encode(ContentType::Protobuf, &message)
                        .unwrap()
                        .to_vec();
                    error
                }
                (_, other) => panic!("the old server got a request for {other:?}"),
            };
            old.publish(&response).await;
        }
    });
    received
}

/// The one place this file calls through the kernel client.
async fn call(client: &Client, service: &str, endpoint: &str) -> Result<HelloResponse, Error> {
    let request = fixture("request").message::<HelloRequest>();
    client.call(service, endpoint, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_client_gets_typed_answers_from_an_old_server() {
    let service = support::unique("old.greeter");
    let mut requests = old_server(&service).await;
    let client = support::client(&amqp()).await;

    let reply = call(&client, &service, "hello").await.unwrap();
    assert_eq!(reply, fixture("reply").message::<HelloResponse>());
    let shape = support::bounded("the request at the old server", requests.recv()).await;
    assert_eq!(
        shape.unwrap(),
        fixture("request").shape_from_kernel(),
        "the new client's request"
    );

    let error = call(&client, &service, "fail").await.unwrap_err();
    assert_eq!(error.kind(), Kind::NotFound);
    assert_eq!(error.code(), "test.greeter.fail.nobody");
    assert_eq!(error.description(), "nobody called ada");
    assert_eq!(error.context(), ["greeter"]);

    // A newer server's error: a kind v1 does not know, type 0, status 401.
    let error = call(&client, &service, "future").await.unwrap_err();
    assert_eq!(
        error.kind(),
        Kind::Unauthorized,
        "mapped by its HTTP status"
    );
    assert_eq!(error.code(), "test.greeter.fail.nobody");

    requests.close();
    let mut received = 1;
    while requests.recv().await.is_some() {
        received += 1;
    }
    assert_eq!(received, 3, "each call was sent once: none was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_process_pings_an_old_server_and_reads_its_pong() {
    let service = support::unique("old.greeter");
    let mut received = old_server(&service).await;
    let transport = amqp().connect().await;
    let mut inbox = transport.consume(Source::Instance).await.unwrap();
    let ping = Envelope::ping(transport.instance_queue());
    let ping_id = ping.message_id.clone();
    transport
        .send(Destination::Service(&service), ping)
        .await
        .unwrap();

    let shape = support::bounded("the ping at the old server", received.recv()).await;
    assert_eq!(
        shape.unwrap(),
        fixture("ping").shape_from_kernel(),
        "the new process's ping"
    );
    let pong = support::bounded("the pong", inbox.next())
        .await
        .unwrap()
        .envelope;
    assert_eq!(pong.message_type, MessageType::Heartbeat);
    assert_eq!(pong.correlation_id, ping_id);
    assert!(!pong.is_ping(), "the recorded pong is read as a pong");
    assert_eq!(
        pong.user_id, "",
        "a v1 peer sends no user_id: its sender is unknown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_publishers_publication_reaches_an_old_subscriber_in_the_recorded_shape() {
    let topic = support::unique("greeted");
    let old = OldPeer::connect().await;
    let mut subscription = old.serve(&support::unique("old.audit"), Some(&topic)).await;
    let client = support::client(&amqp()).await;
    let greeted = fixture("publication").message::<Greeted>();
    client.publish(&topic, &greeted).await.unwrap();

    let publication = next(&mut subscription, "the publication at the old subscriber").await;
    assert_eq!(
        Shape::of(&publication),
        fixture("publication").shape_from_kernel()
    );
    assert_eq!(header(&publication, "topic"), topic);
    let decoded = codec::decode::<Greeted>(ContentType::Protobuf, &publication.data).unwrap();
    assert_eq!(decoded, greeted);
}
