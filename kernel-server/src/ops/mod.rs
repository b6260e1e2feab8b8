//! The operational surface every service has: default endpoints (`health`, `stats`,
//! `loadedconfig`, `jsonschema`), health checks, and what an instance publishes on the
//! monitoring topics (announcements, health samples, statistics).
//!
//! [`Operations`] is the state they share: who the instance is, its checks, its in-memory
//! metrics and its loaded configuration. The default endpoints hold it as their state; the
//! background tasks (`monitor.rs`) run while the service serves.

mod checks;
mod endpoints;
pub(crate) mod health;
pub(crate) mod monitor;
mod stats;
mod topics;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use kernel_client::Client;
use kernel_inst::MemoryInstrumenter;
use kernel_proto::platform::{self as proto, EndpointInfo, HealthResponse, HealthStatus};

pub(crate) use checks::{BUILTIN_CHECKS, builtin};
pub use endpoints::DEFAULT_ENDPOINTS;
pub(crate) use endpoints::defaults;
use health::Slot;
pub(crate) use stats::ms;
pub use topics::{PlatformTopic, platform_topic, platform_topics};

/// The topic announcements are published on (`h2o.topic`), where a
/// [`Registry`](kernel_client::Registry) listens.
pub use kernel_client::DISCOVERY_TOPIC;
/// The topic health-check samples are published on.
pub const HEALTHCHECK_TOPIC: &str = "kernel.monitor.healthcheck";
/// The topic periodic statistics are published on.
pub const STATS_TOPIC: &str = "kernel.monitor.stats";

/// How often an instance announces itself unless told otherwise.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(10);
/// How often an instance publishes its statistics unless told otherwise (H2's 60 s).
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);

/// What the default endpoints and the monitoring tasks of one instance share.
#[derive(Debug)]
pub(crate) struct Operations {
    pub(crate) service: String,
    pub(crate) version: String,
    pub(crate) description: String,
    pub(crate) instance_id: String,
    pub(crate) hostname: String,
    pub(crate) started: Instant,
    pub(crate) started_at: SystemTime,
    pub(crate) checks: Vec<Slot>,
    /// What the service records, kept in memory for `stats`.
    pub(crate) memory: MemoryInstrumenter,
    /// The effective configuration, secrets redacted, for `loadedconfig`.
    pub(crate) config: serde_json::Value,
    /// Every endpoint served, the default ones included; set once the service is built.
    pub(crate) endpoints: OnceLock<Arc<[EndpointInfo]>>,
    /// The descriptors of the platform's messages and of those the service added.
    pub(crate) descriptors: prost_reflect::DescriptorPool,
    pub(crate) announce_interval: Duration,
    pub(crate) stats_interval: Duration,
    /// Calls and publishes as the service.
    pub(crate) client: Client,
    /// Whether the service consumes its queues (between start and shutdown).
    pub(crate) serving: tokio::sync::watch::Sender<bool>,
}

impl Operations {
    /// What `health` answers for these samples: healthy when none is unhealthy (a check not
    /// run yet does not count).
    pub(crate) fn health(&self, checks: Vec<proto::HealthCheck>) -> HealthResponse {
        HealthResponse {
            service_name: self.service.clone(),
            instance_id: self.instance_id.clone(),
            healthy: checks
                .iter()
                .all(|check| check.status() != HealthStatus::Unhealthy),
            checks,
        }
    }

    /// The latest sample of every check, without running them.
    pub(crate) fn latest_health(&self) -> HealthResponse {
        self.health(self.checks.iter().map(Slot::latest).collect())
    }

    /// Ready for traffic: serving, and no health check unhealthy.
    pub(crate) fn ready(&self) -> bool {
        *self.serving.borrow() && self.latest_health().healthy
    }
}

impl Operations {
    pub(crate) fn endpoints(&self) -> &[EndpointInfo] {
        self.endpoints.get().map_or(&[], |endpoints| endpoints)
    }
}

/// This host's name: the kernel's view (`/proc/sys/kernel/hostname`), else `HOSTNAME`, else
/// `unknown`.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
