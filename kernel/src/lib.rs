#![doc = include_str!("../README.md")]
//!
//! # This crate
//!
//! The umbrella: it re-exports the focused crates (each usable on its own), offers a
//! [`prelude`], reads configuration ([`Config`]: one section per crate, from `kernel.toml`,
//! `KERNEL_*` variables and code; every key in [`docs/operations.md`](https://github.com/kernel-platform/kernel/blob/main/docs/operations.md)), and
//! wires the defaults: `Client::from_env()` and `Service::from_env(name)` use RabbitMQ when
//! `KERNEL_AMQP_URL` is set and the in-process broker otherwise.
//!
//! ```
//! use kernel::prelude::*;
//! use kernel::proto::examples::{HelloRequest, HelloResponse};
//!
//! async fn hello(request: Request<HelloRequest>) -> Result<HelloResponse, Error> {
//!     Ok(HelloResponse { greeting: format!("hello, {}", request.message().name), served_by: String::new() })
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Error> {
//! let service = Service::from_env("com.example.greeter").await?
//!     .endpoint(Endpoint::new("hello", hello).open())
//!     .build()?;
//! let client = service.client().clone();
//! tokio::spawn(service.serve_with_shutdown(kernel::shutdown_signal()));
//! # tokio::task::yield_now().await;
//!
//! let reply = client
//!     .call::<HelloResponse>("com.example.greeter", "hello", &HelloRequest { name: "ada".into() })
//!     .await?;
//! assert_eq!(reply.greeting, "hello, ada");
//! # Ok(()) }
//! ```
//!
//! | crate | re-exported as | owns |
//! |---|---|---|
//! | `kernel-errors` | [`Error`], [`Kind`], [`errors`] | the platform error |
//! | `kernel-proto` | [`proto`] | the platform's protobuf messages |
//! | `kernel-inst` | [`inst`] | metrics: statsd, in-memory, no-op |
//! | `kernel-transport` | [`transport`] | the in-process broker and RabbitMQ |
//! | `kernel-client` | [`Client`], [`client`] | calls, publications, parallel calls |
//! | `kernel-server` | [`Service`], [`Endpoint`], [`Request`], [`server`] | services, handlers, default endpoints, health checks |
//! | `kernel-sync` | [`sync`] | region locks, leaders and the global lock |
//! | `kernel-auth` | [`auth`] | tokens, roles, scopes, authorisers, service-to-service rules |
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `amqp` | the RabbitMQ transport | yes |
//! | `tls` | `amqps://` URLs (rustls) | yes |
//! | `statsd` | the statsd instrumenter | yes |
//! | `prometheus` | `/metrics`, `/healthz`, `/readyz` on `[metrics] prometheus_listen` | no |
//! | `zookeeper` | ZooKeeper locks in [`sync`] and [`checks::zookeeper`] | no |
//! | `cassandra` | the Cassandra lock in [`sync`] and [`checks::cassandra`] | no |
//! | `otel` | span export to an OpenTelemetry collector ([`telemetry::LogConfig`]) | no |
//! | `full` | all of the above and `MockClient` | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

pub mod checks;
mod config;
mod env;
mod locks;
mod reload;
mod signal;
pub mod telemetry;

pub use config::{Config, DEFAULT_CONFIG_FILE};
pub use env::{ClientFromEnv, ServiceFromEnv};
pub use kernel_auth as auth;
pub use kernel_client::{self as client, Client};
pub use kernel_errors::INVALID_CONFIG;
pub use kernel_errors::{self as errors, Error, Kind};
pub use kernel_inst as inst;
pub use kernel_proto as proto;
pub use kernel_server::{self as server, Endpoint, Handler, Request, Service};
pub use kernel_sync as sync;
pub use kernel_transport as transport;
pub use kernel_transport::redact_url;
pub use locks::Locks;
pub use reload::RELOAD_INTERVAL;
pub use signal::shutdown_signal;

/// Includes the code `kernel-build` generated in the build script for proto package
/// `$package` (a string literal, e.g. `"acme.shop.v1"`): its messages, and per proto service a
/// typed client, a service trait and its server. Use it inside the module that should hold
/// them. `kernel-build/tests/fixture` does, in a crate with the workspace's lints.
///
/// ```text
/// pub mod shop {
///     kernel::include_proto!("acme.shop.v1");
/// }
/// ```
#[macro_export]
macro_rules! include_proto {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// The code in [`docs/operations.md`](https://github.com/kernel-platform/kernel/blob/main/docs/operations.md), compiled as doc tests so the page stays true.
#[cfg(doctest)]
#[doc = include_str!("../../docs/operations.md")]
pub struct OperationsDoc;

/// The names most services need: `use kernel::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Client, ClientFromEnv, Endpoint, Error, Kind, Request, Service, ServiceFromEnv,
        shutdown_signal,
    };
}
