//! [`ZkLockBackendBuilder`]: the ZooKeeper backend's settings, validated once at `connect`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kernel_inst::{Instrumenter, NoopInstrumenter};

use super::session::{SessionConfig, Sessions};
use super::{Inner, ZkLockBackend};
use crate::{Namespace, SyncError};

/// Builds a [`ZkLockBackend`]; start with [`ZkLockBackend::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until connected"]
pub struct ZkLockBackendBuilder {
    hosts: String,
    namespace: Namespace,
    session_timeout: Duration,
    connect_timeout: Duration,
    suspension_grace: f64,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for ZkLockBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkLockBackendBuilder")
            .field("hosts", &self.hosts)
            .field("namespace", &self.namespace)
            .field("session_timeout", &self.session_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("suspension_grace", &self.suspension_grace)
            .finish_non_exhaustive()
    }
}

impl ZkLockBackendBuilder {
    /// The defaults; see [`ZkLockBackend::builder`].
    pub(super) fn new(hosts: String, namespace: Namespace) -> Self {
        ZkLockBackendBuilder {
            hosts,
            namespace,
            session_timeout: ZkLockBackend::DEFAULT_SESSION_TIMEOUT,
            connect_timeout: ZkLockBackend::DEFAULT_CONNECT_TIMEOUT,
            suspension_grace: ZkLockBackend::DEFAULT_SUSPENSION_GRACE,
            inst: Arc::new(NoopInstrumenter),
        }
    }

    /// The session timeout to ask for (default
    /// [`DEFAULT_SESSION_TIMEOUT`](ZkLockBackend::DEFAULT_SESSION_TIMEOUT)). A crashed
    /// holder's locks are freed this long after its last heartbeat.
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// How long to try to open a session (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](ZkLockBackend::DEFAULT_CONNECT_TIMEOUT)).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// After how long a suspended connection counts as loss, as a fraction of the negotiated
    /// session timeout (default [`DEFAULT_SUSPENSION_GRACE`](ZkLockBackend::DEFAULT_SUSPENSION_GRACE)).
    /// `0.0` reports loss as soon as the connection drops (Curator's default policy);
    /// `f64::INFINITY` only on session expiry, which the client learns at about 1.4 × the
    /// session timeout: after the server may have let someone else in. The grace is computed
    /// from the timeout the server granted for the first session.
    pub fn suspension_grace(mut self, fraction: f64) -> Self {
        self.suspension_grace = fraction;
        self
    }

    /// Where the `sync.regionlock.*` and `sync.regionleader.*` metrics go (default: nowhere).
    pub fn instrumenter(mut self, inst: Arc<dyn Instrumenter>) -> Self {
        self.inst = inst;
        self
    }

    /// Validates the settings and opens the first session.
    ///
    /// # Errors
    /// [`SyncError::InvalidConfig`] naming a bad setting; [`SyncError::Backend`] if no
    /// session could be opened within the connect timeout.
    pub async fn connect(self) -> Result<ZkLockBackend, SyncError> {
        if self.session_timeout.is_zero() {
            return Err(SyncError::InvalidConfig {
                field: "session_timeout",
                reason: "must be more than zero".into(),
            });
        }
        if self.connect_timeout.is_zero() {
            return Err(SyncError::InvalidConfig {
                field: "connect_timeout",
                reason: "must be more than zero".into(),
            });
        }
        if self.suspension_grace.is_nan() || self.suspension_grace < 0.0 {
            return Err(SyncError::InvalidConfig {
                field: "suspension_grace",
                reason: format!(
                    "{} is not a fraction of zero or more",
                    self.suspension_grace
                ),
            });
        }
        let sessions = Sessions::new(SessionConfig {
            hosts: self.hosts,
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
            suspension_grace: self.suspension_grace,
        });
        sessions.get().await?;
        Ok(ZkLockBackend {
            inner: Arc::new(Inner {
                sessions,
                namespace: self.namespace,
                paths: Arc::default(),
                inst: self.inst,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bad_settings_are_refused_before_connecting() {
        let ns = Namespace::new("com.example").unwrap();
        let builder = ZkLockBackend::builder("127.0.0.1:1", ns);
        for (bad, field) in [
            (
                builder.clone().session_timeout(Duration::ZERO),
                "session_timeout",
            ),
            (
                builder.clone().connect_timeout(Duration::ZERO),
                "connect_timeout",
            ),
            (builder.clone().suspension_grace(-0.5), "suspension_grace"),
            (
                builder.clone().suspension_grace(f64::NAN),
                "suspension_grace",
            ),
        ] {
            match bad.connect().await {
                Err(SyncError::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }
}
