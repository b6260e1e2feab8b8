//! [`Locks`]: the lock backends `[sync]` configures.

use kernel_errors::Error;
use kernel_sync::SyncConfig;

use crate::Config;

/// The lock backends the configuration names: ZooKeeper region locks and leaders when
/// `sync.zookeeper_hosts` (`KERNEL_ZK_HOSTS`) is set, the Cassandra global lock when
/// `sync.cassandra_hosts` (`KERNEL_CASSANDRA_HOSTS`) is set, each under `namespace` (usually the
/// service's name). Unset hosts leave the backend out: use `kernel::sync::MemoryLockBackend`
/// for one process.
///
/// ```no_run
/// # async fn example() -> Result<(), kernel::Error> {
/// let locks = kernel::Locks::from_env("com.example.scheduler").await?;
/// if let Some(zookeeper) = &locks.region {
///     use kernel::sync::LockBackendExt as _;
///     let guard = zookeeper.lock("nightly-report").acquire().await?;
///     // … the work only one instance may do …
///     guard.unlock().await?;
/// }
/// # Ok(()) }
/// # let _ = example;
/// ```
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct Locks {
    /// Region locks and leader election on ZooKeeper, if configured.
    #[cfg(feature = "zookeeper")]
    pub region: Option<kernel_sync::ZkLockBackend>,
    /// The global lock on Cassandra, if configured.
    #[cfg(feature = "cassandra")]
    pub global: Option<kernel_sync::CassandraGlobalLock>,
}

impl Locks {
    /// The backends [`Config::load`]'s `[sync]` section names.
    ///
    /// # Errors
    /// As for [`Config::load`] and [`from_config`](Self::from_config).
    pub async fn from_env(namespace: &str) -> Result<Locks, Error> {
        Self::from_config(&Config::load()?.sync, namespace).await
    }

    /// The backends `config` names, connected.
    ///
    /// # Errors
    /// `kernel.config.invalid` for a namespace that is not valid, or hosts set for a backend
    /// whose feature (`zookeeper`, `cassandra`) is off; the backend's error if it cannot
    /// connect.
    pub async fn from_config(config: &SyncConfig, namespace: &str) -> Result<Locks, Error> {
        let namespace = kernel_sync::Namespace::new(namespace)?;
        let _ = &namespace;
        #[cfg(feature = "zookeeper")]
        let region = match &config.zookeeper_hosts {
            Some(hosts) => Some(
                kernel_sync::ZkLockBackend::builder(hosts.clone(), namespace.clone())
                    .session_timeout(std::time::Duration::from_millis(
                        config.zookeeper_session_timeout_ms,
                    ))
                    .connect()
                    .await?,
            ),
            None => None,
        };
        #[cfg(not(feature = "zookeeper"))]
        if config.zookeeper_hosts.is_some() {
            return Err(off("sync.zookeeper_hosts", "zookeeper"));
        }
        #[cfg(feature = "cassandra")]
        let global = match &config.cassandra_hosts {
            Some(hosts) => Some(
                kernel_sync::CassandraGlobalLock::builder(hosts.clone(), namespace.clone())
                    .keyspace(config.cassandra_keyspace.clone())
                    .replication_factor(config.cassandra_replication_factor)
                    .connect()
                    .await?,
            ),
            None => None,
        };
        #[cfg(not(feature = "cassandra"))]
        if config.cassandra_hosts.is_some() {
            return Err(off("sync.cassandra_hosts", "cassandra"));
        }
        Ok(Locks {
            #[cfg(feature = "zookeeper")]
            region,
            #[cfg(feature = "cassandra")]
            global,
        })
    }
}

#[cfg(any(not(feature = "zookeeper"), not(feature = "cassandra")))]
fn off(key: &str, feature: &str) -> Error {
    Error::internal_server_error(
        crate::INVALID_CONFIG,
        format!("{key} is set but the `{feature}` feature of the kernel crate is off"),
    )
}
