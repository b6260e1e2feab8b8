//! [`LockGuard`], [`Leadership`], and the backend's end of both, [`GuardControl`].

use tokio::sync::{mpsc, oneshot};

use crate::{FencingToken, LockId, LossReason, LossSignal, SyncError};

/// Where a release request's outcome goes.
type Reply = oneshot::Sender<Result<(), SyncError>>;

/// A held lock: its fencing token, a signal that fires if it is lost, and `unlock`.
///
/// Returned by [`LockRequest::acquire`](crate::LockRequest::acquire). The backend keeps the
/// lock alive (and watches it) from a background task that the guard owns: dropping the guard
/// releases the lock in the background, and [`unlock`](LockGuard::unlock) releases it and says
/// whether the lock was still held.
///
/// # Fencing
/// [`fencing_token`](LockGuard::fencing_token) strictly increases across successive holders;
/// send it with every write made under the lock and have the resource refuse lower ones (see
/// [`FencingToken`]). The lock alone cannot stop a paused holder from writing after it lost
/// the lock; the token can.
///
/// # Loss
/// [`lost`](LockGuard::lost) completes if the lock is lost before unlock: the node deleted,
/// the session expired or suspended too long, a refresh failed, or the hold time exceeded.
/// Select on it around the protected work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use std::time::Duration;
/// use kernel_sync::{LockBackendExt, MemoryLockBackend, Namespace, SyncError};
///
/// let backend = MemoryLockBackend::new(Namespace::new("com.example.billing")?);
/// let guard = backend
///     .lock("nightly-close")
///     .wait_for(Duration::from_secs(5))
///     .hold_for(Duration::from_secs(60))
///     .acquire()
///     .await?;
/// let token = guard.fencing_token();
/// tokio::select! {
///     reason = guard.lost() => return Err(SyncError::Lost { id: guard.id().clone(), reason }),
///     () = async { /* write to the ledger, sending `token` along */ } => {}
/// }
/// guard.unlock().await?;
/// # let _ = token; Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a guard releases the lock at once"]
pub struct LockGuard {
    id: LockId,
    token: FencingToken,
    loss: LossSignal,
    requests: mpsc::UnboundedSender<Reply>,
}

impl LockGuard {
    /// A guard for a lock a backend has just acquired, and the backend's end of it.
    ///
    /// For implementors of [`LockBackend`](crate::LockBackend): spawn a task that owns the
    /// [`GuardControl`], keeps the lock (refreshing it if the engine needs that), reports a
    /// loss with [`GuardControl::lose`], and releases the lock when
    /// [`GuardControl::release_requested`] returns.
    pub fn new(id: LockId, token: FencingToken) -> (LockGuard, GuardControl) {
        let (requests, receiver) = mpsc::unbounded_channel();
        let loss = LossSignal::new();
        let guard = LockGuard {
            id,
            token,
            loss: loss.clone(),
            requests,
        };
        (
            guard,
            GuardControl {
                loss,
                requests: receiver,
            },
        )
    }

    /// The lock's id.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// The fencing token of this hold; see [`FencingToken`].
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }

    /// Completes when the lock is lost before unlock, with how it was lost.
    ///
    /// # Cancellation safety
    /// Cancel-safe: use it in `select!`.
    pub async fn lost(&self) -> LossReason {
        self.loss.lost().await
    }

    /// How the lock was lost, if it was.
    pub fn loss(&self) -> Option<LossReason> {
        self.loss.reason()
    }

    /// A `'static` handle on the loss signal, for tasks doing the protected work.
    pub fn loss_signal(&self) -> LossSignal {
        self.loss.clone()
    }

    /// Releases the lock and waits until the engine has released it.
    ///
    /// # Errors
    /// * [`SyncError::Lost`] if the lock had been lost before (or while) it was released:
    ///   the work done under it was not exclusive.
    /// * [`SyncError::Backend`] if the engine failed the release; the lock is then freed by
    ///   its expiry (session timeout, `hold_for`, or the lease's TTL).
    ///
    /// # Cancellation safety
    /// Dropping the future still releases the lock, in the background.
    pub async fn unlock(self) -> Result<(), SyncError> {
        release(&self.id, &self.loss, &self.requests, "release the lock").await
    }
}

/// Sends a release request and interprets the answer: a loss recorded by the time the
/// backend answered wins over its answer.
async fn release(
    id: &LockId,
    loss: &LossSignal,
    requests: &mpsc::UnboundedSender<Reply>,
    operation: &'static str,
) -> Result<(), SyncError> {
    let (reply, answer) = oneshot::channel();
    let answer = match requests.send(reply) {
        Ok(()) => answer.await.ok(),
        Err(_) => None,
    };
    if let Some(reason) = loss.reason().filter(|r| *r != LossReason::Rescinded) {
        return Err(SyncError::Lost {
            id: id.clone(),
            reason,
        });
    }
    answer.unwrap_or_else(|| {
        Err(SyncError::backend_message(
            "kernel-sync",
            operation,
            "the backend's background task has stopped (is the runtime shutting down?)",
        ))
    })
}

/// An elected leadership: its fencing token, a signal that fires when it ends, and `rescind`.
///
/// Returned by [`ElectionExt::leader`](crate::ElectionExt::leader). Dropping it rescinds in
/// the background.
///
/// # Fencing
/// [`fencing_token`](Leadership::fencing_token) strictly increases across successive leaders
/// of the same election; see [`FencingToken`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use kernel_sync::{ElectionExt, LossReason, MemoryLockBackend, Namespace};
///
/// let backend = MemoryLockBackend::new(Namespace::new("com.example.scheduler")?);
/// let leadership = backend.leader("cron").await?;
/// leadership.rescind().await;
/// assert_eq!(leadership.rescinded().await, LossReason::Rescinded);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping a leadership rescinds it at once"]
pub struct Leadership {
    id: LockId,
    token: FencingToken,
    loss: LossSignal,
    requests: mpsc::UnboundedSender<Reply>,
}

