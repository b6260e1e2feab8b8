//! [`Service`]: endpoints bound to a client's transport, and the serve loop.
//!
//! The loop consumes the work queue and each subscription, spawns one task per delivery (the
//! request path is `path.rs`), and on shutdown stops consuming and drains what is in flight.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use foldhash::HashMap;
use futures_util::stream::{self, StreamExt};
use kernel_client::Client;
use kernel_errors::Error;
use kernel_inst::Instrumenter;
use kernel_proto::platform::HealthResponse;
use kernel_transport::{Delivery, Source};
use tokio::task::JoinSet;

use crate::admission::{Admission, CallerMetrics, ErrorMetrics};
use crate::codes;
use crate::endpoint::Endpoint;
use crate::ops::{Operations, monitor};
use crate::path::{handle_publication, handle_request};
use crate::replies::{REPLY_CACHE_GENERATION, ReplyCache};

/// How many requests an instance holds at once unless told otherwise (the AMQP prefetch).
pub const DEFAULT_CAPACITY: u16 = 100;
/// How long shutdown waits for requests in flight unless told otherwise.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest session id a request may carry, in bytes, unless
/// [`ServiceBuilder::max_session_id`](crate::ServiceBuilder::max_session_id) says otherwise.
pub const DEFAULT_MAX_SESSION_ID: usize = 1024;

/// A running service's endpoints and the transport they are served on.
///
/// Build one with [`Service::builder`], then [`serve`](Self::serve) it until a shutdown signal:
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
/// let service = Service::builder("com.example.config", &client)
///     .version("1.0.0")
///     .endpoint(Endpoint::new("loadedconfig", config).open())
///     .build()?;
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
pub(crate) struct Inner {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) endpoints: HashMap<String, Endpoint>,
    pub(crate) capacity: u16,
    pub(crate) admission: Arc<Admission>,
    pub(crate) caller_metrics: CallerMetrics,
    /// Counter names for the error codes answered, bounded.
    pub(crate) error_metrics: ErrorMetrics,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_session_id: usize,
    pub(crate) client: Client,
    pub(crate) instrumenter: Arc<dyn Instrumenter>,
    pub(crate) replies: ReplyCache,
    pub(crate) ops: Arc<Operations>,
    pub(crate) access_log: Option<crate::access_log::AccessLog>,
    pub(crate) auth: Option<kernel_auth::Auth>,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<(std::net::SocketAddr, kernel_inst::PrometheusInstrumenter)>,
}

impl Service {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        Service {
            inner: Arc::new(inner),
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

    /// This instance's id (`server-<name>-<uuid>`), as `stats`, `health` and announcements
    /// report it.
    pub fn instance_id(&self) -> &str {
        &self.inner.ops.instance_id
    }

    /// The latest sample of every health check (what `health` answers), without running
    /// them: for readiness probes.
    pub fn health(&self) -> HealthResponse {
        self.inner.ops.latest_health()
    }

    /// Whether the instance is ready for traffic: it consumes its queues (between the start
    /// of [`serve`](Self::serve) and shutdown) and no health check is unhealthy. What
    /// `/readyz` answers.
    pub fn is_ready(&self) -> bool {
        self.inner.ops.ready()
    }

    /// Waits until [`serve`](Self::serve) consumes the service's work queue and
    /// subscriptions (at once if it already does), on any clone of the service. From then on
    /// a request to the service is queued for it rather than returned as `NoRoute`: for tests
    /// and quick starts that must not call too early. Does not return if the service never
    /// starts serving; bound it with a timeout.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kernel_errors::Error> {
    /// use kernel_client::Client;
    /// use kernel_proto::examples::{HelloRequest, HelloResponse};
    /// use kernel_server::{Endpoint, Request, Service};
    /// use kernel_transport::InProcessBroker;
    ///
    /// async fn hello(_: Request<HelloRequest>) -> Result<HelloResponse, kernel_errors::Error> {
    ///     Ok(HelloResponse::default())
    /// }
    ///
    /// let broker = InProcessBroker::new();
    /// let service = Service::builder("com.example.ready", &Client::new(broker.connect()))
    ///     .endpoint(Endpoint::new("hello", hello).open())
    ///     .build()?;
    /// tokio::spawn(service.clone().serve());
    /// tokio::time::timeout(std::time::Duration::from_secs(5), service.serving())
    ///     .await
    ///     .expect("serving within 5 s");
    /// assert!(service.is_ready());
    /// # Ok(()) }
    /// ```
    pub async fn serving(&self) {
        let mut serving = self.inner.ops.serving.subscribe();
        // The sender lives as long as `self`: the wait ends only when serving.
        let _ = serving.wait_for(|serving| *serving).await;
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
        self.serve_with_shutdown(std::future::pending::<()>()).await
    }

