//! [`Client`] and [`ClientBuilder`].

use std::sync::Arc;
use std::time::Duration;

use kernel_errors::Error;
use kernel_inst::{Instrumenter, NoopInstrumenter};
use kernel_transport::{ContentType, Message, Source, Transport};
use tokio::sync::OnceCell;

use crate::breaker::{BreakerOptions, BreakerSettings, Breakers, CircuitState};
use crate::budget::{Budget, RetryBudget};
use crate::call::Call;
use crate::codes;
use crate::publish::Publish;
use crate::router::{Pending, Router};
use crate::timeouts::AttemptTimeouts;

/// How long a call may take in all, attempts included, unless the call says otherwise.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// How long the first attempt waits for its reply when the endpoint's SLA is not known (later
/// attempts wait longer, see [`AttemptTimeouts`]); never longer than what is left of the
/// deadline.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = crate::timeouts::DEFAULT_UPPER95;
/// How many times a call is sent at most (the first attempt included).
pub const DEFAULT_ATTEMPTS: u32 = 3;

/// Calls services and publishes to topics over a [`Transport`].
///
/// A client sends typed protobuf requests and returns the typed response or the platform
/// [`Error`]. Each call has one overall deadline; each attempt waits at most the attempt
/// timeout (the last one, all that is left of the deadline). The client retries what it
/// observes itself (no answer in time, no route, a lost connection) and `Overloaded` error
/// replies; retries reuse the message id, so a late reply to an earlier attempt still
/// completes the call. Every other error reply is the answer and is returned as it is.
///
/// Cloning is cheap: clones share the transport, the reply router and the settings. The reply
/// router (the consumer of this process's instance queue) starts with the first call and
/// stops when the last clone is dropped. Build **one client per transport** and clone it (or
/// [`calling_as`](Self::calling_as) it): a second client on the same transport cannot consume
/// the instance queue and fails its calls with `kernel.transport.instancequeuetaken`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use kernel_client::Client;
/// use kernel_errors::Kind;
/// use kernel_proto::platform::{HealthRequest, HealthResponse};
/// use kernel_transport::InProcessTransport;
///
/// let client = Client::new(InProcessTransport::new());
/// let reply: Result<HealthResponse, _> =
///     client.call("com.example.nobody", "health", &HealthRequest::default()).await;
/// assert_eq!(reply.unwrap_err().kind(), Kind::NoRoute);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
    from: Arc<str>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) transport: Arc<dyn Transport>,
    pub(crate) instrumenter: Arc<dyn Instrumenter>,
    pub(crate) defaults: Defaults,
    pub(crate) pending: Arc<Pending>,
    /// One breaker per (service, endpoint) called.
    pub(crate) breakers: Breakers,
    /// Shared by all calls; `None`: retries are limited by `attempts` alone.
    pub(crate) budget: Option<Budget>,
    /// Attempt timeouts from endpoints' SLAs, unless a fixed one is set.
    pub(crate) timeouts: AttemptTimeouts,
    /// SLAs announced by services, once a [`Registry`](crate::Registry) listens for them.
    pub(crate) learned: std::sync::OnceLock<Arc<crate::registry::Shared>>,
    /// Metric names of the (service, endpoint) pairs called, made once.
    pub(crate) buckets: crate::call::BucketCache,
    router: OnceCell<Router>,
}

/// A [`Client`] that does not keep it alive; see [`Client::downgrade`].
#[derive(Clone, Debug)]
pub struct WeakClient {
    inner: std::sync::Weak<Inner>,
    from: Arc<str>,
}

impl WeakClient {
    /// The client, if a clone of it still exists.
    pub fn upgrade(&self) -> Option<Client> {
        Some(Client {
            inner: self.inner.upgrade()?,
            from: Arc::clone(&self.from),
        })
    }
}

/// Per-call settings a client starts from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Defaults {
    pub(crate) deadline: Duration,
    /// A fixed attempt timeout; `None`: from the SLA table.
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) attempts: u32,
    pub(crate) content_type: ContentType,
}

/// Builds a [`Client`]; see [`Client::builder`].
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    transport: Arc<dyn Transport>,
    from: String,
    instrumenter: Arc<dyn Instrumenter>,
    defaults: Defaults,
    breakers: BreakerSettings,
    budget: Option<RetryBudget>,
    timeouts: AttemptTimeouts,
}

