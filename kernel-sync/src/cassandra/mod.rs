//! [`CassandraGlobalLock`]: H2's global lock, rebuilt on lightweight transactions.

mod hold;
mod statements;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kernel_inst::{Instrumenter, NoopInstrumenter};
use rand::Rng;
use scylla::client::session_builder::SessionBuilder;
use tokio::time::Instant;
use uuid::Uuid;

use self::hold::CassandraHold;
use self::statements::{LockRow, Statements};
use crate::metrics::GLOBAL_LOCK;
use crate::{FencingToken, LockBackend, LockGuard, LockSpec, Namespace, SyncError};

/// How long a timed-out or failed acquire waits for its claim's removal before leaving it
/// to a background task.
const FOREGROUND_WITHDRAW: Duration = Duration::from_secs(2);

/// A lock across regions (data centres) on Cassandra, linearizable through lightweight
/// transactions, with a fencing counter.
///
/// H2's global lock inserted a TimeUUID column and let the lowest one win, so the holder was
/// whoever's clock was furthest behind; it also only logged a failed refresh. This one is a
/// compare-and-set on one row per lock, `<namespace>/<id>`:
///
/// * **acquire**: a SERIAL read; if nobody holds the lock, one lightweight transaction sets
///   the holder (with `USING TTL` = `hold_for` rounded up to whole seconds, plus one second
///   because Cassandra truncates the write time to the second, plus one second of margin
///   against the coordinators' clock offset) and advances the
///   fence, on condition that nobody holds it and the fence is still what was read. The
///   advanced fence is the [`FencingToken`]: it comes from the compare-and-set, never from a
///   clock. While someone else holds it, the read is repeated every 20–40 ms (as H2 did)
///   until `wait_for` has passed: then [`SyncError::Contended`].
/// * **hold**: the lease is refreshed every 0.75 × `hold_for` (a conditional update that
///   renews the TTL only if we still hold it). A refresh that finds someone else holding,
///   or that cannot be confirmed before the lease (counted from when the claim, or the first
///   refresh since the last confirmed one, was *sent*) runs out, fires
///   [`LossReason::RefreshFailed`](crate::LossReason::RefreshFailed). A crashed holder stops
///   refreshing and its claim expires within `hold_for` plus up to three seconds (the TTL's
///   rounding and margin).
/// * **release**: a conditional delete of our claim; the next contender's read finds the
///   lock free at once.
///
/// So `hold_for` is a lease, not a limit on how long a live holder may hold: a guard keeps
/// the lock until it is unlocked or dropped (as H2's refresher did). Default
/// [`DEFAULT_HOLD_FOR`](CassandraGlobalLock::DEFAULT_HOLD_FOR), minimum
/// [`MIN_HOLD_FOR`](CassandraGlobalLock::MIN_HOLD_FOR), both as H2.
///
/// Writes use serial consistency SERIAL (Paxos across all data centres) and commit
/// consistency QUORUM; reads use SERIAL. Each needs a majority of the replicas: with the
/// default replication factor of 3, the lock keeps working with one replica down, and with two
/// down acquires fail with [`SyncError::Backend`] and holders are told
/// [`LossReason::RefreshFailed`](crate::LossReason::RefreshFailed) (measured on a three-node
/// ring: `docs/sync.md`, "On a cluster"). Give several contact points in `hosts`, so that a
/// dead one does not stop a start, and keep `hold_for` at least four times the
/// [`request_timeout`](CassandraGlobalLockBuilder::request_timeout): until the ring marks a
/// dead replica down, one statement may stall for the whole timeout, and a refresh has the
/// last quarter of the lease. The keyspace (default
/// [`DEFAULT_KEYSPACE`](CassandraGlobalLock::DEFAULT_KEYSPACE)) and table are created on
/// first use if missing, with `SimpleStrategy` and the builder's replication factor; create
/// the keyspace yourself beforehand for `NetworkTopologyStrategy`. Schema:
///
/// ```text
/// CREATE TABLE <keyspace>.global_locks (
///   name   text PRIMARY KEY,  -- '<namespace>/<lock id>'
///   holder uuid,              -- the holder's claim id, written with a TTL of ceil(hold_for) + 2 s; null when free
///   fence  bigint             -- the last fencing token granted; never expires
/// );
/// ```
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use std::time::Duration;
/// use kernel_sync::{CassandraGlobalLock, LockBackendExt, Namespace};
///
/// let global = CassandraGlobalLock::builder("127.0.0.1:9042", Namespace::new("com.example.billing")?)
///     .replication_factor(3)
///     .connect()
///     .await?;
/// let guard = global.lock("month-end").hold_for(Duration::from_secs(10)).acquire().await?;
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct CassandraGlobalLock {
    inner: Arc<Inner>,
}

