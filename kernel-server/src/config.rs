//! [`ServerConfig`]: the `[server]` section of the kernel's configuration.

use std::path::PathBuf;
use std::time::Duration;

use kernel_errors::InvalidConfig;
use serde::{Deserialize, Serialize};

use crate::ServiceBuilder;
use crate::ops::{DEFAULT_ANNOUNCE_INTERVAL, DEFAULT_STATS_INTERVAL};
use crate::service::{DEFAULT_CAPACITY, DEFAULT_MAX_SESSION_ID, DEFAULT_SHUTDOWN_TIMEOUT};

/// How a service serves, as configuration: the `[server]` section of `kernel.toml`
/// (`KERNEL_SERVER__<KEY>` in the environment). Every key is optional; the defaults are the
/// builder's. Durations are whole milliseconds.
///
/// ```toml
/// [server]
/// capacity = 100                 # requests run at once, shared fairly between callers
/// shutdown_timeout_ms = 30000    # how long shutdown waits for requests in flight
/// max_session_id = 1024          # the longest session id accepted, in bytes
/// announce_interval_ms = 10000   # announcements on kernel.monitor.discovery
/// stats_interval_ms = 60000      # statistics on kernel.monitor.stats
/// # access_log = "/var/log/greeter-access.log"   # H2's access log; unset: none
/// ```
///
/// ```
/// use kernel_server::ServerConfig;
///
/// let config: ServerConfig = serde_json::from_str(r#"{"capacity": 0}"#)?;
/// let invalid = config.check().unwrap_err();
/// assert_eq!(invalid.to_string(), "capacity = 0: must be at least 1");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Requests an instance runs at once.
    pub capacity: u16,
    /// How long shutdown waits for requests in flight.
    pub shutdown_timeout_ms: u64,
    /// The longest session id a request may carry, in bytes.
    pub max_session_id: usize,
    /// How often the instance announces itself.
    pub announce_interval_ms: u64,
    /// How often the instance publishes its statistics.
    pub stats_interval_ms: u64,
    /// Where to append the access log; unset: no access log.
    pub access_log: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            capacity: DEFAULT_CAPACITY,
            shutdown_timeout_ms: ms(DEFAULT_SHUTDOWN_TIMEOUT),
            max_session_id: DEFAULT_MAX_SESSION_ID,
            announce_interval_ms: ms(DEFAULT_ANNOUNCE_INTERVAL),
            stats_interval_ms: ms(DEFAULT_STATS_INTERVAL),
            access_log: None,
        }
    }
}

impl ServerConfig {
    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first key out of range (relative to `[server]`) and its
    /// value.
    pub fn check(&self) -> Result<(), InvalidConfig> {
        if self.capacity == 0 {
            return Err(InvalidConfig::new("capacity", 0, "at least 1"));
        }
        for (key, value) in [
            ("announce_interval_ms", self.announce_interval_ms),
            ("stats_interval_ms", self.stats_interval_ms),
        ] {
            if value == 0 {
                return Err(InvalidConfig::new(key, value, "greater than zero"));
            }
        }
        Ok(())
    }
}

impl ServiceBuilder {
    /// Takes every setting of a [`ServerConfig`] (check it first with
    /// [`ServerConfig::check`]; [`build`](Self::build) refuses what is out of range).
    pub fn config(self, config: &ServerConfig) -> Self {
        let builder = self
            .capacity(config.capacity)
            .shutdown_timeout(Duration::from_millis(config.shutdown_timeout_ms))
            .max_session_id(config.max_session_id)
            .announce_interval(Duration::from_millis(config.announce_interval_ms))
            .stats_interval(Duration::from_millis(config.stats_interval_ms));
        match &config.access_log {
            Some(path) => builder.access_log(path.clone()),
            None => builder,
        }
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