/// A [`ClientBuilder`] setting is out of range. Converts into the platform [`Error`]
/// (`InternalServerError`, [`codes::INVALID_SETTINGS`]), so `?` works in a function returning
/// one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// `attempts` must be at least 1.
    #[error("attempts must be at least 1")]
    NoAttempts,
    /// A duration setting is zero.
    #[error("{field} must be greater than zero")]
    ZeroDuration {
        /// The setting's name.
        field: &'static str,
    },
    /// A breaker or retry budget value is out of range.
    #[error("{field} must be {expected}")]
    OutOfRange {
        /// The value's name (`breaker.threshold`, `retry_budget.ratio`).
        field: &'static str,
        /// Its range.
        expected: &'static str,
    },
}

impl From<BuildError> for Error {
    fn from(error: BuildError) -> Self {
        Error::internal_server_error(codes::INVALID_SETTINGS, error.to_string())
    }
}

impl Client {
    /// A client with the default settings, calling as nobody in particular (`from` empty).
    pub fn new(transport: impl Transport) -> Self {
        // The defaults are valid by construction.
        Self::builder(transport).build_unchecked()
    }

    /// Starts building a client on `transport`.
    pub fn builder(transport: impl Transport) -> ClientBuilder {
        ClientBuilder {
            transport: Arc::new(transport),
            from: String::new(),
            instrumenter: Arc::new(NoopInstrumenter),
            defaults: Defaults {
                deadline: DEFAULT_DEADLINE,
                attempt_timeout: None,
                attempts: DEFAULT_ATTEMPTS,
                content_type: ContentType::Protobuf,
            },
            breakers: BreakerSettings::default(),
            budget: Some(RetryBudget::new()),
            timeouts: AttemptTimeouts::default(),
        }
    }

