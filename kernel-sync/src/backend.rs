//! The seams, [`LockBackend`] and [`Election`], and the user-facing calls built on them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::{Leadership, LockGuard, LockId, SyncError};

/// How long [`LockRequest::acquire`] waits for a held lock unless told otherwise (H2's 1 s).
pub const DEFAULT_WAIT_FOR: Duration = Duration::from_secs(1);

/// Default `hold_for` of region locks (ZooKeeper, memory), as H2's `RegionLock`: 2 s.
pub(crate) const REGION_DEFAULT_HOLD_FOR: Duration = Duration::from_secs(2);
/// Minimum `hold_for` of region locks, as H2's `RegionTimedLock`: 1 s.
pub(crate) const REGION_MIN_HOLD_FOR: Duration = Duration::from_secs(1);

/// The longest `hold_for` any backend accepts: 365 days. A lock held longer is a
/// configuration, not a lock; and every backend turns `hold_for` into a time ahead (a TTL,
/// an expiry recorded in a node, a timer), which must stay representable.
pub const MAX_HOLD_FOR: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// How far ahead a wait too long to represent ends: about 30 years, i.e. never.
const FOREVER: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `hold_for` if it lies within `minimum..=MAX_HOLD_FOR`, else [`SyncError::InvalidHoldFor`].
fn check_hold_for(hold_for: Duration, minimum: Duration) -> Result<Duration, SyncError> {
    if hold_for < minimum || hold_for > MAX_HOLD_FOR {
        return Err(SyncError::InvalidHoldFor {
            hold_for,
            minimum,
            maximum: MAX_HOLD_FOR,
        });
    }
    Ok(hold_for)
}

/// The instant `wait` after `start`; a wait too long to represent (`Duration::MAX` as "wait
/// for ever") ends about 30 years ahead.
pub(crate) fn after(start: tokio::time::Instant, wait: Duration) -> tokio::time::Instant {
    start
        .checked_add(wait.min(FOREVER))
        .unwrap_or_else(|| start + Duration::from_secs(24 * 60 * 60))
}

/// What a [`LockBackend`] is asked to acquire: a validated id and the two bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockSpec {
    /// The lock, within the backend's namespace.
    pub id: LockId,
    /// How long to wait while someone else holds it. Zero tries once.
    pub wait_for: Duration,
    /// How long the lock may be held: see each backend for what that bounds. `None` takes
    /// the backend's default.
    pub hold_for: Option<Duration>,
}

impl LockSpec {
    /// A spec for `id`, waiting [`DEFAULT_WAIT_FOR`] and holding for the backend's default.
    pub fn new(id: LockId) -> Self {
        LockSpec {
            id,
            wait_for: DEFAULT_WAIT_FOR,
            hold_for: None,
        }
    }

    /// The hold time to use: the one asked for, else the backend's `default`, checked
    /// against the backend's `minimum` and [`MAX_HOLD_FOR`]. For implementors of
    /// [`LockBackend`].
    ///
    /// # Errors
    /// [`SyncError::InvalidHoldFor`] outside that range.
    ///
    /// ```
    /// use std::time::Duration;
    /// use kernel_sync::{LockId, LockSpec, SyncError};
    ///
    /// let mut spec = LockSpec::new(LockId::new("close")?);
    /// assert_eq!(spec.checked_hold_for(Duration::from_secs(2), Duration::from_secs(1))?, Duration::from_secs(2));
    /// spec.hold_for = Some(Duration::from_millis(10));
    /// assert!(spec.checked_hold_for(Duration::from_secs(2), Duration::from_secs(1)).is_err());
    /// # Ok::<(), SyncError>(())
    /// ```
    pub fn checked_hold_for(
        &self,
        default: Duration,
        minimum: Duration,
    ) -> Result<Duration, SyncError> {
        check_hold_for(self.hold_for.unwrap_or(default), minimum)
    }
}

