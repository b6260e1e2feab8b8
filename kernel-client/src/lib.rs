//! Calling services: typed requests with deadlines and retries, publications, parallel calls.
//!
//! `kernel-client` sits on a [`Transport`](kernel_transport::Transport) and under
//! `kernel-server` (a service calls others through a client) and the `kernel` umbrella. A
//! [`Client`] sends a prost request to a service's endpoint and returns the typed response or
//! a platform [`Error`](kernel_errors::Error); [`parallel`] runs many calls with bounded
//! concurrency; [`MockClient`] (feature `test-util`) answers calls with stubs in unit tests.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kernel_errors::Error> {
//! use std::time::Duration;
//! use kernel_client::Client;
//! use kernel_errors::Kind;
//! use kernel_proto::platform::{HealthRequest, HealthResponse};
//! use kernel_transport::InProcessTransport;
//!
//! let client = Client::builder(InProcessTransport::new())
//!     .calling_as("com.example.caller")
//!     .deadline(Duration::from_secs(2))
//!     .build()?;
//! let reply = client.call::<HealthResponse>("com.example.users", "health", &HealthRequest::default()).await;
//! // Nobody serves com.example.users on this fresh in-process broker.
//! assert_eq!(reply.unwrap_err().kind(), Kind::NoRoute);
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `test-util` | [`MockClient`] | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod attempts;
mod breaker;
mod budget;
mod call;
mod client;
mod config;
#[cfg(feature = "test-util")]
mod mock;
mod parallel;
mod publish;
mod registry;
mod router;
mod timeouts;
mod window;

pub use breaker::{
    BreakerOptions, BreakerSettings, CircuitState, DEFAULT_BREAKER_INITIAL_BACKOFF,
    DEFAULT_BREAKER_MAX_BACKOFF, DEFAULT_BREAKER_MIN_SAMPLES, DEFAULT_BREAKER_MULTIPLIER,
    DEFAULT_BREAKER_THRESHOLD, DEFAULT_BREAKER_WINDOW, MAX_CIRCUITS,
};
pub use budget::{DEFAULT_RETRY_FLOOR, DEFAULT_RETRY_RATIO, DEFAULT_RETRY_WINDOW, RetryBudget};
pub use call::Call;
pub use client::{
    BuildError, Client, ClientBuilder, DEFAULT_ATTEMPT_TIMEOUT, DEFAULT_ATTEMPTS, DEFAULT_DEADLINE,
    WeakClient,
};
pub use config::{BreakerConfig, ClientConfig, RetryBudgetConfig, TimeoutsConfig};
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub use mock::{MockClient, NO_STUB};
pub use parallel::{DEFAULT_CONCURRENCY, Outcomes, parallel};
pub use publish::Publish;
pub use registry::{
    DEFAULT_SILENCE, DISCOVERY_TOPIC, EndpointSla, Instance, MAX_ENDPOINTS, MAX_INSTANCES,
    MAX_NAME, Registry, RegistryBuilder,
};
pub use router::ANSWERS_PER_CALL;
pub use timeouts::{AttemptTimeouts, DEFAULT_UPPER95, MAX_ATTEMPT_TIMEOUT, MIN_ATTEMPT_TIMEOUT};

/// Codes of the errors this crate raises.
pub mod codes {
    /// No reply within the call's deadline, after every attempt.
    pub const TIMEOUT: &str = "kernel.client.timeout";
    /// An error reply that does not decode as a `PlatformError`.
    pub const BAD_RESPONSE: &str = "kernel.client.badresponse";
    /// A reply that does not decode as the expected response type.
    pub const UNMARSHAL: &str = "kernel.client.unmarshal";
    /// A request that cannot be encoded.
    pub const MARSHAL: &str = "kernel.client.marshal";
    /// The reply router stopped (the transport closed) while a call needed it.
    pub const ROUTER_STOPPED: &str = "kernel.client.routerstopped";
    /// The circuit breaker of the (service, endpoint) is open: the call failed at once and
    /// nothing was sent (kind `CircuitBroken`).
    pub const CIRCUIT_BROKEN: &str = "kernel.client.circuitbroken";
    /// A [`ClientBuilder`](crate::ClientBuilder) setting is out of range.
    pub const INVALID_SETTINGS: &str = "kernel.client.invalidsettings";
}