    /// Calls `service`'s `endpoint` with `request`; await it for the typed response.
    ///
    /// The returned [`Call`] can be adjusted before it is awaited (deadline, attempts, JSON,
    /// session and trace ids).
    ///
    /// # Errors
    /// The awaited call fails with the server's error reply, or with `Timeout`
    /// (`kernel.client.timeout`), `NoRoute`, `Overloaded` or `ConnectionLost` once its
    /// attempts or its deadline are used up, or `BadResponse` if the reply does not decode as
    /// `Rsp`.
    ///
    /// The response type is the one type to name: `client.call::<HelloResponse>(..)`, or let
    /// it be inferred from where the result goes.
    pub fn call<'a, Rsp: Message>(
        &'a self,
        service: &'a str,
        endpoint: &'a str,
        request: &'a impl Message,
    ) -> Call<'a, Rsp> {
        Call::new(self, service, endpoint, request)
    }

    /// Publishes `message` to every subscriber of `topic`; await it to send.
    pub fn publish<'a, M: Message>(&'a self, topic: &'a str, message: &'a M) -> Publish<'a, M> {
        Publish::new(self, topic, message)
    }

    /// The transport this client sends on.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// The name this client calls as (the `from` header); empty if not set. Set with
    /// [`ClientBuilder::calling_as`] or [`calling_as`](Self::calling_as).
    pub fn caller(&self) -> &str {
        &self.from
    }

    /// The same client (same transport, reply router and settings) calling as `name`: how a
    /// service gets a client that says who it is, on the transport the process already uses.
    ///
    /// ```
    /// # use kernel_client::Client;
    /// # use kernel_transport::InProcessTransport;
    /// let client = Client::new(InProcessTransport::new());
    /// let as_greeter = client.calling_as("com.example.greeter");
    /// assert_eq!(as_greeter.caller(), "com.example.greeter");
    /// assert_eq!(client.caller(), "");
    /// ```
    pub fn calling_as(&self, name: impl Into<String>) -> Client {
        Client {
            inner: Arc::clone(&self.inner),
            from: Arc::from(name.into()),
        }
    }

    /// The instrumenter calls are recorded with.
    pub fn instrumenter(&self) -> &Arc<dyn Instrumenter> {
        &self.inner.instrumenter
    }

    /// Starts the reply router if it is not running yet. Calls do this themselves; a service
    /// does it at start so that heartbeats to its instance are answered from the first moment.
    ///
    /// # Errors
    /// `ConnectionLost` if the instance queue cannot be consumed, or if the router stopped
    /// because the transport closed.
    pub async fn start(&self) -> Result<(), Error> {
        let inner = &self.inner;
        let router = inner
            .router
            .get_or_try_init(|| async {
                let deliveries = inner.transport.consume(Source::Instance).await?;
                Ok::<_, Error>(Router::start(
                    deliveries,
                    Arc::clone(&inner.pending),
                    Arc::clone(&inner.transport),
                    Arc::clone(&inner.instrumenter),
                ))
            })
            .await?;
        if router.is_running() {
            Ok(())
        } else {
            Err(Error::connection_lost(
                codes::ROUTER_STOPPED,
                "the instance queue's consumer has stopped; the transport is closed",
            ))
        }
    }

    /// Where the circuit breaker of `service`'s `endpoint` stands. Only reads: it creates no
    /// breaker and never takes the half-open probe. `Closed` for an endpoint not called yet
    /// or with no breaker.
    ///
    /// ```
    /// # use kernel_client::{Client, CircuitState};
    /// # use kernel_transport::InProcessTransport;
    /// let client = Client::new(InProcessTransport::new());
    /// assert_eq!(client.circuit_state("com.example.users", "get"), CircuitState::Closed);
    /// ```
    pub fn circuit_state(&self, service: &str, endpoint: &str) -> CircuitState {
        let now = tokio::time::Instant::now().into_std();
        self.inner.breakers.state(service, endpoint, now)
    }

    /// Every (service, endpoint) whose breaker is open or half-open, sorted: what a health
    /// check reports (H2's `kernel.client.circuit`). Only reads, like
    /// [`circuit_state`](Self::circuit_state).
    pub fn open_circuits(&self) -> Vec<(String, String, CircuitState)> {
        let now = tokio::time::Instant::now().into_std();
        self.inner.breakers.not_closed(now)
    }

    /// The breaker settings in force.
    pub fn breaker_settings(&self) -> BreakerSettings {
        self.inner.breakers.settings()
    }

    /// Puts new breaker settings in force, for this client and all its clones (a
    /// configuration reload). The breaker of a (service, endpoint) whose options are unchanged
    /// keeps its state, open or closed; one whose options changed starts closed, counts
    /// cleared, with the new options; a disabled one is dropped.
    ///
    /// # Errors
    /// [`BuildError::OutOfRange`] naming a value out of range; nothing changes then.
    ///
    /// ```
    /// # use kernel_client::{BreakerOptions, Client};
    /// # use kernel_transport::InProcessTransport;
    /// let client = Client::new(InProcessTransport::new());
    /// let settings = client
    ///     .breaker_settings()
    ///     .endpoint("com.example.users", "get", BreakerOptions::new().min_samples(20));
    /// client.set_breaker_settings(settings.clone())?;
    /// assert_eq!(client.breaker_settings(), settings);
    /// # Ok::<_, kernel_client::BuildError>(())
    /// ```
    pub fn set_breaker_settings(&self, settings: BreakerSettings) -> Result<(), BuildError> {
        self.inner.breakers.replace(settings)
    }

    /// Sizes attempt timeouts from what `registry` hears, for this client and its clones (the
    /// first registry started on a client is the one used).
    pub(crate) fn learn_slas_from(&self, registry: &Arc<crate::registry::Shared>) {
        let _first_wins = self.inner.learned.set(Arc::clone(registry));
    }

    /// A handle that does not keep the client alive: for background tasks (a configuration
    /// watcher) that should end with the client.
    pub fn downgrade(&self) -> WeakClient {
        WeakClient {
            inner: Arc::downgrade(&self.inner),
            from: Arc::clone(&self.from),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl ClientBuilder {
    /// The name to call as: the `from` header, used by servers for per-caller fairness and
    /// service-to-service rules. A service's own client uses the service's name.
    pub fn calling_as(mut self, name: impl Into<String>) -> Self {
        self.from = name.into();
        self
    }

    /// Where calls are recorded; default [`NoopInstrumenter`].
    pub fn instrumenter(mut self, instrumenter: Arc<dyn Instrumenter>) -> Self {
        self.instrumenter = instrumenter;
        self
    }

    /// The overall deadline of a call; default [`DEFAULT_DEADLINE`].
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.defaults.deadline = deadline;
        self
    }

    /// How long every attempt of every call waits for its reply, fixed, instead of the
    /// SLA-derived [`attempt_timeouts`](Self::attempt_timeouts).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.defaults.attempt_timeout = Some(timeout);
        self
    }

    /// How long each attempt waits, from each endpoint's upper-95 latency; default
    /// [`AttemptTimeouts::default`] (2 s × the attempt number for endpoints whose SLA is not
    /// declared). A fixed [`attempt_timeout`](Self::attempt_timeout) takes precedence.
    pub fn attempt_timeouts(mut self, timeouts: AttemptTimeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// How many times a call is sent at most; default [`DEFAULT_ATTEMPTS`].
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.defaults.attempts = attempts;
        self
    }

    /// How requests are encoded; default protobuf.
    pub fn content_type(mut self, content_type: ContentType) -> Self {
        self.defaults.content_type = content_type;
        self
    }

    /// The circuit breaker options of every (service, endpoint) not given its own with
    /// [`breaker_for`](Self::breaker_for); default [`BreakerOptions::new`] (H2's).
    pub fn breaker(mut self, options: BreakerOptions) -> Self {
        self.breakers.set_default(options);
        self
    }

    /// The circuit breaker options of `service`'s `endpoint`.
    ///
    /// ```
    /// # use kernel_client::{BreakerOptions, Client};
    /// # use kernel_transport::InProcessTransport;
    /// let client = Client::builder(InProcessTransport::new())
    ///     .breaker_for("com.example.search", "query", BreakerOptions::new().min_samples(20))
    ///     .build()?;
    /// let options = client.breaker_settings().options_for("com.example.search", "query");
    /// assert_eq!(options, BreakerOptions::new().min_samples(20));
    /// # Ok::<_, kernel_client::BuildError>(())
    /// ```
    pub fn breaker_for(
        mut self,
        service: impl Into<String>,
        endpoint: impl Into<String>,
        options: BreakerOptions,
    ) -> Self {
        self.breakers
            .set_endpoint(service.into(), endpoint.into(), options);
        self
    }

    /// No circuit breaker for endpoints not given options with
    /// [`breaker_for`](Self::breaker_for) (the same as
    /// `breaker(BreakerOptions::disabled())`).
    pub fn without_breaker(self) -> Self {
        self.breaker(BreakerOptions::disabled())
    }

    /// The retry budget shared by all calls of the client (and its clones); default
    /// [`RetryBudget::new`].
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// No retry budget: retries are limited by `attempts` and the deadline alone.
    pub fn without_retry_budget(mut self) -> Self {
        self.budget = None;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`BuildError`] naming the setting that is out of range.
    pub fn build(self) -> Result<Client, BuildError> {
        if self.defaults.attempts == 0 {
            return Err(BuildError::NoAttempts);
        }
        for (field, value) in [
            ("deadline", self.defaults.deadline),
            (
                "attempt_timeout",
                self.defaults
                    .attempt_timeout
                    .unwrap_or(DEFAULT_ATTEMPT_TIMEOUT),
            ),
        ] {
            if value.is_zero() {
                return Err(BuildError::ZeroDuration { field });
            }
        }
        self.breakers.check()?;
        if let Some(budget) = &self.budget {
            budget.check()?;
        }
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> Client {
        Client {
            from: Arc::from(self.from),
            inner: Arc::new(Inner {
                transport: self.transport,
                breakers: Breakers::new(self.breakers, Arc::clone(&self.instrumenter)),
                instrumenter: self.instrumenter,
                defaults: self.defaults,
                pending: Arc::default(),
                budget: self.budget.map(Budget::new),
                timeouts: self.timeouts,
                learned: std::sync::OnceLock::new(),
                buckets: crate::call::BucketCache::default(),
                router: OnceCell::new(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use kernel_transport::InProcessTransport;

    use super::*;

    #[test]
    fn builder_rejects_settings_out_of_range() {
        let build = |b: ClientBuilder| b.build().map(drop);
        let transport = InProcessTransport::new();
        assert_eq!(
            build(Client::builder(transport.clone()).attempts(0)),
            Err(BuildError::NoAttempts)
        );
        assert_eq!(
            build(Client::builder(transport.clone()).deadline(Duration::ZERO)),
            Err(BuildError::ZeroDuration { field: "deadline" })
        );
        assert_eq!(
            build(Client::builder(transport.clone()).breaker_for(
                "s",
                "e",
                BreakerOptions::new().min_samples(0)
            )),
            Err(BuildError::OutOfRange {
                field: "breaker.min_samples",
                expected: "at least 1"
            })
        );
        assert!(matches!(
            build(Client::builder(transport.clone()).retry_budget(RetryBudget::new().ratio(-1.0))),
            Err(BuildError::OutOfRange {
                field: "retry_budget.ratio",
                ..
            })
        ));
        assert!(build(Client::builder(transport).attempts(1)).is_ok());
    }

    #[test]
    fn client_is_send_sync_and_cheap_to_clone() {
        fn assert_bounds<T: Send + Sync + Clone + 'static>() {}
        assert_bounds::<Client>();
    }
}