    /// Serves until `shutdown` completes, then stops consuming, waits for the requests in
    /// flight (up to the shutdown timeout; the rest are abandoned and redelivered by the
    /// broker), and returns. `shutdown` is any future; what it outputs is ignored. Libraries
    /// never install signal handlers: pass `tokio::signal::ctrl_c()` or the umbrella crate's
    /// `kernel::shutdown_signal()`.
    ///
    /// # Errors
    /// `ConnectionLost` or `InternalServerError` if the work queue or a subscription cannot be
    /// consumed; `ConnectionLost` ([`codes::CONSUMER_ENDED`]) if one stops delivering before
    /// `shutdown` (the transport closed, or gave up reconnecting), after draining what is in
    /// flight. A supervisor should then restart the service.
    pub async fn serve_with_shutdown(self, shutdown: impl Future + Send) -> Result<(), Error> {
        let inner = &self.inner;
        inner.client.start().await?;
        let transport = inner.client.transport();
        // Each source yields its deliveries, then one `Ended` when its consumer stops: while
        // the service runs, that means the transport gave up (or the broker cancelled it).
        // Subscriptions first: once the work queue routes requests (what callers and a ping
        // can see), every subscription is bound too, and no publication sent after that point
        // is missed.
        let mut sources = Vec::new();
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
        let work = transport
            .consume(Source::Service {
                name: &inner.name,
                capacity: prefetch(inner.capacity),
            })
            .await?;
        sources.push(tagged(work, None));
        let mut events = stream::select_all(sources);
        if let Some(auth) = &inner.auth {
            auth.follow_sign_outs().await?;
        }
        #[cfg(feature = "prometheus")]
        let probes = crate::probes::start(inner).await?;
        inner.instrumenter.counter("runtime.started", 1, 1.0);
        inner.ops.serving.send_replace(true);
        tracing::info!(service = %inner.name, instance = %inner.ops.instance_id, "serving");
        // Health checks, announcements and statistics, until the service stops.
        let monitoring = monitor::start(&inner.ops);

        let mut in_flight = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        // The reply cache lets go of old notes even when no request comes to make it look.
        let mut expiry = tokio::time::interval(REPLY_CACHE_GENERATION / 2);
        expiry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ended = None;
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => log_failed_task(&inner.name, done),
                _ = expiry.tick() => inner.replies.expire(),
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

        inner.ops.serving.send_replace(false);
        drop(events); // stop consuming: nothing new arrives, unacked deliveries stay ours
        drop(monitoring);
        monitor::farewell(&inner.ops).await;
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
        #[cfg(feature = "prometheus")]
        crate::probes::stop(probes).await;
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

/// How many requests an instance takes from the broker for `capacity` running at once: more
/// than it runs, so that a flood filling the window cannot hide a quiet caller's request in
/// the broker's queue. What cannot run waits at most its endpoint's mean latency, then is
/// answered `Overloaded`, which frees its place in the window.
pub fn prefetch(capacity: u16) -> u16 {
    capacity
        .saturating_mul(PREFETCH_PER_SLOT)
        .max(capacity.saturating_add(16))
}

/// Requests taken from the broker per slot of capacity (see [`prefetch`]).
pub const PREFETCH_PER_SLOT: u16 = 4;

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