struct Inner {
    statements: Arc<Statements>,
    namespace: Namespace,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for CassandraGlobalLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraGlobalLock")
            .field("namespace", &self.inner.namespace)
            .finish_non_exhaustive()
    }
}

/// Builds a [`CassandraGlobalLock`]; start with [`CassandraGlobalLock::builder`].
#[derive(Clone)]
#[must_use = "a builder does nothing until connected"]
pub struct CassandraGlobalLockBuilder {
    hosts: String,
    namespace: Namespace,
    keyspace: String,
    replication_factor: u32,
    request_timeout: Duration,
    connect_timeout: Duration,
    session: Option<SessionBuilder>,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for CassandraGlobalLockBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraGlobalLockBuilder")
            .field("hosts", &self.hosts)
            .field("namespace", &self.namespace)
            .field("keyspace", &self.keyspace)
            .field("replication_factor", &self.replication_factor)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl CassandraGlobalLock {
    /// Default `hold_for`, as H2's `GlobalLock`: 5 s.
    pub const DEFAULT_HOLD_FOR: Duration = Duration::from_secs(5);
    /// Minimum `hold_for`, as H2's `GlobalTimedLock`: 2 s.
    pub const MIN_HOLD_FOR: Duration = Duration::from_secs(2);
    /// Keyspace unless set: `sync`, H2's.
    pub const DEFAULT_KEYSPACE: &str = "sync";
    /// Replication factor of a keyspace created on first use, unless set: 3.
    pub const DEFAULT_REPLICATION_FACTOR: u32 = 3;
    /// Timeout of each statement, unless set: 5 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
    /// How long to try to connect, unless set: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts a global lock backend for `namespace` (the service name) on the cluster
    /// reachable at `hosts` (`host:port[,host:port…]`).
    pub fn builder(hosts: impl Into<String>, namespace: Namespace) -> CassandraGlobalLockBuilder {
        CassandraGlobalLockBuilder {
            hosts: hosts.into(),
            namespace,
            keyspace: Self::DEFAULT_KEYSPACE.to_owned(),
            replication_factor: Self::DEFAULT_REPLICATION_FACTOR,
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            session: None,
            inst: Arc::new(NoopInstrumenter),
        }
    }

    /// The namespace locks are taken in.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// One round trip to the cluster, for a health check: `Ok` if a node answered.
    ///
    /// # Errors
    /// [`SyncError::Backend`] if none did.
    pub async fn ping(&self) -> Result<(), SyncError> {
        self.inner.statements.ping().await
    }

    /// The row key of lock `id`: `<namespace>/<id>`.
    fn row(&self, spec: &LockSpec) -> String {
        format!("{}/{}", self.inner.namespace, spec.id)
    }
}

impl CassandraGlobalLockBuilder {
    /// The keyspace of the lock table (default
    /// [`DEFAULT_KEYSPACE`](CassandraGlobalLock::DEFAULT_KEYSPACE)).
    pub fn keyspace(mut self, keyspace: impl Into<String>) -> Self {
        self.keyspace = keyspace.into();
        self
    }

