//! [`ServiceBuilder`] and [`BuildError`]: what a service serves, checked before it serves.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use foldhash::HashMap;
use kernel_client::Client;
use kernel_errors::Error;
use kernel_inst::{Instrumenter, MemoryInstrumenter};
use kernel_proto::platform::EndpointInfo;

use crate::access_log::AccessLog;
use crate::admission::{Admission, CallerMetrics, ErrorMetrics};
use crate::codes;
use crate::endpoint::{Endpoint, valid_name};
use crate::ops::health::{HealthCheck, Slot};
use crate::ops::{self, DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_STATS_INTERVAL, Operations};
use crate::replies::ReplyCache;
use crate::service::{
    DEFAULT_CAPACITY, DEFAULT_MAX_SESSION_ID, DEFAULT_SHUTDOWN_TIMEOUT, Inner, Service,
};

/// Builds a [`Service`]; start with [`Service::builder`].
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
    health_checks: Vec<HealthCheck>,
    config: serde_json::Map<String, serde_json::Value>,
    descriptors: Vec<bytes::Bytes>,
    announce_interval: Duration,
    stats_interval: Duration,
    access_log: Option<std::path::PathBuf>,
    auth: Option<kernel_auth::Auth>,
    #[cfg(feature = "prometheus")]
    prometheus: Option<(std::net::SocketAddr, kernel_inst::PrometheusInstrumenter)>,
    client: Client,
}

/// A [`ServiceBuilder`] was given something it cannot serve. Converts into the platform
/// [`Error`] (`InternalServerError`, [`codes::INVALID_SERVICE`]), so `?` works in a function
/// returning one.
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
    /// Two health checks have the same id.
    #[error("duplicate health check {0:?}")]
    DuplicateHealthCheck(String),
    /// A descriptor set given to [`ServiceBuilder::descriptors`] does not decode.
    #[error("invalid descriptor set: {0}")]
    InvalidDescriptors(String),
    /// The access log cannot be opened.
    #[error("cannot open the access log {path:?}: {reason}")]
    AccessLog {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// An interval or timeout is zero.
    #[error("{0} must be greater than zero")]
    ZeroDuration(String),
}

impl From<BuildError> for Error {
    fn from(error: BuildError) -> Self {
        Error::internal_server_error(codes::INVALID_SERVICE, error.to_string())
    }
}

