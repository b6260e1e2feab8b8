//! [`ZkLockBackendBuilder`]: the ZooKeeper backend's settings, validated once at `connect`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kernel_inst::{Instrumenter, NoopInstrumenter};

use super::acl::{self, DigestCredentials, NodeAcls};
use super::session::{SessionConfig, Sessions};
use super::{Inner, ZkLockBackend};
use crate::{Namespace, Secret, SyncError};

/// Builds a [`ZkLockBackend`]; start with [`ZkLockBackend::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until connected"]
pub struct ZkLockBackendBuilder {
    hosts: String,
    namespace: Namespace,
    session_timeout: Duration,
    connect_timeout: Duration,
    suspension_grace: f64,
    /// Checked at `connect`.
    digest: Option<(String, Secret)>,
    peer_digests: Vec<String>,
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
            .field("digest_user", &self.digest.as_ref().map(|(user, _)| user))
            .field("peer_digests", &self.peer_digests.len())
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
            digest: None,
            peer_digests: Vec::new(),
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

    /// Authenticates the session with ZooKeeper's `digest` scheme as `user` and protects the
    /// nodes this backend creates (default: no authentication, open ACLs, as H2).
    ///
    /// Lock and election paths, and the namespace nodes above them, are created with the ACL
    /// `auth::cdrwa, world:anyone:r` (the server records the creator's identity,
    /// `digest:<user>:<base64 sha1 of user:password>`): only this identity, and the
    /// [`peer_digest`](Self::peer_digest)s, may create and delete lock and leader nodes there,
    /// so nobody else can delete a holder's node or join the queue, and anyone may observe.
    /// Lock and leader nodes get `auth::cdrwa, world:anyone:r` too. The shared roots
    /// `/sync` and `/sync/regionleader` get `world:anyone:cr`: every service may create its
    /// own election namespace there, nobody may delete anything. Nodes that already exist keep
    /// their ACL. Use one user per service, and see [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md) ("ZooKeeper access
    /// control") for what this does not protect against.
    ///
    /// The password goes to ZooKeeper in clear unless the connection is TLS.
    ///
    /// # Errors
    /// [`connect`](Self::connect) fails with [`SyncError::InvalidConfig`] (field
    /// `digest_credentials`) if `user` is empty or contains `:`, or `password` is empty.
    pub fn digest_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        self.digest = Some((user.into(), password.into()));
        self
    }

    /// Lets another digest identity take and release the locks and leaderships whose paths
    /// this backend creates: `id` is `user:<base64 of the SHA-1 of user:password>`, as
    /// ZooKeeper's `getAcl` shows it (ZooKeeper's `DigestAuthenticationProvider` prints it for
    /// a `user:password`). It gets create, delete and read on those paths. Needed when services
    /// with different credentials contend for the same lock or election; each lists the
    /// others, since whoever creates a path first sets its ACL. A peer can delete any node in
    /// those paths, holders included.
    ///
    /// # Errors
    /// [`connect`](Self::connect) fails with [`SyncError::InvalidConfig`] (field
    /// `peer_digest`) if `id` is not of that form, or (field `digest_credentials`) if no
    /// [`digest_credentials`](Self::digest_credentials) are set.
    pub fn peer_digest(mut self, id: impl Into<String>) -> Self {
        self.peer_digests.push(id.into());
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
        let digest = self
            .digest
            .map(|(user, password)| DigestCredentials::checked(user, password))
            .transpose()?;
        for peer in &self.peer_digests {
            acl::check_peer_digest(peer)?;
        }
        let acls = match &digest {
            Some(_) => NodeAcls::protected(&self.peer_digests),
            None if self.peer_digests.is_empty() => NodeAcls::open(),
            None => {
                return Err(SyncError::InvalidConfig {
                    field: "digest_credentials",
                    reason: "peer digests need digest credentials of our own".into(),
                });
            }
        };
        let sessions = Sessions::new(SessionConfig {
            hosts: self.hosts,
            session_timeout: self.session_timeout,
            connect_timeout: self.connect_timeout,
            suspension_grace: self.suspension_grace,
            digest,
        });
        sessions.get().await?;
        Ok(ZkLockBackend {
            inner: Arc::new(Inner {
                sessions,
                namespace: self.namespace,
                paths: Arc::default(),
                acls: Arc::new(acls),
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
            (
                builder.clone().digest_credentials("", "pw"),
                "digest_credentials",
            ),
            (
                builder.clone().digest_credentials("svc:x", "pw"),
                "digest_credentials",
            ),
            (
                builder.clone().digest_credentials("svc", ""),
                "digest_credentials",
            ),
            (
                builder
                    .clone()
                    .peer_digest("svc-b:9430aq7oqpM2XdVlPoPLAutaGXw="),
                "digest_credentials",
            ),
            (
                builder
                    .clone()
                    .digest_credentials("svc", "pw")
                    .peer_digest("svc-b:password"),
                "peer_digest",
            ),
        ] {
            match bad.connect().await {
                Err(SyncError::InvalidConfig { field: got, .. }) => assert_eq!(got, field),
                other => panic!("{field}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn the_builder_never_prints_the_password() {
        let ns = Namespace::new("com.example").unwrap();
        let builder =
            ZkLockBackend::builder("127.0.0.1:1", ns).digest_credentials("svc", "hunter2");
        let printed = format!("{builder:?}");
        assert!(printed.contains("svc"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