    /// The replication factor of the keyspace if it has to be created (default
    /// [`DEFAULT_REPLICATION_FACTOR`](CassandraGlobalLock::DEFAULT_REPLICATION_FACTOR)).
    /// QUORUM writes need a majority of these replicas.
    pub fn replication_factor(mut self, replication_factor: u32) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// Timeout of each statement (default
    /// [`DEFAULT_REQUEST_TIMEOUT`](CassandraGlobalLock::DEFAULT_REQUEST_TIMEOUT)); a refresh
    /// is also cut short when the lease runs out.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// How long to try to connect (default
    /// [`DEFAULT_CONNECT_TIMEOUT`](CassandraGlobalLock::DEFAULT_CONNECT_TIMEOUT)).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Starts from a driver session builder of your own, for what this builder does not set:
    /// credentials, TLS, address translation, load balancing. The hosts given here are added
    /// to its known nodes, and this builder's connect timeout overrides its own. The driver is
    /// re-exported as [`kernel_sync::scylla`](crate::scylla), so the versions match.
    ///
    /// Credentials (Cassandra's `PasswordAuthenticator`) with
    /// [`SessionBuilder::user`](crate::scylla::client::session_builder::SessionBuilder::user),
    /// or any SASL exchange with `authenticator_provider`; keep the password in a
    /// [`Secret`](crate::Secret) until it is handed over:
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), kernel_sync::SyncError> {
    /// use kernel_sync::{CassandraGlobalLock, Namespace, Secret};
    /// use kernel_sync::scylla::client::session_builder::SessionBuilder;
    ///
    /// let password = Secret::new(std::env::var("BILLING_CASSANDRA_PASSWORD").unwrap_or_default());
    /// let driver = SessionBuilder::new().user("billing", password.expose());
    /// let locks = CassandraGlobalLock::builder("10.0.0.5:9042", Namespace::new("com.example.billing")?)
    ///     .session_builder(driver)
    ///     .connect()
    ///     .await?;
    /// # drop(locks); Ok(()) }
    /// ```
    ///
    /// TLS is the driver's `tls_context(..)`, which needs one of the driver's TLS features:
    /// enable `scylla`'s `rustls-023` (or `openssl-010`) in your own `Cargo.toml`, at the
    /// version `kernel-sync` uses, and pass an `Arc<rustls::ClientConfig>`. `kernel-sync` does
    /// not turn it on itself, since `rustls-023` builds aws-lc-rs (C and assembly).
    /// [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md) ("Cassandra credentials and TLS") has the full example.
    pub fn session_builder(mut self, builder: SessionBuilder) -> Self {
        self.session = Some(builder);
        self
    }

    /// Where the `sync.globaltimedlock.*` metrics go (default: nowhere).
    pub fn instrumenter(mut self, inst: Arc<dyn Instrumenter>) -> Self {
        self.inst = inst;
        self
    }

    /// Validates the settings, connects, creates the keyspace and table if missing, and
    /// prepares the statements.
    ///
    /// # Errors
    /// [`SyncError::InvalidConfig`] naming a bad setting; [`SyncError::Backend`] if the
    /// cluster cannot be reached or refuses the schema.
    pub async fn connect(self) -> Result<CassandraGlobalLock, SyncError> {
        let keyspace_ok = self.keyspace.len() <= 48
            && self.keyspace.starts_with(|c: char| c.is_ascii_alphabetic())
            && self
                .keyspace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !keyspace_ok {
            return Err(SyncError::InvalidConfig {
                field: "keyspace",
                reason: format!(
                    "{:?} is not a keyspace name (a letter, then up to 47 letters, digits or '_')",
                    self.keyspace
                ),
            });
        }
        if self.replication_factor == 0 {
            return Err(SyncError::InvalidConfig {
                field: "replication_factor",
                reason: "must be at least 1".into(),
            });
        }
        for (field, timeout) in [
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
        ] {
            if timeout.is_zero() {
                return Err(SyncError::InvalidConfig {
                    field,
                    reason: "must be more than zero".into(),
                });
            }
        }
        let builder = self
            .session
            .unwrap_or_default()
            .known_nodes(self.hosts.split(',').map(str::trim))
            .connection_timeout(self.connect_timeout);
        let session = match tokio::time::timeout(self.connect_timeout * 3, builder.build()).await {
            Ok(Ok(session)) => session,
            Ok(Err(error)) => return Err(SyncError::backend("cassandra", "connect", error)),
            Err(_) => {
                return Err(SyncError::backend_message(
                    "cassandra",
                    "connect",
                    format!("no session within {:?}", self.connect_timeout * 3),
                ));
            }
        };
        let statements = Statements::prepare(
            session,
            &self.keyspace,
            self.replication_factor,
            self.request_timeout,
        )
        .await?;
        Ok(CassandraGlobalLock {
            inner: Arc::new(Inner {
                statements: Arc::new(statements),
                namespace: self.namespace,
                inst: self.inst,
            }),
        })
    }
}

/// The TTL written for a lease of `hold_for`: whole seconds, rounded up, plus two.
///
/// Cassandra computes a cell's expiry as the current time *truncated to the second* plus
/// the TTL, so a TTL of `n` lasts between `n - 1` and `n` seconds. One extra second makes
/// the server's lease at least `hold_for`, which the holder's own count (from when it sent
/// the claim or refresh) relies on: without it a refresh at 0.75 × `hold_for` can come
/// after the claim has already expired, and a second holder get in while the first still
/// believes it holds. The second extra second is the margin between the holder's end of the
/// lease and the earliest moment a contender's coordinator, whose clock may differ from the
/// one that stamped the TTL, can see the claim gone: at least one second.
fn ttl_secs(hold_for: Duration) -> u64 {
    hold_for.as_secs() + u64::from(hold_for.subsec_nanos() > 0) + 2
}

/// A pause between reads of a held lock: 20 ms plus up to 20 ms of jitter, as H2's.
fn poll_pause() -> Duration {
    Duration::from_millis(20 + rand::rng().random_range(0..20))
}

/// Removes a claim that may have been applied, if the acquire that sent it is abandoned
/// (also when its future is dropped).
struct Claim {
    statements: Arc<Statements>,
    name: String,
    me: Uuid,
    sent: bool,
}

impl Claim {
    fn release(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (statements, name, me) = (self.statements.clone(), self.name.clone(), self.me);
        async move {
            if let Err(error) = statements.release(&name, me).await {
                tracing::warn!(lock = %name, %error, "could not remove an abandoned claim; it expires with its TTL");
            }
        }
    }

