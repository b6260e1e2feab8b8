//! [`MetricsConfig`]: the `[metrics]` section of the kernel's configuration.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Where metrics go, as configuration: the `[metrics]` section of `kernel.toml`
/// (`KERNEL_STATSD_ADDR`, or `KERNEL_METRICS__<KEY>`, in the environment). A service always
/// keeps its own metrics in memory for its `stats` endpoint; these add sinks.
///
/// ```toml
/// [metrics]
/// statsd_addr = "127.0.0.1:8125"        # statsd over UDP; unset: none
/// prometheus_listen = "127.0.0.1:9090"  # /metrics, /healthz, /readyz (feature `prometheus`); unset: none
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// The statsd server (`host:port`).
    pub statsd_addr: Option<String>,
    /// Where to listen for Prometheus scrapes and Kubernetes probes.
    pub prometheus_listen: Option<SocketAddr>,
}
