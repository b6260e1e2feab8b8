//! [`Service`]: endpoints bound to a transport, and the request path.
//!
//! What happens to each delivery from the service's work queue, in order:
//!
//! ```text
//! heartbeat ping ──────────────────────────► pong to reply_to
//! deadline already passed ─────────────────► dropped, counted (server.dropped.expired)
//! unknown endpoint ────────────────────────► NotFound  kernel.server.unknownendpoint
//! payload does not decode (or unknown type) ► BadRequest kernel.server.badrequest
//! handler panics ──────────────────────────► InternalServerError kernel.server.panic
//! handler returns Err(e) ──────────────────► e
//! handler returns Ok(response) ────────────► reply, encoded as the request was
//! ```
//!
//! Replies and error replies go to the request's `reply_to` with `correlation_id` = its
//! message id; the delivery is acked after the reply is sent. A retry (same message id and
//! `reply_to`) is not run again: dropped while the first attempt runs, answered with the kept
//! reply after (see `replies.rs`). Publications on a subscribed
//! topic go to the subscribing endpoint; what it returns is only logged and counted.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::FutureExt;
use futures_util::stream::{self, StreamExt};
use kernel_client::Client;
use kernel_errors::{Error, Kind};
use kernel_inst::Instrumenter;
use kernel_proto::platform::PlatformError;
use kernel_transport::{Delivery, Destination, Envelope, Source, codec};
use tokio::task::JoinSet;

use crate::codes;
use crate::endpoint::{Endpoint, valid_name};
use crate::replies::{ReplyCache, Seen};

/// How many requests an instance holds at once unless told otherwise (the AMQP prefetch).
pub const DEFAULT_CAPACITY: u16 = 100;
/// How long shutdown waits for requests in flight unless told otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest session id a request may carry, in bytes, unless
/// [`ServiceBuilder::max_session_id`] says otherwise.
pub const DEFAULT_MAX_SESSION_ID: usize = 1024;

/// A running service's endpoints and the transport they are served on.
///
/// Build one with [`Service::new`], then [`serve`](Self::serve) it until a shutdown signal:
/// it consumes the service's shared work queue (so several instances share the load) and the
/// queues of its subscriptions, runs each request's handler in its own task (at most
/// `capacity` requests at once, and as many publications per subscription), and on shutdown
/// stops consuming, lets the requests in flight finish (up to the shutdown timeout), and
/// returns.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_errors::Error> {
/// use kernel_client::Client;
/// use kernel_errors::Error;
/// use kernel_proto::platform::{LoadedConfigRequest, LoadedConfigResponse};
/// use kernel_server::{Endpoint, Request, Service};
/// use kernel_transport::InProcessTransport;
///
/// async fn config(request: Request<LoadedConfigRequest>) -> Result<LoadedConfigResponse, Error> {
///     Ok(LoadedConfigResponse { config: format!("for {}", request.caller()) })
/// }
///
/// let client = Client::new(InProcessTransport::new()).calling_as("com.example.caller");
/// let service = Service::new("com.example.config")
///     .version("1.0.0")
///     .endpoint(Endpoint::new("loadedconfig", config))
///     .client(&client)
///     .build()
///     .expect("a valid service");
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(service.serve_with_shutdown(async { stopped.await.ok(); }));
/// # tokio::task::yield_now().await;
///
/// let reply: LoadedConfigResponse =
///     client.call("com.example.config", "loadedconfig", &LoadedConfigRequest {}).await?;
/// assert_eq!(reply.config, "for com.example.caller");
///
/// stop.send(()).ok();
/// running.await.expect("no panic")?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    name: String,
    version: String,
    description: String,
    endpoints: HashMap<String, Endpoint>,
    capacity: u16,
    shutdown_timeout: Duration,
    max_session_id: usize,
    client: Client,
    instrumenter: Arc<dyn Instrumenter>,
    replies: ReplyCache,
}

