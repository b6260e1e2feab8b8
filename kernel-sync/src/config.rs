//! [`SyncConfig`]: the `[sync]` section of the kernel's configuration.

use kernel_errors::InvalidConfig;
use serde::{Deserialize, Serialize};

/// Where locks and leaders live, as configuration: the `[sync]` section of `kernel.toml`
/// (`KERNEL_ZK_HOSTS`, `KERNEL_CASSANDRA_HOSTS` and `KERNEL_CASSANDRA_REPLICATION`, or
/// `KERNEL_SYNC__<KEY>`, in the environment). Unset hosts mean the backend is not used.
///
/// In production both are clusters: list every server of the ZooKeeper ensemble (the client
/// moves its session to another server when one dies) and several Cassandra contact points,
/// with a replication factor of 3 or more, so that the global lock's QUORUM and SERIAL
/// operations go on with one replica down (docs/sync.md, "On a cluster").
///
/// ```toml
/// [sync]
/// zookeeper_hosts = "10.0.0.1:2181,10.0.0.2:2181,10.0.0.3:2181"
/// zookeeper_session_timeout_ms = 6000
/// cassandra_hosts = "10.0.1.1:9042,10.0.1.2:9042"
/// cassandra_keyspace = "sync"
/// cassandra_replication_factor = 3
/// ```
///
/// ```
/// use kernel_sync::SyncConfig;
///
/// let config: SyncConfig = serde_json::from_str(r#"{"zookeeper_hosts": "127.0.0.1"}"#)?;
/// assert_eq!(
///     config.check().unwrap_err().to_string(),
///     "zookeeper_hosts = 127.0.0.1: must be comma-separated host:port pairs"
/// );
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct SyncConfig {
    /// The ZooKeeper ensemble (`host:port,host:port`); unset: no region locks or leaders.
    pub zookeeper_hosts: Option<String>,
    /// The ZooKeeper session timeout to ask for.
    pub zookeeper_session_timeout_ms: u64,
    /// Cassandra contact points (`host:port,host:port`); unset: no global locks.
    pub cassandra_hosts: Option<String>,
    /// The keyspace of the global lock table.
    pub cassandra_keyspace: String,
    /// The keyspace's replication factor, if it has to be created (default 3:
    /// `KERNEL_CASSANDRA_REPLICATION`). A quorum of it must be up for the global lock.
    pub cassandra_replication_factor: u32,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            zookeeper_hosts: None,
            zookeeper_session_timeout_ms: 6_000,
            cassandra_hosts: None,
            cassandra_keyspace: "sync".to_owned(),
            cassandra_replication_factor: 3,
        }
    }
}

impl SyncConfig {
    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first key out of range (relative to `[sync]`) and its
    /// value.
    pub fn check(&self) -> Result<(), InvalidConfig> {
        for (key, hosts) in [
            ("zookeeper_hosts", &self.zookeeper_hosts),
            ("cassandra_hosts", &self.cassandra_hosts),
        ] {
            if let Some(hosts) = hosts
                && !hosts.split(',').all(is_host_port)
            {
                return Err(InvalidConfig::new(
                    key,
                    hosts,
                    "comma-separated host:port pairs",
                ));
            }
        }
        if self.zookeeper_session_timeout_ms == 0 {
            return Err(InvalidConfig::new(
                "zookeeper_session_timeout_ms",
                0,
                "greater than zero",
            ));
        }
        if self.cassandra_replication_factor == 0 {
            return Err(InvalidConfig::new(
                "cassandra_replication_factor",
                0,
                "at least 1",
            ));
        }
        let keyspace = &self.cassandra_keyspace;
        let valid_keyspace = !keyspace.is_empty()
            && keyspace.len() <= 48
            && keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid_keyspace {
            return Err(InvalidConfig::new(
                "cassandra_keyspace",
                keyspace,
                "1 to 48 letters, digits or underscores",
            ));
        }
        Ok(())
    }
}

fn is_host_port(pair: &str) -> bool {
    pair.trim()
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}
