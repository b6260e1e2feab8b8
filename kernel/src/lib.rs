#![doc = include_str!("../../README.md")]
//!
//! # This crate
//!
//! The umbrella: it re-exports the focused crates (each usable on its own), offers a
//! [`prelude`], reads configuration ([`Config`]: `kernel.toml` and `KERNEL_*` variables), and
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
//!     .endpoint(Endpoint::new("hello", hello))
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
//! | `kernel-server` | [`Service`], [`Endpoint`], [`Request`], [`server`] | services and handlers |
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `amqp` | the RabbitMQ transport | yes |
//! | `tls` | `amqps://` URLs (rustls) | yes |
//! | `statsd` | the statsd instrumenter | yes |
//! | `otel` | span export to an OpenTelemetry collector ([`telemetry::LogConfig`]) | no |
//! | `full` | all of the above and `MockClient` | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod config;
mod env;
mod signal;
pub mod telemetry;

pub use config::{Config, INVALID_CONFIG, redact_url};
pub use env::{ClientFromEnv, ServiceFromEnv};
pub use kernel_client::{self as client, Client};
pub use kernel_errors::{self as errors, Error, Kind};
pub use kernel_inst as inst;
pub use kernel_proto as proto;
pub use kernel_server::{self as server, Endpoint, Handler, Request, Service};
pub use kernel_transport as transport;
pub use signal::shutdown_signal;

/// The names most services need: `use kernel::prelude::*;`.
pub mod prelude {
    pub use crate::{
        Client, ClientFromEnv, Endpoint, Error, Kind, Request, Service, ServiceFromEnv,
        shutdown_signal,
    };
}