/// Builds a [`Service`]; see [`Service::new`].
#[derive(Debug)]
#[must_use]
pub struct ServiceBuilder {
    name: String,
    version: String,
    description: String,
    endpoints: Vec<Endpoint>,
    capacity: u16,
    shutdown_timeout: Duration,
    max_session_id: usize,
    instrumenter: Option<Arc<dyn Instrumenter>>,
    client: Option<Client>,
}

/// A [`ServiceBuilder`] was given something it cannot serve.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// The service name is empty or longer than 255 bytes.
    #[error("invalid service name {0:?}")]
    InvalidServiceName(String),
    /// An endpoint name is not lowercase ASCII letters, digits, `_`, `-` or `.`.
    #[error("invalid endpoint name {0:?}")]
    InvalidEndpointName(String),
    /// Two endpoints have the same name.
    #[error("duplicate endpoint {0:?}")]
    DuplicateEndpoint(String),
    /// The service has no endpoint to serve.
    #[error("the service has no endpoints")]
    NoEndpoints,
    /// The capacity is zero.
    #[error("capacity must be at least 1")]
    ZeroCapacity,
    /// No client was given: the service has no transport to serve on.
    #[error("no client given: call .client(&client) before .build()")]
    NoClient,
}

impl Service {
    /// Starts building the service called `name` (e.g. `com.example.greeter`).
    #[allow(clippy::new_ret_no_self)] // the issue names this shape: Service::new(name) → builder
    pub fn new(name: impl Into<String>) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            version: String::new(),
            description: String::new(),
            endpoints: Vec::new(),
            capacity: DEFAULT_CAPACITY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_session_id: DEFAULT_MAX_SESSION_ID,
            instrumenter: None,
            client: None,
        }
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The service's version.
    pub fn version(&self) -> &str {
        &self.inner.version
    }

    /// The service's description.
    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// The service's endpoints.
    pub fn endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.inner.endpoints.values()
    }

    /// A client that calls as this service (the `from` header is the service's name), for
    /// handlers that call other services.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Serves until the transport closes.
    ///
    /// # Errors
    /// As for [`serve_with_shutdown`](Self::serve_with_shutdown).
    pub async fn serve(self) -> Result<(), Error> {
        self.serve_with_shutdown(std::future::pending()).await
    }

    /// Serves until `shutdown` completes, then stops consuming, waits for the requests in
    /// flight (up to the shutdown timeout; the rest are abandoned and redelivered by the
    /// broker), and returns. Libraries never install signal handlers: pass
    /// `tokio::signal::ctrl_c()` or the umbrella crate's `kernel::shutdown_signal()`.
    ///
    /// # Errors
    /// `ConnectionLost` or `InternalServerError` if the work queue or a subscription cannot be
    /// consumed; `ConnectionLost` ([`codes::CONSUMER_ENDED`]) if one stops delivering before
    /// `shutdown` (the transport closed, or gave up reconnecting), after draining what is in
    /// flight. A supervisor should then restart the service.
    pub async fn serve_with_shutdown(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let inner = &self.inner;
        inner.client.start().await?;
        let transport = inner.client.transport();
        // Each source yields its deliveries, then one `Ended` when its consumer stops: while
        // the service runs, that means the transport gave up (or the broker cancelled it).
        let work = transport
            .consume(Source::Service {
                name: &inner.name,
                capacity: inner.capacity,
            })
            .await?;
        let mut sources = vec![tagged(work, None)];
        for endpoint in inner.endpoints.values() {
            if let Some(topic) = &endpoint.subscribe {
                let source = Source::Subscription {
                    service: &inner.name,
                    topic,
                    capacity: inner.capacity,
                };
                let deliveries = transport.consume(source).await?;
                sources.push(tagged(deliveries, Some(endpoint.name.clone())));
            }
        }
        let mut events = stream::select_all(sources);
        tracing::info!(service = %inner.name, "serving");

        let mut in_flight = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut ended = None;
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => log_failed_task(&inner.name, done),
                Some(event) = events.next() => match event {
                    Event::Delivery(subscriber, delivery) => {
                        let inner = Arc::clone(&self.inner);
                        in_flight.spawn(async move {
                            match subscriber {
                                None => handle_request(&inner, delivery).await,
                                Some(endpoint) => handle_publication(&inner, &endpoint, delivery).await,
                            }
                        });
                    }
                    Event::Ended(subscriber) => {
                        ended = Some(subscriber);
                        break;
                    }
                },
            }
        }

        drop(events); // stop consuming: nothing new arrives, unacked deliveries stay ours
        tracing::info!(service = %inner.name, in_flight = in_flight.len(), "draining");
        let drained = tokio::time::timeout(inner.shutdown_timeout, async {
            while let Some(done) = in_flight.join_next().await {
                log_failed_task(&inner.name, done);
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(service = %inner.name, abandoned = in_flight.len(), "shutdown timeout: abandoning requests in flight");
            in_flight.abort_all();
        }
        match ended {
            None => {
                tracing::info!(service = %inner.name, "stopped");
                Ok(())
            }
            Some(subscriber) => {
                let source = subscriber.map_or_else(
                    || "the work queue".to_owned(),
                    |endpoint| format!("the subscription of {endpoint}"),
                );
                tracing::error!(service = %inner.name, %source, "consumer ended: stopped serving");
                Err(Error::connection_lost(
                    codes::CONSUMER_ENDED,
                    format!(
                        "{}: {source} stopped delivering (the transport closed or gave up)",
                        inner.name
                    ),
                ))
            }
        }
    }
}