    async fn withdraw(mut self) {
        if !std::mem::take(&mut self.sent) {
            return;
        }
        let release = tokio::spawn(self.release());
        if tokio::time::timeout(FOREGROUND_WITHDRAW, release)
            .await
            .is_err()
        {
            tracing::warn!(lock = %self.name, "claim not removed yet; retrying in the background");
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.sent
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(self.release());
        }
    }
}

/// How an acquire ended.
enum Attempt {
    Won { fence: i64, granted_at: Instant },
    Contended,
    Failed(SyncError),
}

impl CassandraGlobalLock {
    async fn attempt(&self, claim: &mut Claim, ttl: i32, deadline: Instant) -> Attempt {
        let statements = &self.inner.statements;
        let mut last_error = None;
        // When we first sent a claim for each fence value read (a claim sets the fence to
        // the value read plus one). A claim whose answer was lost may apply later, so a
        // read-back that shows us holding at fence `f` was granted by the earliest claim sent
        // for `f - 1`: its TTL started no earlier than that.
        let mut claims_sent: HashMap<i64, Instant> = HashMap::new();
        loop {
            let row = match statements.read(&claim.name).await {
                Ok(Some(row)) => row,
                Ok(None) => match statements.init(&claim.name).await {
                    Ok(()) => continue,
                    Err(error) => {
                        last_error = Some(error);
                        LockRow {
                            holder: None,
                            fence: -1,
                        }
                    }
                },
                Err(error) => {
                    last_error = Some(error);
                    LockRow {
                        holder: None,
                        fence: -1,
                    }
                }
            };
            match row.holder {
                // A claim whose answer we never got was applied after all.
                Some(holder) if holder == claim.me => {
                    let granted_at = claims_sent
                        .get(&(row.fence - 1))
                        .or_else(|| claims_sent.values().min())
                        .copied();
                    if let Some(granted_at) = granted_at {
                        return Attempt::Won {
                            fence: row.fence,
                            granted_at,
                        };
                    }
                }
                Some(_) => {
                    if Instant::now() >= deadline {
                        return Attempt::Contended;
                    }
                    let pause =
                        poll_pause().min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                    continue;
                }
                None if row.fence >= 0 => {
                    let sent_at = Instant::now();
                    claim.sent = true;
                    claims_sent.entry(row.fence).or_insert(sent_at);
                    match statements
                        .claim(&claim.name, claim.me, ttl, row.fence)
                        .await
                    {
                        // This claim applied (an earlier one for the same fence would have
                        // made it fail), so its TTL started after `sent_at`.
                        Ok(true) => {
                            return Attempt::Won {
                                fence: row.fence + 1,
                                granted_at: sent_at,
                            };
                        }
                        Ok(false) => continue,
                        Err(error) => last_error = Some(error),
                    }
                }
                None => {}
            }
            // An engine failure: retry until the deadline.
            if Instant::now() >= deadline {
                return Attempt::Failed(last_error.unwrap_or_else(|| {
                    SyncError::backend_message("cassandra", "acquire the lock", "timed out")
                }));
            }
            tokio::time::sleep(poll_pause()).await;
        }
    }
}

impl LockBackend for CassandraGlobalLock {
    async fn acquire(&self, spec: LockSpec) -> Result<LockGuard, SyncError> {
        let hold_for = spec.checked_hold_for(Self::DEFAULT_HOLD_FOR, Self::MIN_HOLD_FOR)?;
        // Within MAX_HOLD_FOR, far below Cassandra's 20-year TTL limit.
        let ttl = i32::try_from(ttl_secs(hold_for)).unwrap_or(i32::MAX);
        let started = Instant::now();
        let mut claim = Claim {
            statements: self.inner.statements.clone(),
            name: self.row(&spec),
            me: Uuid::new_v4(),
            sent: false,
        };
        let attempt = self
            .attempt(&mut claim, ttl, crate::after(started, spec.wait_for))
            .await;
        GLOBAL_LOCK.record_acquire(
            &*self.inner.inst,
            started.elapsed(),
            matches!(attempt, Attempt::Won { .. }),
        );
        let (fence, granted_at) = match attempt {
            Attempt::Won { fence, granted_at } => (fence, granted_at),
            Attempt::Contended => {
                claim.withdraw().await;
                return Err(SyncError::Contended {
                    id: spec.id,
                    waited: started.elapsed(),
                });
            }
            Attempt::Failed(error) => {
                claim.withdraw().await;
                return Err(error);
            }
        };
        claim.sent = false;
        let token = FencingToken::new(u64::try_from(fence).unwrap_or(0));
        let (guard, control) = LockGuard::new(spec.id, token);
        let hold = CassandraHold {
            statements: claim.statements.clone(),
            name: claim.name.clone(),
            me: claim.me,
            hold_for,
            ttl,
            granted_at,
            inst: self.inner.inst.clone(),
        };
        tokio::spawn(hold.run(control));
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_outlasts_the_hold_time_by_a_second_despite_truncation() {
        assert_eq!(ttl_secs(Duration::from_secs(2)), 4);
        assert_eq!(ttl_secs(Duration::from_millis(2500)), 5);
        for hold_for in [2_000, 2_001, 5_000, 9_999] {
            let hold_for = Duration::from_millis(hold_for);
            // The shortest a TTL of n lasts is just over n - 1 seconds.
            let shortest = Duration::from_secs(ttl_secs(hold_for) - 1);
            assert!(shortest >= hold_for + Duration::from_secs(1));
        }
    }
}
