//! Serving endpoints: typed handlers, the request path, publications and graceful shutdown.
//!
//! `kernel-server` sits on `kernel-client` (a service calls others through a client, and
//! shares its transport and reply router) and under the `kernel` umbrella. A [`Service`] is a
//! name, a version and [`Endpoint`]s, each an async [`Handler`] from a typed [`Request`] to a
//! typed response or a platform [`Error`](kernel_errors::Error). While it serves, an instance
//! publishes on the monitoring topics; [`platform_topics`] lists those (and the login
//! service's sign-outs) with the message type published on each.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kernel_errors::Error> {
//! use kernel_client::Client;
//! use kernel_errors::{Error, Kind};
//! use kernel_proto::platform::{JsonSchemaRequest, JsonSchemaResponse};
//! use kernel_server::{Endpoint, Request, Service};
//! use kernel_transport::InProcessTransport;
//!
//! async fn schema(request: Request<JsonSchemaRequest>) -> Result<JsonSchemaResponse, Error> {
//!     match request.message().endpoint.as_str() {
//!         "" => Ok(JsonSchemaResponse { jsonschema: "{}".into() }),
//!         other => Err(Error::not_found("com.example.docs.schema.missing", format!("no endpoint {other}"))),
//!     }
//! }
//!
//! let client = Client::new(InProcessTransport::new());
//! let service = Service::builder("com.example.docs", &client)
//!     .endpoint(Endpoint::new("schema", schema).open())
//!     .build()?;
//! tokio::spawn(service.serve());
//! # tokio::task::yield_now().await;
//!
//! let missing = client
//!     .call::<JsonSchemaResponse>("com.example.docs", "schema", &JsonSchemaRequest { endpoint: "nope".into() })
//!     .await;
//! assert_eq!(missing.unwrap_err().kind(), Kind::NotFound);
//! # Ok(()) }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod access_log;
mod admission;
mod builder;
mod config;
mod endpoint;
mod handler;
mod ops;
mod path;
#[cfg(feature = "prometheus")]
mod probes;
mod replies;
mod request;
pub mod schema;
mod service;

pub use access_log::ACCESS_LOG_BUFFER;
pub use admission::{MAX_CALLER_METRICS, MAX_ERROR_METRICS};
pub use builder::{BuildError, ServiceBuilder};
pub use config::ServerConfig;
pub use endpoint::{DEFAULT_MEAN_TIME, DEFAULT_UPPER95, Endpoint};
pub use handler::Handler;
pub use ops::health::{
    DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT, HealthCheck, MIN_RUN_SPACING, Measurements,
    Priority, Unhealthy,
};
pub use ops::{
    DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_ENDPOINTS, DEFAULT_STATS_INTERVAL, DISCOVERY_TOPIC,
    HEALTHCHECK_TOPIC, PlatformTopic, STATS_TOPIC, platform_topic, platform_topics,
};
pub use replies::{
    REPLY_CACHE_ENTRY_OVERHEAD, REPLY_CACHE_GENERATION, REPLY_CACHE_MAX_BYTES, REPLY_CACHE_TTL,
};
pub use request::{Request, RequestContext};
pub use service::{
    DEFAULT_CAPACITY, DEFAULT_MAX_SESSION_ID, DEFAULT_SHUTDOWN_TIMEOUT, PREFETCH_PER_SLOT, Service,
    prefetch,
};

/// Codes of the errors this crate raises.
pub mod codes {
    /// The request names an endpoint the service does not have.
    pub const UNKNOWN_ENDPOINT: &str = "kernel.server.unknownendpoint";
    /// The request was addressed to another service.
    pub const WRONG_SERVICE: &str = "kernel.server.wrongservice";
    /// The payload does not decode as the endpoint's request type, or its content type is
    /// not one the kernel speaks.
    pub const BAD_REQUEST: &str = "kernel.server.badrequest";
    /// The handler panicked.
    pub const PANIC: &str = "kernel.server.panic";
    /// The handler's response could not be encoded.
    pub const MARSHAL: &str = "kernel.server.marshal";
    /// The request's session id is longer than the service accepts.
    pub const SESSION_ID_TOO_LONG: &str = "kernel.server.sessionidtoolong";
    /// The service is out of capacity: no slot came within the endpoint's mean latency.
    /// `Overloaded`: clients retry it (elsewhere), breakers ignore it.
    pub const CAPACITY: &str = "kernel.server.capacity";
    /// A [`ServiceBuilder`](crate::ServiceBuilder) was given something it cannot serve.
    pub const INVALID_SERVICE: &str = "kernel.server.invalidservice";
    /// The Prometheus/probe listener (`ServiceBuilder::prometheus`) cannot bind its address.
    pub const PROBE_LISTEN: &str = "kernel.server.probelisten";
    /// A consumer (the work queue's or a subscription's) stopped delivering while serving.
    pub const CONSUMER_ENDED: &str = "kernel.server.consumerended";
}