/// Grants mutual exclusion on named locks, with fencing tokens and loss signals.
///
/// Implemented by [`ZkLockBackend`](crate::ZkLockBackend) (region locks on ZooKeeper),
/// [`CassandraGlobalLock`](crate::CassandraGlobalLock) (global locks on Cassandra) and
/// [`MemoryLockBackend`](crate::MemoryLockBackend) (one process; the embedded default). Users
/// call [`LockBackendExt::lock`], which validates the id and builds the [`LockSpec`]; the
/// backend does only what needs the engine.
///
/// # Contract
/// An implementation must:
/// * grant a lock to at most one guard at a time, as far as the engine can know (a holder
///   that is paused past its loss is what the fencing token is for);
/// * hand out a [`FencingToken`](crate::FencingToken) that strictly increases across
///   successive holders of the same lock;
/// * fire the guard's loss signal ([`GuardControl::lose`](crate::GuardControl::lose)) as soon
///   as it can no longer vouch for the lock, and release the lock when the guard is dropped
///   or unlocked (see [`LockGuard::new`]);
/// * give up after `spec.wait_for` with [`SyncError::Contended`] if someone else held the
///   lock throughout, leaving nothing of the attempt behind;
/// * be cancellation-safe: dropping the returned future leaves nothing held.
///
/// The method returns `impl Future + Send` (static dispatch); the trait is not object safe.
pub trait LockBackend: Send + Sync + 'static {
    /// Acquires `spec.id`, waiting at most `spec.wait_for`.
    fn acquire(&self, spec: LockSpec) -> impl Future<Output = Result<LockGuard, SyncError>> + Send;
}

impl<T: LockBackend> LockBackend for Arc<T> {
    fn acquire(&self, spec: LockSpec) -> impl Future<Output = Result<LockGuard, SyncError>> + Send {
        (**self).acquire(spec)
    }
}

/// Elects one leader at a time among the candidates for an id, and tells a leader when its
/// term ends.
///
/// Implemented by [`ZkLockBackend`](crate::ZkLockBackend) and
/// [`MemoryLockBackend`](crate::MemoryLockBackend). Users call [`ElectionExt::leader`].
///
/// # Contract
/// `campaign` returns once this candidate is the leader (it never gives up on contention; it
/// retries through transient engine failures). At most one leadership per id is live at a
/// time, as far as the engine can know; the fencing token strictly increases across
/// successive leaders; the leadership's signal fires when the term ends; dropping or
/// rescinding it passes leadership to the next candidate. Dropping the future withdraws the
/// candidacy.
pub trait Election: Send + Sync + 'static {
    /// Stands for `id` and waits until elected.
    fn campaign(&self, id: LockId) -> impl Future<Output = Result<Leadership, SyncError>> + Send;
}

impl<T: Election> Election for Arc<T> {
    fn campaign(&self, id: LockId) -> impl Future<Output = Result<Leadership, SyncError>> + Send {
        (**self).campaign(id)
    }
}

/// `backend.lock(id)`: the way to take a lock on any [`LockBackend`].
pub trait LockBackendExt: LockBackend + Sized {
    /// Starts a request for the lock `id`; see [`LockRequest`].
    fn lock(&self, id: impl Into<String>) -> LockRequest<'_, Self> {
        LockRequest::new(self, id)
    }
}

impl<B: LockBackend> LockBackendExt for B {}

/// `backend.leader(id).await`: the way to stand for election on any [`Election`] backend.
pub trait ElectionExt: Election + Sized {
    /// Stands for the leadership `id` and returns once elected; see [`Leadership`].
    ///
    /// # Errors
    /// [`SyncError::InvalidId`] for a malformed id; engine failures that are not transient
    /// (e.g. an ACL refusing us). Contention and transient failures are waited out.
    ///
    /// # Cancellation safety
    /// Dropping the future withdraws the candidacy (our ZooKeeper node is removed).
    ///
    /// # Fencing
    /// The leadership's [`fencing_token`](Leadership::fencing_token) is higher than every
    /// token of an earlier term of this election.
    fn leader(
        &self,
        id: impl Into<String>,
    ) -> impl Future<Output = Result<Leadership, SyncError>> + Send + '_ {
        let id = LockId::new(id);
        async move { self.campaign(id?).await }
    }
}