impl ServiceBuilder {
    /// The service's version (free text, e.g. `1.4.2` or a build stamp).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// A one-line description of what the service does.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds an endpoint.
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// How many requests an instance holds at once (the broker's prefetch); default
    /// [`DEFAULT_CAPACITY`].
    pub fn capacity(mut self, capacity: u16) -> Self {
        self.capacity = capacity;
        self
    }

    /// How long shutdown waits for requests in flight; default [`DEFAULT_SHUTDOWN_TIMEOUT`].
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// The longest session id a request may carry, in bytes (default
    /// [`DEFAULT_MAX_SESSION_ID`]); a longer one is answered with `BadRequest`
    /// ([`codes::SESSION_ID_TOO_LONG`]) without running the handler.
    pub fn max_session_id(mut self, bytes: usize) -> Self {
        self.max_session_id = bytes;
        self
    }

    /// Where outcomes are recorded; default the client's instrumenter.
    pub fn instrumenter(mut self, instrumenter: Arc<dyn Instrumenter>) -> Self {
        self.instrumenter = Some(instrumenter);
        self
    }

    /// Serves on `client`'s transport (sharing its reply router). The service calls other
    /// services as itself through [`Service::client`], a copy of this client calling as the
    /// service. Required.
    pub fn client(mut self, client: &Client) -> Self {
        self.client = Some(client.clone());
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`BuildError`] naming what is wrong.
    pub fn build(self) -> Result<Service, BuildError> {
        let Some(client) = self.client else {
            return Err(BuildError::NoClient);
        };
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(BuildError::InvalidServiceName(self.name));
        }
        if self.endpoints.is_empty() {
            return Err(BuildError::NoEndpoints);
        }
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        let mut endpoints = HashMap::new();
        for endpoint in self.endpoints {
            if !valid_name(&endpoint.name) {
                return Err(BuildError::InvalidEndpointName(endpoint.name));
            }
            if endpoints.contains_key(&endpoint.name) {
                return Err(BuildError::DuplicateEndpoint(endpoint.name));
            }
            endpoints.insert(endpoint.name.clone(), endpoint);
        }
        let instrumenter = self
            .instrumenter
            .unwrap_or_else(|| Arc::clone(client.instrumenter()));
        Ok(Service {
            inner: Arc::new(Inner {
                client: client.calling_as(self.name.clone()),
                name: self.name,
                version: self.version,
                description: self.description,
                endpoints,
                capacity: self.capacity,
                shutdown_timeout: self.shutdown_timeout,
                max_session_id: self.max_session_id,
                instrumenter,
                replies: ReplyCache::new(),
            }),
        })
    }
}

