//! [`ZkLockBackend`]: H2's region locks and region leaders on ZooKeeper, made safe.

mod acl;
mod builder;
mod gotime;
mod hold;
mod recipe;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use kernel_inst::Instrumenter;
use tokio::time::Instant;

pub use self::builder::ZkLockBackendBuilder;
use self::hold::{Held, ZkHold};
use self::recipe::{Contender, Outcome};
use self::session::Sessions;
use crate::metrics::{self, REGION_LOCK};
use crate::{
    Election, FencingToken, Leadership, LockBackend, LockGuard, LockId, LockSpec, Namespace,
    SyncError,
};

/// Region locks and leader election on ZooKeeper.
///
/// # Locks
/// The standard ZooKeeper lock recipe: each contender creates an ephemeral sequential node
/// under `/<namespace>/<id>` (every `/` of the id replaced by `#`, as in H2), the lowest
/// sequence holds, and each waiter watches only its predecessor, so a release wakes one
/// waiter (no herd effect). Nodes are named as Curator's and H2's (`_c_<uuid>-lock-<seq>`),
/// so Curator `InterProcessMutex` clients and H2 Go services on the same path exclude ours.
///
/// * `wait_for` bounds the wait: then [`SyncError::Contended`], with our node removed.
/// * `hold_for` (default [`DEFAULT_HOLD_FOR`](ZkLockBackend::DEFAULT_HOLD_FOR), minimum
///   [`MIN_HOLD_FOR`](ZkLockBackend::MIN_HOLD_FOR), both as H2) bounds how long a holder
///   blocks others: at `hold_for` the guard reports [`LossReason::HoldExpired`](crate::LossReason::HoldExpired)
///   and removes its node. The node also records, in H2's format, the instant after which its
///   holder no longer claims it (`created + wait_for + hold_for`), and the contender waiting
///   on an expired node deletes it, as H2's reaper did: this frees a lock whose holder hangs
///   with its session alive.
/// * The lock path's parents are container nodes, which ZooKeeper deletes once they are
///   empty (H2's reaper deleted them itself, racing with new lockers).
/// * Uncontended, an acquire + release costs the two writes of a create and a delete: a
///   contender that knows of no other holder or waiter in this backend first tries one
///   transaction that replaces the empty lock path with a fresh one holding only its node
///   (ZooKeeper refuses the delete if anyone holds or waits), so it holds without reading the
///   path; later clients of the recipe still get higher sequences. See [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md).
///
/// # Leaders
/// [`leader(id)`](crate::ElectionExt::leader) uses the same recipe under
/// `/sync/regionleader/<namespace>/<id>` (H2's root, now namespaced), with no wait or hold
/// limit: it returns once elected. The leadership ends when its node is deleted by anyone,
/// when the session expires or stays suspended past the grace, or on
/// [`rescind`](crate::Leadership::rescind); the next candidate is then elected.
///
/// # Fencing
/// The fencing token is the `czxid` of the holder's node: ZooKeeper's transaction id of its
/// creation. Successive holders own successively created nodes, so their tokens strictly
/// increase, across sessions, clients and restarts of the lock path.
///
/// # Sessions
/// All locks and leaderships of a backend share one session. If it expires, every one of
/// them reports [`LossReason::SessionExpired`](crate::LossReason::SessionExpired) at once and
/// the next operation opens a new session. If the connection is suspended (disconnected but
/// not yet expired) for longer than the suspension grace (a fraction of the negotiated
/// session timeout, default [`DEFAULT_SUSPENSION_GRACE`](ZkLockBackend::DEFAULT_SUSPENSION_GRACE)),
/// every holder reports [`LossReason::ConnectionSuspended`](crate::LossReason::ConnectionSuspended)
/// and removes its node once reconnected. The client notices a dead connection after 2/5 of
/// the session timeout, so with the default grace a holder is told within about 0.73–0.78 of the
/// session timeout of its last contact with ZooKeeper: before the server can expire the
/// session and let anyone else in (1.0). Graces above about 0.55 lose that ordering.
///
/// On an ensemble, give every server in `hosts` (`zk1:2181,zk2:2181,zk3:2181`): the session
/// moves to another server when one dies. When the ensemble's leader dies, every client is
/// disconnected until a new leader is elected (under half a second on three servers on
/// loopback); a holder keeps what it holds if that is shorter than its grace, and is told
/// otherwise (`docs/sync.md`, "On a cluster").
///
/// Clones share the session. Dropping the last clone and every guard closes the session.
///
/// # Access control
/// Without credentials every node is open to every client of the ensemble, as H2's were. With
/// [`digest_credentials`](ZkLockBackendBuilder::digest_credentials) the session authenticates
/// with ZooKeeper's `digest` scheme and the lock and election paths are created so that only
/// this identity (and its [`peer_digest`](ZkLockBackendBuilder::peer_digest)s) can join a
/// queue or delete a node, while anyone can observe: [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md), "ZooKeeper access
/// control", has the ACL table and its limits.
///
/// ```no_run
/// # #[tokio::main] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use kernel_sync::{ElectionExt, LockBackendExt, Namespace, ZkLockBackend};
///
/// let zk = ZkLockBackend::builder("127.0.0.1:2181", Namespace::new("com.example.billing")?)
///     .session_timeout(Duration::from_secs(6))
///     .instrumenter(Arc::new(kernel_inst::NoopInstrumenter))
///     .connect()
///     .await?;
/// let guard = zk.lock("nightly-close").wait_for(Duration::from_secs(5)).acquire().await?;
/// guard.unlock().await?;
/// let leadership = zk.leader("scheduler").await?;
/// leadership.rescind().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ZkLockBackend {
    inner: Arc<Inner>,
}