impl<B: Election> ElectionExt for B {}

/// A lock about to be taken: `backend.lock(id).wait_for(d).hold_for(d).acquire().await`.
#[derive(Debug)]
#[must_use = "a lock request does nothing until acquired"]
pub struct LockRequest<'a, B> {
    backend: &'a B,
    id: String,
    wait_for: Duration,
    hold_for: Option<Duration>,
}

impl<'a, B: LockBackend> LockRequest<'a, B> {
    /// A request for `id` on `backend`; the same as `backend.lock(id)`.
    pub fn new(backend: &'a B, id: impl Into<String>) -> Self {
        LockRequest {
            backend,
            id: id.into(),
            wait_for: DEFAULT_WAIT_FOR,
            hold_for: None,
        }
    }

    /// How long to wait while someone else holds the lock (default [`DEFAULT_WAIT_FOR`]).
    /// Zero tries once.
    pub fn wait_for(mut self, wait_for: Duration) -> Self {
        self.wait_for = wait_for;
        self
    }

    /// How long the lock may be held (default and minimum: the backend's; at most
    /// [`MAX_HOLD_FOR`]). On ZooKeeper and
    /// in memory this bounds how long a holder that never unlocks blocks others; on Cassandra
    /// it is the lease, renewed while the guard lives.
    pub fn hold_for(mut self, hold_for: Duration) -> Self {
        self.hold_for = Some(hold_for);
        self
    }

    /// Takes the lock.
    ///
    /// # Errors
    /// * [`SyncError::InvalidId`], [`SyncError::InvalidHoldFor`]: permanent, fix the call.
    /// * [`SyncError::Contended`]: someone else held it throughout `wait_for`.
    /// * [`SyncError::SessionExpired`], [`SyncError::Backend`]: the engine failed; retry.
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future leaves no lock held and no node behind (the engine
    /// is cleaned in the background). One exception, on Cassandra: a claim still in flight
    /// when the future is dropped can land after the clean-up, and then blocks others until
    /// its TTL (`hold_for` plus up to three seconds).
    ///
    /// # Fencing
    /// The guard's [`fencing_token`](LockGuard::fencing_token) is higher than every token
    /// handed out for this lock before.
    pub async fn acquire(self) -> Result<LockGuard, SyncError> {
        let spec = LockSpec {
            id: LockId::new(self.id)?,
            wait_for: self.wait_for,
            hold_for: self.hold_for,
        };
        self.backend.acquire(spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryLockBackend, Namespace};

    fn assert_send<T: Send>(value: T) -> T {
        value
    }

    #[tokio::test]
    async fn seams_work_through_an_arc_and_their_futures_are_send() {
        let backend = Arc::new(MemoryLockBackend::new(
            Namespace::new("com.example").unwrap(),
        ));
        let guard = assert_send(backend.lock("a").acquire()).await.unwrap();
        let leadership = assert_send(backend.leader("a")).await.unwrap();
        guard.unlock().await.unwrap();
        leadership.rescind().await;
    }

    #[test]
    fn backends_are_send_sync_and_implement_the_seams() {
        fn assert_lock_backend<T: LockBackend + Clone>() {}
        fn assert_election<T: Election + Clone>() {}
        assert_lock_backend::<MemoryLockBackend>();
        assert_election::<MemoryLockBackend>();
        #[cfg(feature = "zookeeper")]
        {
            assert_lock_backend::<crate::ZkLockBackend>();
            assert_election::<crate::ZkLockBackend>();
        }
        #[cfg(feature = "cassandra")]
        assert_lock_backend::<crate::CassandraGlobalLock>();
    }
}