impl Service {
    /// Starts building the service called `name` (e.g. `com.example.greeter`), served on
    /// `client`'s transport and sharing its reply router. The service calls other services as
    /// itself through [`Service::client`], a copy of `client` calling as the service.
    pub fn builder(name: impl Into<String>, client: &Client) -> ServiceBuilder {
        ServiceBuilder {
            name: name.into(),
            version: String::new(),
            description: String::new(),
            endpoints: Vec::new(),
            capacity: DEFAULT_CAPACITY,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            max_session_id: DEFAULT_MAX_SESSION_ID,
            instrumenter: None,
            health_checks: Vec::new(),
            config: serde_json::Map::new(),
            descriptors: Vec::new(),
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
            stats_interval: DEFAULT_STATS_INTERVAL,
            access_log: None,
            auth: None,
            #[cfg(feature = "prometheus")]
            prometheus: None,
            client: client.clone(),
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

    /// How many requests an instance runs at once, shared fairly between its callers; default
    /// [`DEFAULT_CAPACITY`]. It takes [`prefetch`](crate::prefetch)`(capacity)` from the
    /// broker; a request that finds no slot within its endpoint's mean latency is answered
    /// `Overloaded` (`kernel.server.capacity`).
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

    /// Adds a health check, run in the background while the service serves and reported by
    /// `health`. A check with the id of a built-in one (`kernel.transport.connection`,
    /// `kernel.client.circuit`, `kernel.resource.capacity`) replaces it.
    pub fn health_check(mut self, check: HealthCheck) -> Self {
        self.health_checks.push(check);
        self
    }

    /// Adds a section to what `loadedconfig` shows (the umbrella crate adds the whole
    /// configuration it loaded). Redact secrets before: the value is shown as given.
    pub fn loaded_config(mut self, section: impl Into<String>, value: serde_json::Value) -> Self {
        self.config.insert(section.into(), value);
        self
    }

    /// Adds the encoded `FileDescriptorSet` of the endpoints' messages (as `protox` or
    /// `prost-build` write it), so that `jsonschema` can describe them. The platform's own
    /// messages are always known.
    pub fn descriptors(mut self, file_descriptor_set: impl Into<bytes::Bytes>) -> Self {
        self.descriptors.push(file_descriptor_set.into());
        self
    }

    /// How often the instance announces itself on `kernel.monitor.discovery`; default
    /// [`DEFAULT_ANNOUNCE_INTERVAL`](crate::DEFAULT_ANNOUNCE_INTERVAL).
    pub fn announce_interval(mut self, interval: Duration) -> Self {
        self.announce_interval = interval;
        self
    }

    /// How often the instance publishes its statistics on `kernel.monitor.stats`; default
    /// [`DEFAULT_STATS_INTERVAL`](crate::DEFAULT_STATS_INTERVAL).
    pub fn stats_interval(mut self, interval: Duration) -> Self {
        self.stats_interval = interval;
        self
    }

    /// Recovers the sessions requests name and applies service-to-service rules with `auth`
    /// (one per process, shared by its services). Without it nobody is signed in and no rule
    /// applies: only open endpoints run.
    pub fn auth(mut self, auth: kernel_auth::Auth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Appends H2's access log, one line per request answered, to the file at `path`
    /// (created if missing); default none. See [`docs/operations.md`](https://github.com/kernel-platform/kernel/blob/main/docs/operations.md) for the format.
    pub fn access_log(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.access_log = Some(path.into());
        self
    }

    /// While the service serves, answers HTTP on `listen`: `GET /metrics` (what `metrics`
    /// has recorded, in Prometheus' text format), `/healthz` (200 while the process runs) and
    /// `/readyz` (200 while the service consumes its queues and no health check is
    /// unhealthy; 503 otherwise, and from the moment shutdown starts). Record into `metrics`
    /// by making it (part of) the client's or the service's instrumenter, as
    /// `Service::from_env` does when `[metrics] prometheus_listen` is set.
    #[cfg(feature = "prometheus")]
    #[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
    pub fn prometheus(
        mut self,
        listen: std::net::SocketAddr,
        metrics: kernel_inst::PrometheusInstrumenter,
    ) -> Self {
        self.prometheus = Some((listen, metrics));
        self
    }

    /// Builds the service.
    ///
    /// # Errors
    /// [`BuildError`] naming what is wrong.
    pub fn build(self) -> Result<Service, BuildError> {
        let client = self.client;
        if self.name.is_empty() || self.name.len() > 255 {
            return Err(BuildError::InvalidServiceName(self.name));
        }
        if self.endpoints.is_empty() {
            return Err(BuildError::NoEndpoints);
        }
        if self.capacity == 0 {
            return Err(BuildError::ZeroCapacity);
        }
        for (name, interval) in [
            ("announce_interval", self.announce_interval),
            ("stats_interval", self.stats_interval),
        ] {
            if interval.is_zero() {
                return Err(BuildError::ZeroDuration(name.to_owned()));
            }
        }
        let mut endpoints = HashMap::default();
        for endpoint in self.endpoints {
            if !valid_name(&endpoint.name) {
                return Err(BuildError::InvalidEndpointName(endpoint.name));
            }
            if endpoints.contains_key(&endpoint.name) {
                return Err(BuildError::DuplicateEndpoint(endpoint.name));
            }
            endpoints.insert(endpoint.name.clone(), endpoint);
        }

        // Everything the service records also goes to memory, for `stats`.
        let memory = MemoryInstrumenter::new();
        let instrumenter: Arc<dyn Instrumenter> = Arc::new((
            self.instrumenter
                .unwrap_or_else(|| Arc::clone(client.instrumenter())),
            memory.clone(),
        ));
        let admission = Admission::new(usize::from(self.capacity));
        let service_client = client.calling_as(self.name.clone());

        let mut checks: Vec<HealthCheck> =
            ops::builtin(&service_client, &admission, self.capacity, &memory);
        for check in self.health_checks {
            if check.interval.is_zero() || check.timeout.is_zero() {
                return Err(BuildError::ZeroDuration(format!(
                    "the interval and timeout of health check {:?}",
                    check.id
                )));
            }
            if let Some(builtin) = checks.iter().position(|c| c.id == check.id) {
                if builtin >= ops::BUILTIN_CHECKS {
                    return Err(BuildError::DuplicateHealthCheck(check.id));
                }
                checks[builtin] = check;
            } else {
                checks.push(check);
            }
        }

        let mut config = serde_json::Map::new();
        config.insert(
            "service".to_owned(),
            serde_json::json!({
                "name": self.name,
                "version": self.version,
                "capacity": self.capacity,
                "shutdown_timeout_ms": self.shutdown_timeout.as_millis(),
                "max_session_id": self.max_session_id,
                "announce_interval_ms": self.announce_interval.as_millis(),
                "stats_interval_ms": self.stats_interval.as_millis(),
            }),
        );
        config.extend(self.config);

        let extra: Vec<&[u8]> = self.descriptors.iter().map(|set| set.as_ref()).collect();
        let descriptors = crate::schema::pool(&extra)
            .map_err(|error| BuildError::InvalidDescriptors(error.to_string()))?;
        let ops = Arc::new(Operations {
            service: self.name.clone(),
            version: self.version.clone(),
            description: self.description.clone(),
            instance_id: format!("server-{}-{}", self.name, uuid::Uuid::new_v4()),
            hostname: ops::hostname(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            checks: checks.into_iter().map(Slot::new).collect(),
            memory,
            config: serde_json::Value::Object(config),
            endpoints: OnceLock::new(),
            descriptors,
            announce_interval: self.announce_interval,
            stats_interval: self.stats_interval,
            client: service_client.clone(),
            serving: tokio::sync::watch::Sender::new(false),
        });
        // The default endpoints, unless the service has its own of the same name.
        for endpoint in ops::defaults(&ops) {
            endpoints.entry(endpoint.name.clone()).or_insert(endpoint);
        }
        let mut described: Vec<EndpointInfo> = endpoints.values().map(describe).collect();
        described.sort_by(|a, b| a.name.cmp(&b.name));
        ops.endpoints.get_or_init(|| described.into());

        let access_log = match &self.access_log {
            Some(path) => Some(
                AccessLog::open(path).map_err(|error| BuildError::AccessLog {
                    path: path.clone(),
                    reason: error.to_string(),
                })?,
            ),
            None => None,
        };

        Ok(Service::from_inner(Inner {
            client: service_client,
            name: self.name,
            version: self.version,
            description: self.description,
            endpoints,
            capacity: self.capacity,
            admission,
            caller_metrics: CallerMetrics::default(),
            error_metrics: ErrorMetrics::default(),
            shutdown_timeout: self.shutdown_timeout,
            max_session_id: self.max_session_id,
            instrumenter,
            replies: ReplyCache::new(),
            ops,
            access_log,
            auth: self.auth,
            #[cfg(feature = "prometheus")]
            prometheus: self.prometheus,
        }))
    }
}

/// An endpoint as announcements and `stats` describe it.
fn describe(endpoint: &Endpoint) -> EndpointInfo {
    EndpointInfo {
        name: endpoint.name.clone(),
        mean_ms: ops::ms(endpoint.mean_time),
        upper95_ms: ops::ms(endpoint.upper95),
        subscribe: endpoint.subscribe.clone().unwrap_or_default(),
        request_type: endpoint.request_type.clone(),
        response_type: endpoint.response_type.clone(),
    }
}