struct Inner {
    sessions: Sessions,
    namespace: Namespace,
    /// What this backend knows of its lock paths, for the fast path.
    paths: Arc<LockPaths>,
    /// The ACLs of the nodes it creates.
    acls: Arc<acl::NodeAcls>,
    inst: Arc<dyn Instrumenter>,
}

/// What a backend knows of its lock paths: how many of its own contenders and holders use
/// each (a contender for a path already in use here would fail the fast path), and whether
/// the server refused the fast path for good (no delete right on a namespace, no containers
/// or transactions): then no contender tries it again.
#[derive(Debug, Default)]
pub(crate) struct LockPaths {
    in_use: Mutex<HashMap<String, usize>>,
    fast_path_refused: AtomicBool,
}

/// One contender's or holder's use of a lock path, counted until dropped: dropped once its
/// node is gone.
#[derive(Debug)]
pub(crate) struct PathUse {
    paths: Arc<LockPaths>,
    dir: String,
    fast_path: bool,
}

impl PathUse {
    /// Counts a use of `dir`.
    fn begin(paths: &Arc<LockPaths>, dir: String) -> PathUse {
        let mut uses = paths.in_use.lock().unwrap_or_else(PoisonError::into_inner);
        let count = uses.entry(dir.clone()).or_default();
        *count += 1;
        let alone = *count == 1;
        drop(uses);
        PathUse {
            fast_path: alone && !paths.fast_path_refused.load(Ordering::Relaxed),
            paths: paths.clone(),
            dir,
        }
    }

    /// The lock path.
    pub(crate) fn dir(&self) -> &str {
        &self.dir
    }

    /// Whether to try the fast path: nothing else of this backend uses the path, and the
    /// server has not refused the fast path for good.
    pub(crate) fn fast_path(&self) -> bool {
        self.fast_path
    }

    /// The server refused the fast path in a way retrying does not change.
    pub(crate) fn refuse_fast_path(&self) {
        if !self.paths.fast_path_refused.swap(true, Ordering::Relaxed) {
            tracing::info!(dir = %self.dir, "zookeeper refused the uncontended fast path; using the standard recipe only");
        }
    }
}

impl Drop for PathUse {
    fn drop(&mut self) {
        let mut uses = self
            .paths
            .in_use
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = uses.get_mut(&self.dir) {
            *count -= 1;
            if *count == 0 {
                uses.remove(&self.dir);
            }
        }
    }
}

impl fmt::Debug for ZkLockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkLockBackend")
            .field("namespace", &self.inner.namespace)
            .field("sessions", &self.inner.sessions)
            .finish_non_exhaustive()
    }
}

