//! Code generation for a team's own `.proto` files, in its `build.rs`: what `tonic-build` is to
//! tonic, for the kernel.
//!
//! `kernel-build` compiles `.proto` files with [protox] (no `protoc` to install), generates the
//! messages with prost (each implementing `prost::Name`) and their protobuf JSON mapping with
//! pbjson, and for each proto `service`:
//!
//! - a **typed client**, `<Service>Client`: one method per rpc returning the kernel's `Call`,
//!   so `shop.get_item(&request).deadline(d).await` is a checked call;
//! - a **service trait**, `<Service>`: one method per rpc taking `Request<In>` and returning
//!   `Result<Out, Error>`, implemented with `async fn`;
//! - a **server**, `<Service>Server`: the trait's endpoints (`Endpoint::with_state`), with the
//!   service level and authoriser the proto declares, and `register`, which adds them and the
//!   module's `FILE_DESCRIPTOR_SET` to a `ServiceBuilder` so `jsonschema` describes them.
//!
//! # Use
//!
//! ```toml
//! [dependencies]
//! kernel = "0.1"        # the generated code reaches the kernel through the umbrella
//! prost = "0.14"        # messages
//! pbjson = "0.9"        # the JSON mapping's helpers
//! serde = "1"           # the JSON mapping
//!
//! [build-dependencies]
//! kernel-build = "0.1"
//! ```
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     kernel_build::configure().compile(&["proto/acme/shop/v1/shop.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! ```text
//! // src/lib.rs: one module per proto package, named as you like.
//! pub mod shop {
//!     kernel::include_proto!("acme.shop.v1");
//!     // or: include!(concat!(env!("OUT_DIR"), "/acme.shop.v1.rs"));
//! }
//! ```
//!
//! For `service Shop { rpc GetItem(GetItemRequest) returns (GetItemResponse); }` that gives:
//!
//! ```text
//! use kernel::prelude::*;
//! use shop::{GetItemRequest, GetItemResponse, Shop, ShopClient, ShopServer, SHOP_SERVICE_NAME};
//!
//! struct Items;
//!
//! impl Shop for Items {
//!     async fn get_item(&self, request: Request<GetItemRequest>) -> Result<GetItemResponse, Error> {
//!         Ok(GetItemResponse { name: request.message().sku.clone(), ..Default::default() })
//!     }
//! }
//!
//! let service = ShopServer::new(Items)
//!     .register(Service::builder(SHOP_SERVICE_NAME, &client))
//!     .build()?;
//! tokio::spawn(service.serve_with_shutdown(kernel::shutdown_signal()));
//!
//! let shop = ShopClient::new(&client);
//! let item = shop.get_item(&GetItemRequest { sku: "A-1".into() }).deadline(Duration::from_secs(1)).await?;
//! ```
//!
//! `kernel-build/tests/fixture` is such a crate, served and called in its tests on the
//! in-process broker and on RabbitMQ.
//!
//! # Options
//!
//! `import "kernel/options.proto";` (shipped in this crate: nothing to copy) to declare, on a
//! service, `option (kernel.service_name) = "com.acme.shop";` (default: the full proto name
//! lowercased, `acme.shop.v1.shop`) and, on an rpc:
//!
//! | option | meaning | default |
//! |---|---|---|
//! | `(kernel.mean_ms)` | the declared mean latency, ms | the kernel's, 100 |
//! | `(kernel.upper95_ms)` | the declared 95th-percentile latency, ms | the kernel's, 200 |
//! | `(kernel.authoriser)` | `"open"`, `"signed_in"`, `"admin"`, `"roles:A,B"`, `"signed_in_roles:A,B"` | `ADMIN` only |
//! | `(kernel.endpoint)` | the endpoint name | the rpc name lowercased (`GetItem` → `getitem`) |
//!
//! A value the kernel cannot serve (an unknown authoriser, an endpoint name with capitals)
//! fails the build, naming the rpc. Streaming rpcs are refused: a kernel request has one reply.
//!
//! # Generated code
//!
//! Everything is generated into one `<package>.rs` per proto package in `OUT_DIR`, which
//! `kernel::include_proto!` includes
//! (the macro lives in the umbrella, as tonic's does in `tonic`: a build dependency cannot
//! be used from the crate's code). The code names the kernel by `::kernel` (see
//! [`Builder::kernel_path`]), `prost`, `pbjson` and `serde` by their crate names, and passes
//! `missing_docs` and `missing_debug_implementations`: proto comments become docs, and messages
//! without one carry `#[allow(missing_docs)]`. Well-known types (`google.protobuf.*`) are not
//! supported yet: prost maps them to `prost-types`, which has no JSON mapping.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod builder;
mod error;
mod generator;
mod options;

pub use builder::{Builder, DEFAULT_KERNEL_PATH, configure};
pub use error::Error;

/// The contents of `kernel/options.proto`, the options generated code reads: for tools that
/// need the file itself (an editor's import path, another language's generator).
pub const OPTIONS_PROTO: &str = options::OPTIONS_PROTO;
