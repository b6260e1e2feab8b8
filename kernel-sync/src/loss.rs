//! [`LossReason`] and [`LossSignal`]: how a holder learns it no longer holds.

use std::fmt;
use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// How a lock or a leadership was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LossReason {
    /// Our node (ZooKeeper) was deleted by someone else: an operator, a contender that found
    /// it expired, or [`MemoryLockBackend::revoke`](crate::MemoryLockBackend::revoke).
    Deleted,
    /// The session holding it expired (ZooKeeper), so its nodes are gone.
    SessionExpired,
    /// The connection to ZooKeeper was down for longer than the backend's suspension grace;
    /// the session may still be alive, but we cannot know whether it will be.
    ConnectionSuspended,
    /// A refresh of the lease failed or found someone else holding it (Cassandra).
    RefreshFailed,
    /// The hold time passed before unlock (ZooKeeper, memory), or an unlock found the lease
    /// had already run out (Cassandra; a lease that runs out while held is `RefreshFailed`).
    HoldExpired,
    /// The leadership was given up with [`Leadership::rescind`](crate::Leadership::rescind).
    Rescinded,
}

impl LossReason {
    /// A short lowercase phrase: `session expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LossReason::Deleted => "node deleted",
            LossReason::SessionExpired => "session expired",
            LossReason::ConnectionSuspended => "connection suspended",
            LossReason::RefreshFailed => "refresh failed",
            LossReason::HoldExpired => "hold time exceeded",
            LossReason::Rescinded => "rescinded",
        }
    }
}

impl fmt::Display for LossReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Completes when a lock or leadership is lost; cheap to clone and `'static`, so it can be
/// moved into the tasks doing the protected work.
///
/// Got from [`LockGuard::loss_signal`](crate::LockGuard::loss_signal) or
/// [`Leadership::loss_signal`](crate::Leadership::loss_signal). It fires at most once, with
/// the first reason; it never fires for a lock released with
/// [`unlock`](crate::LockGuard::unlock) before any loss.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use kernel_sync::{LockBackendExt, MemoryLockBackend, Namespace};
///
/// let backend = MemoryLockBackend::new(Namespace::new("com.example.billing")?);
/// let guard = backend.lock("nightly-close").acquire().await?;
/// let signal = guard.loss_signal();
/// let work = tokio::spawn(async move {
///     tokio::select! {
///         reason = signal.lost() => Err(reason),
///         () = async { /* the protected work */ } => Ok(()),
///     }
/// });
/// assert_eq!(work.await.unwrap(), Ok(()));
/// guard.unlock().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct LossSignal {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    token: CancellationToken,
    reason: OnceLock<LossReason>,
}

impl LossSignal {
    /// A signal that has not fired.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Fires with `reason` unless it already fired; returns whether this call fired it.
    pub(crate) fn fire(&self, reason: LossReason) -> bool {
        let fired = self.inner.reason.set(reason).is_ok();
        self.inner.token.cancel();
        fired
    }

    /// Waits until the lock or leadership is lost and returns how. Pending forever if it
    /// never is (and after a clean unlock).
    ///
    /// # Cancellation safety
    /// Cancel-safe: dropping the future loses nothing.
    pub async fn lost(&self) -> LossReason {
        self.inner.token.cancelled().await;
        self.reason().unwrap_or(LossReason::Deleted)
    }

    /// How it was lost, if it was.
    pub fn reason(&self) -> Option<LossReason> {
        self.inner.reason.get().copied()
    }

    /// Whether it was lost.
    pub fn is_lost(&self) -> bool {
        self.inner.reason.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_reason_wins_and_wakes_every_waiter() {
        let signal = LossSignal::new();
        let (a, b) = (signal.clone(), signal.clone());
        let waiters = tokio::spawn(async move { (a.lost().await, b.lost().await) });
        assert!(signal.fire(LossReason::SessionExpired));
        assert!(!signal.fire(LossReason::Deleted));
        assert_eq!(
            waiters.await.unwrap(),
            (LossReason::SessionExpired, LossReason::SessionExpired)
        );
        assert_eq!(signal.reason(), Some(LossReason::SessionExpired));
    }

    #[tokio::test(start_paused = true)]
    async fn an_unfired_signal_stays_pending() {
        let signal = LossSignal::new();
        let waited = tokio::time::timeout(std::time::Duration::from_secs(3600), signal.lost());
        assert!(waited.await.is_err());
        assert!(!signal.is_lost());
    }
}