impl ZkLockBackend {
    /// Default `hold_for`, as H2's `RegionLock`: 2 s.
    pub const DEFAULT_HOLD_FOR: Duration = crate::REGION_DEFAULT_HOLD_FOR;
    /// Minimum `hold_for`, as H2's `RegionTimedLock`: 1 s.
    pub const MIN_HOLD_FOR: Duration = crate::REGION_MIN_HOLD_FOR;
    /// Session timeout asked of ZooKeeper unless set (the server may negotiate it within its
    /// `minSessionTimeout`..`maxSessionTimeout`): 6 s. H2 used 100 ms, which only a
    /// same-rack ensemble sustains.
    pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(6);
    /// How long to try to open a session before failing: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Suspension beyond this fraction of the session timeout counts as loss: 1/3, Curator's
    /// `StandardConnectionHandlingPolicy(33)`.
    pub const DEFAULT_SUSPENSION_GRACE: f64 = 1.0 / 3.0;

    /// Starts a backend for `namespace` (the service name) on the ensemble `hosts`
    /// (`host:port[,host:port…][/chroot]`).
    pub fn builder(hosts: impl Into<String>, namespace: Namespace) -> ZkLockBackendBuilder {
        ZkLockBackendBuilder::new(hosts.into(), namespace)
    }

    /// The namespace locks are taken in.
    pub fn namespace(&self) -> &Namespace {
        &self.inner.namespace
    }

    /// One round trip to the ensemble on the current session (opening one if the last has
    /// ended), for a health check: `Ok` if the server answered.
    ///
    /// # Errors
    /// [`SyncError::Backend`] if no session could be opened or the server did not answer.
    pub async fn ping(&self) -> Result<(), SyncError> {
        let session = self.inner.sessions.get().await?;
        session
            .client
            .check_stat("/")
            .await
            .map(drop)
            .map_err(|error| SyncError::backend("zookeeper", "ping the ensemble", error))
    }

    /// The ZooKeeper path of lock `id`'s children: `/<namespace>/<id with / as #>`.
    pub fn lock_path(&self, id: &LockId) -> String {
        format!("/{}/{}", self.inner.namespace, id.path_component())
    }

    /// The ZooKeeper path of election `id`'s candidates:
    /// `/sync/regionleader/<namespace>/<id with / as #>`.
    pub fn leader_path(&self, id: &LockId) -> String {
        format!(
            "{}/{}/{}",
            acl::LEADER_ROOT,
            self.inner.namespace,
            id.path_component()
        )
    }

    /// Runs one contender to a win, the deadline, or a failure; on anything but a win its
    /// node is removed before this returns.
    async fn contend(
        &self,
        dir: String,
        data: Vec<u8>,
        wait_until: Option<Instant>,
    ) -> Result<Won, Lost> {
        let session = self.inner.sessions.get().await.map_err(Lost::Failed)?;
        // Engine calls before the wait are bounded by the session timeout, not by wait_for,
        // so that `wait_for = 0` still gets one try.
        let give_up =
            wait_until.map(|at| at.max(Instant::now() + session.client.session_timeout()));
        let path_use = PathUse::begin(&self.inner.paths, dir);
        let mut contender = Contender::new(
            session,
            path_use,
            data,
            self.inner.acls.clone(),
            self.inner.inst.clone(),
        );
        let run = contender.run(wait_until);
        let result = match give_up {
            Some(at) => tokio::time::timeout_at(at, run)
                .await
                .unwrap_or(Err(Outcome::Contended)),
            None => run.await,
        };
        match result {
            Ok((node, epoch, dir_watch)) => {
                let session = contender.session.clone();
                let path_use = contender.disarm();
                Ok(Won {
                    session,
                    node,
                    epoch,
                    dir_watch,
                    path_use,
                })
            }
            Err(outcome) => {
                let lost = match outcome {
                    Outcome::Contended if contender.saw_holder => Lost::Contended,
                    Outcome::Contended => Lost::Failed(match contender.last_error.clone() {
                        Some(error) => SyncError::backend("zookeeper", "acquire the lock", error),
                        None => SyncError::backend_message(
                            "zookeeper",
                            "acquire the lock",
                            "no answer before the deadline",
                        ),
                    }),
                    Outcome::Failed(error) => Lost::Failed(error),
                };
                contender.withdraw().await;
                Err(lost)
            }
        }
    }
}

/// A contender's win.
struct Won {
    session: Arc<session::ZkSession>,
    node: recipe::OwnNode,
    epoch: tokio_util::sync::CancellationToken,
    dir_watch: Option<zookeeper_client::OneshotWatcher>,
    path_use: Option<PathUse>,
}

/// A contender's loss.
enum Lost {
    Contended,
    Failed(SyncError),
}

fn token(czxid: i64) -> FencingToken {
    FencingToken::new(u64::try_from(czxid).unwrap_or(0))
}

