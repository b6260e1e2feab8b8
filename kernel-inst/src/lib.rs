//! Metrics for services and clients: the [`Instrumenter`] seam and its implementations.
//!
//! Every kernel crate records what it does (calls, errors, latencies, lock waits) through an
//! `Arc<dyn Instrumenter>` that the user hands it. [`StatsdInstrumenter`] sends statsd lines
//! over UDP from a background thread (H2's bucket names, under the service's namespace);
//! [`MemoryInstrumenter`] keeps counts and latency percentiles in process and backs the `stats`
//! endpoint; `PrometheusInstrumenter` (feature `prometheus`) keeps a Prometheus registry for
//! a scraper, served with the liveness and readiness probes by `http::serve_probes`;
//! [`NoopInstrumenter`] records nothing. `(a, b)` records into both.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use kernel_inst::{Instrumenter, MemoryInstrumenter};
//!
//! let memory = MemoryInstrumenter::new();
//! let inst: Arc<dyn Instrumenter> = Arc::new(memory.clone());
//! inst.counter("server.error.kernel.server.capacity", 1, 1.0);
//! inst.timing("success.quote", Duration::from_millis(8), 1.0);
//!
//! let snapshot = memory.snapshot();
//! assert_eq!(snapshot.counter("server.error.kernel.server.capacity"), Some(1));
//! assert_eq!(snapshot.timing("success.quote").unwrap().p99, Duration::from_millis(8));
//! ```
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `statsd` | [`StatsdInstrumenter`] (cadence, queued UDP) | yes |
//! | `prometheus` | `PrometheusInstrumenter` (metrics-exporter-prometheus, never installed globally) and the `http` module's probe listener (`/metrics`, `/healthz`, `/readyz` on hyper) | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod config;
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub mod http;
mod instrumenter;
mod memory;
#[cfg(feature = "prometheus")]
mod prometheus;
#[cfg(feature = "statsd")]
mod statsd;

pub use config::MetricsConfig;
pub use instrumenter::{Instrumenter, NoopInstrumenter};
pub use memory::{DEFAULT_WINDOW, MemoryInstrumenter, Snapshot, TimingSummary};
#[cfg(feature = "prometheus")]
#[cfg_attr(docsrs, doc(cfg(feature = "prometheus")))]
pub use prometheus::{DEFAULT_MAX_SERIES, LATENCY_BUCKETS, MAX_BUCKET_LEN, PrometheusInstrumenter};
#[cfg(feature = "statsd")]
#[cfg_attr(docsrs, doc(cfg(feature = "statsd")))]
pub use statsd::{DEFAULT_QUEUE_CAPACITY, StatsdBuilder, StatsdError, StatsdInstrumenter};
