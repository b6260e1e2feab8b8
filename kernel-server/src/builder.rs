//! [`ServiceBuilder`] and [`BuildError`]: what a service serves, checked before it serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kernel_client::Client;
use kernel_errors::Error;
use kernel_inst::Instrumenter;

use crate::admission::{Admission, CallerMetrics};
use crate::codes;
use crate::endpoint::{Endpoint, valid_name};
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
        Ok(Service::from_inner(Inner {
            client: client.calling_as(self.name.clone()),
            name: self.name,
            version: self.version,
            description: self.description,
            endpoints,
            capacity: self.capacity,
            admission: Admission::new(usize::from(self.capacity)),
            caller_metrics: CallerMetrics::default(),
            shutdown_timeout: self.shutdown_timeout,
            max_session_id: self.max_session_id,
            instrumenter,
            replies: ReplyCache::new(),
        }))
    }
}