/// What the merged consumer streams yield: a delivery (with the subscribing endpoint, for a
/// publication), or the end of one stream.
#[allow(clippy::large_enum_variant)] // moved straight into its task; a box would cost an allocation per request
enum Event {
    Delivery(Option<String>, Delivery),
    Ended(Option<String>),
}

/// Tags a source's deliveries with their subscriber and appends its end.
fn tagged(
    deliveries: kernel_transport::Deliveries,
    subscriber: Option<String>,
) -> futures_util::stream::BoxStream<'static, Event> {
    let tag = subscriber.clone();
    deliveries
        .map(move |delivery| Event::Delivery(tag.clone(), delivery))
        .chain(stream::once(std::future::ready(Event::Ended(subscriber))))
        .boxed()
}

/// Handler tasks catch their handler's panics; a task that still failed (a panic elsewhere in
/// the request path, or an abort) is logged, never silently dropped.
fn log_failed_task(service: &str, done: Result<(), tokio::task::JoinError>) {
    if let Err(error) = done {
        tracing::error!(%service, %error, "a request task failed; its delivery was returned to the queue");
    }
}

/// Answers one request from the work queue, then acks it.
async fn handle_request(inner: &Inner, delivery: Delivery) {
    let (request, acker) = delivery.into_parts();
    let transport = inner.client.transport();
    if request.is_ping() {
        if !request.reply_to.is_empty() {
            let pong = request.pong();
            if let Err(error) = transport
                .send(Destination::Instance(&request.reply_to), pong)
                .await
            {
                tracing::debug!(%error, "could not answer a heartbeat");
            }
        }
    } else if request
        .deadline
        .is_some_and(|deadline| deadline <= SystemTime::now())
    {
        tracing::debug!(message_id = %request.message_id, endpoint = %request.endpoint, "deadline passed before handling: dropped");
        inner.instrumenter.counter("server.dropped.expired", 1, 1.0);
    } else {
        match inner.replies.arrive(&request) {
            Seen::First => {
                let started = Instant::now();
                let outcome = dispatch(inner, &request).await;
                // "Overloaded" says: try again (elsewhere). A retry must be judged afresh,
                // not answered from the cache.
                let shed = matches!(&outcome, Err(e) if e.kind() == Kind::Overloaded);
                let reply = answer(inner, &request, outcome, started.elapsed());
                if shed {
                    inner.replies.forget(&request);
                } else {
                    inner.replies.answered(&request, &reply);
                }
                send_reply(transport.as_ref(), &request, reply).await;
            }
            Seen::InFlight => {
                tracing::debug!(message_id = %request.message_id, "retry while the first attempt runs: dropped");
                inner.instrumenter.counter("server.retry.inflight", 1, 1.0);
            }
            Seen::Answered(reply) => {
                tracing::debug!(message_id = %request.message_id, "retry of an answered request: reply sent again");
                inner.instrumenter.counter("server.retry.answered", 1, 1.0);
                send_reply(transport.as_ref(), &request, Envelope::clone(&reply)).await;
            }
        }
    }
    if let Err(error) = acker.ack().await {
        tracing::warn!(%error, message_id = %request.message_id, "could not ack a request");
    }
}

/// Sends a reply (or error reply) to the request's `reply_to`, if it has one.
async fn send_reply(
    transport: &dyn kernel_transport::Transport,
    request: &Envelope,
    reply: Envelope,
) {
    if request.reply_to.is_empty() {
        tracing::debug!(message_id = %request.message_id, "request without reply_to: answer dropped");
    } else if let Err(error) = transport
        .send(Destination::Instance(&request.reply_to), reply)
        .await
    {
        tracing::warn!(%error, message_id = %request.message_id, "could not send the reply");
    }
}