impl LockBackend for ZkLockBackend {
    async fn acquire(&self, spec: LockSpec) -> Result<LockGuard, SyncError> {
        let hold_for = spec.checked_hold_for(Self::DEFAULT_HOLD_FOR, Self::MIN_HOLD_FOR)?;
        let started = Instant::now();
        let wait_until = crate::after(started, spec.wait_for);
        // What the node records: the latest moment our guard could still hold the lock.
        let claim_until = SystemTime::now() + (wait_until - started) + hold_for;
        let result = self
            .contend(
                self.lock_path(&spec.id),
                gotime::encode(claim_until).to_vec(),
                Some(wait_until),
            )
            .await;
        REGION_LOCK.record_acquire(&*self.inner.inst, started.elapsed(), result.is_ok());
        let won = match result {
            Ok(won) => won,
            Err(Lost::Contended) => {
                return Err(SyncError::Contended {
                    id: spec.id,
                    waited: started.elapsed(),
                });
            }
            Err(Lost::Failed(error)) => return Err(error),
        };
        let (guard, control) = LockGuard::new(spec.id, token(won.node.czxid));
        let hold = ZkHold {
            session: won.session,
            path: won.node.path,
            epoch: won.epoch,
            dir_watch: won.dir_watch,
            // No later than the expiry recorded in our node (a win may come after wait_for),
            // past which a contender may delete it.
            held: Held::Lock {
                hold_until: (Instant::now() + hold_for).min(wait_until + hold_for),
            },
            defer_watch: won.node.alone,
            path_use: won.path_use,
            inst: self.inner.inst.clone(),
        };
        tokio::spawn(hold.run(control));
        Ok(guard)
    }
}

/// Whether ZooKeeper refused the request itself (an ACL, a bad path, a feature the server
/// lacks), so that retrying would fail again: a campaign then gives up with the error.
fn is_refusal(error: &SyncError) -> bool {
    let SyncError::Backend { source, .. } = error else {
        return false;
    };
    source
        .downcast_ref::<zookeeper_client::Error>()
        .is_some_and(|error| {
            matches!(
                error,
                zookeeper_client::Error::NoAuth
                    | zookeeper_client::Error::InvalidAcl
                    | zookeeper_client::Error::AuthFailed
                    | zookeeper_client::Error::Unimplemented
                    | zookeeper_client::Error::BadArguments(_)
                    | zookeeper_client::Error::NoChildrenForEphemerals
                    | zookeeper_client::Error::MarshallingError
            )
        })
}

/// First pause after a failed campaign attempt (H2: 50 ms), doubled up to
/// [`MAX_CAMPAIGN_PAUSE`].
const FIRST_CAMPAIGN_PAUSE: Duration = Duration::from_millis(50);
/// Longest pause between campaign attempts (H2: 10 min, which left a service leaderless for
/// minutes after an outage).
const MAX_CAMPAIGN_PAUSE: Duration = Duration::from_secs(5);

impl Election for ZkLockBackend {
    async fn campaign(&self, id: LockId) -> Result<Leadership, SyncError> {
        let dir = self.leader_path(&id);
        let mut pause = FIRST_CAMPAIGN_PAUSE;
        let won = loop {
            match self.contend(dir.clone(), Vec::new(), None).await {
                Ok(won) => break won,
                Err(Lost::Failed(error)) if error.is_transient() && !is_refusal(&error) => {
                    tracing::warn!(%id, %error, ?pause, "leader campaign failed; standing again");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_CAMPAIGN_PAUSE);
                }
                Err(Lost::Failed(error)) => return Err(error),
                Err(Lost::Contended) => {}
            }
        };
        metrics::count(&*self.inner.inst, metrics::LEADER_ELECTED);
        let (leadership, control) = Leadership::new(id, token(won.node.czxid));
        let hold = ZkHold {
            session: won.session,
            path: won.node.path,
            epoch: won.epoch,
            dir_watch: won.dir_watch,
            held: Held::Leadership,
            defer_watch: won.node.alone,
            path_use: won.path_use,
            inst: self.inner.inst.clone(),
        };
        tokio::spawn(hold.run(control));
        Ok(leadership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_send_sync_and_cheap_to_clone() {
        fn assert_bounds<T: Send + Sync + Clone + 'static>() {}
        assert_bounds::<ZkLockBackend>();
    }
}