impl Leadership {
    /// A leadership a backend has just won, and the backend's end of it.
    ///
    /// For implementors of [`Election`](crate::Election): as for [`LockGuard::new`]; every
    /// [`GuardControl::release_requested`] answer is a rescind, and there may be several.
    pub fn new(id: LockId, token: FencingToken) -> (Leadership, GuardControl) {
        let (guard, control) = LockGuard::new(id, token);
        let LockGuard {
            id,
            token,
            loss,
            requests,
        } = guard;
        (
            Leadership {
                id,
                token,
                loss,
                requests,
            },
            control,
        )
    }

    /// The election's id.
    pub fn id(&self) -> &LockId {
        &self.id
    }

    /// The fencing token of this term; see [`FencingToken`].
    pub fn fencing_token(&self) -> FencingToken {
        self.token
    }

    /// Completes when the leadership ends: our node deleted by anyone, the session expired or
    /// suspended too long, or [`rescind`](Leadership::rescind) called.
    ///
    /// # Cancellation safety
    /// Cancel-safe: use it in `select!`.
    pub async fn rescinded(&self) -> LossReason {
        self.loss.lost().await
    }

    /// How the leadership ended, if it did.
    pub fn loss(&self) -> Option<LossReason> {
        self.loss.reason()
    }

    /// A `'static` handle on the rescinded signal, for tasks doing the leader's work.
    pub fn loss_signal(&self) -> LossSignal {
        self.loss.clone()
    }

    /// Gives the leadership up: [`rescinded`](Leadership::rescinded) completes at once, and
    /// this returns once our claim is gone from the engine (retrying through lost connections
    /// until it is, or until the session that holds it has ended). Idempotent.
    ///
    /// If the engine refuses the removal outright (on ZooKeeper: an ACL changed under us),
    /// retrying would not help: this returns after logging a warning, and the claim ends with
    /// the session. Nobody else is elected until then.
    ///
    /// # Cancellation safety
    /// Dropping the future does not stop the removal.
    pub async fn rescind(&self) {
        self.loss.fire(LossReason::Rescinded);
        match release(&self.id, &self.loss, &self.requests, "rescind").await {
            Ok(()) | Err(SyncError::Lost { .. }) => {}
            Err(error) => {
                tracing::warn!(id = %self.id, %error, "rescind could not remove our claim; it ends with the session");
            }
        }
    }
}

/// The backend's end of a [`LockGuard`] or [`Leadership`]: report a loss, hear a release.
#[derive(Debug)]
pub struct GuardControl {
    loss: LossSignal,
    requests: mpsc::UnboundedReceiver<Reply>,
}

impl GuardControl {
    /// Reports that the lock or leadership is lost; returns whether this was the first report.
    pub fn lose(&self, reason: LossReason) -> bool {
        self.loss.fire(reason)
    }

    /// How it was lost, if it was (including a rescind).
    pub fn loss(&self) -> Option<LossReason> {
        self.loss.reason()
    }

    /// Waits for the user to release: `Some` for an explicit unlock or rescind (answer it),
    /// `None` once the guard or leadership has been dropped (release in the background; nobody
    /// waits for the outcome).
    ///
    /// # Cancellation safety
    /// Cancel-safe: use it in `select!`.
    pub async fn release_requested(&mut self) -> Option<ReleaseRequest> {
        self.requests.recv().await.map(ReleaseRequest)
    }
}

/// An explicit unlock or rescind, to be answered once the engine has released.
#[derive(Debug)]
pub struct ReleaseRequest(Reply);

impl ReleaseRequest {
    /// Answers the request.
    pub fn respond(self, result: Result<(), SyncError>) {
        // The caller may have stopped waiting; the release happened all the same.
        let _ = self.0.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> LockId {
        LockId::new("a").unwrap()
    }

    #[tokio::test]
    async fn unlock_reports_a_loss_that_happened_before_it() {
        let (guard, mut control) = LockGuard::new(id(), FencingToken::new(1));
        control.lose(LossReason::HoldExpired);
        let backend = tokio::spawn(async move {
            control.release_requested().await.unwrap().respond(Ok(()));
        });
        let error = guard.unlock().await.unwrap_err();
        assert!(matches!(
            error,
            SyncError::Lost {
                reason: LossReason::HoldExpired,
                ..
            }
        ));
        backend.await.unwrap();
    }

    #[tokio::test]
    async fn dropping_a_guard_tells_the_backend_with_no_one_to_answer() {
        let (guard, mut control) = LockGuard::new(id(), FencingToken::new(1));
        drop(guard);
        assert!(control.release_requested().await.is_none());
    }

    #[tokio::test]
    async fn rescind_fires_rescinded_and_may_be_repeated() {
        let (leadership, mut control) = Leadership::new(id(), FencingToken::new(1));
        let backend = tokio::spawn(async move {
            let mut answered = 0;
            while let Some(request) = control.release_requested().await {
                request.respond(Ok(()));
                answered += 1;
            }
            answered
        });
        leadership.rescind().await;
        leadership.rescind().await;
        assert_eq!(leadership.rescinded().await, LossReason::Rescinded);
        drop(leadership);
        assert_eq!(backend.await.unwrap(), 2);
    }

    #[test]
    fn guards_are_send_and_sync() {
        fn assert_bounds<T: Send + Sync + 'static>() {}
        assert_bounds::<LockGuard>();
        assert_bounds::<Leadership>();
        assert_bounds::<GuardControl>();
    }
}