/// At most the first 64 characters of a name from the wire, for messages and logs: nothing a
/// caller sends is reflected unbounded.
fn clip(text: &str) -> &str {
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// Finds the endpoint and runs its handler, turning a panic into an internal error.
async fn dispatch(inner: &Inner, request: &Envelope) -> Result<bytes::Bytes, Error> {
    if !request.service.is_empty() && request.service != inner.name {
        return Err(Error::not_found(
            codes::WRONG_SERVICE,
            format!("this is {}, not {:?}", inner.name, clip(&request.service)),
        ));
    }
    if request.session_id.len() > inner.max_session_id {
        return Err(Error::bad_request(
            codes::SESSION_ID_TOO_LONG,
            format!(
                "a session id of {} bytes is over the limit of {}",
                request.session_id.len(),
                inner.max_session_id
            ),
        ));
    }
    let endpoint = inner.endpoints.get(&request.endpoint).ok_or_else(|| {
        Error::not_found(
            codes::UNKNOWN_ENDPOINT,
            format!(
                "{} has no endpoint {:?}",
                inner.name,
                clip(&request.endpoint)
            ),
        )
    })?;
    run_handler(inner, endpoint, request).await
}

async fn run_handler(
    inner: &Inner,
    endpoint: &Endpoint,
    request: &Envelope,
) -> Result<bytes::Bytes, Error> {
    let handler = Arc::clone(&endpoint.handler);
    match AssertUnwindSafe(async { handler.handle(request).await })
        .catch_unwind()
        .await
    {
        Ok(outcome) => outcome,
        Err(panic) => {
            let reason = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            tracing::error!(endpoint = %endpoint.name, message_id = %request.message_id, %reason, "handler panicked");
            inner.instrumenter.counter("runtime.panic", 1, 1.0);
            Err(Error::internal_server_error(
                codes::PANIC,
                format!("{}.{} failed", inner.name, endpoint.name),
            ))
        }
    }
}

/// The reply or error reply for an outcome, recording it (H2's names).
fn answer(
    inner: &Inner,
    request: &Envelope,
    outcome: Result<bytes::Bytes, Error>,
    elapsed: Duration,
) -> Envelope {
    let inst = inner.instrumenter.as_ref();
    let content_type = request.content_type.for_reply();
    // Metric names come from the endpoints served, never from the wire: a request for an
    // endpoint that does not exist has no per-endpoint timing.
    let endpoint = inner
        .endpoints
        .get(&request.endpoint)
        .map(|endpoint| endpoint.name.as_str());
    let timing = |bucket: &str| {
        if let Some(endpoint) = endpoint {
            inst.timing(&format!("{bucket}.{endpoint}"), elapsed, 1.0);
        }
    };
    match outcome {
        Ok(payload) => {
            timing("success");
            request.reply(content_type, payload)
        }
        Err(error) => {
            inst.counter(&format!("server.error.{}", error.code()), 1, 1.0);
            // Client faults do not count against the endpoint's error latency (as in H2).
            let bucket = match error.kind() {
                Kind::BadRequest | Kind::NotFound => "success",
                _ => "error",
            };
            timing(bucket);
            if error.kind() == Kind::InternalServerError {
                tracing::warn!(endpoint = %clip(&request.endpoint), %error, "internal error");
            } else {
                tracing::debug!(endpoint = %clip(&request.endpoint), %error, "error reply");
            }
            let payload =
                codec::encode(content_type, &PlatformError::from(&error)).unwrap_or_else(|_| {
                    prost::Message::encode_to_vec(&PlatformError::from(&error)).into()
                });
            request.error_reply(content_type, payload)
        }
    }
}

/// Hands one publication to its subscribing endpoint, then acks it.
async fn handle_publication(inner: &Inner, endpoint: &str, delivery: Delivery) {
    let (publication, acker) = delivery.into_parts();
    if let Some(endpoint) = inner.endpoints.get(endpoint) {
        let started = Instant::now();
        match run_handler(inner, endpoint, &publication).await {
            Ok(_) => inner.instrumenter.timing(
                &format!("success.{}", endpoint.name),
                started.elapsed(),
                1.0,
            ),
            Err(error) => {
                tracing::warn!(topic = %publication.topic, endpoint = %endpoint.name, %error, "publication handler failed");
                inner
                    .instrumenter
                    .counter(&format!("server.error.{}", error.code()), 1, 1.0);
            }
        }
    }
    if let Err(error) = acker.ack().await {
        tracing::warn!(%error, "could not ack a publication");
    }
}
