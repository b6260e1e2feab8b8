//! The background task behind each global-lock guard: refreshes the lease at 0.75 × hold,
//! reports a loss when the lease cannot be renewed, and releases on unlock or drop.

use std::sync::Arc;
use std::time::Duration;

use kernel_inst::Instrumenter;
use tokio::time::{Instant, sleep_until};
use uuid::Uuid;

use super::statements::Statements;
use crate::metrics::{self, GLOBAL_LOCK};
use crate::{GuardControl, LossReason, SyncError};

/// Pause before retrying a refresh or release that failed in the engine.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// One held global lock.
pub(crate) struct CassandraHold {
    pub(crate) statements: Arc<Statements>,
    pub(crate) name: String,
    pub(crate) me: Uuid,
    pub(crate) hold_for: Duration,
    pub(crate) ttl: i32,
    /// When the claim that granted the lock was sent: the server's TTL started later, so
    /// the lease as we count it ends no later than the server's.
    pub(crate) granted_at: Instant,
    pub(crate) inst: Arc<dyn Instrumenter>,
}

impl CassandraHold {
    pub(crate) async fn run(self, mut control: GuardControl) {
        let mut lease_end = self.granted_at + self.hold_for;
        let mut next_refresh = self.granted_at + self.hold_for.mul_f64(0.75);
        // The first refresh sent since the last one confirmed: one whose answer was lost may
        // still apply, so a later confirmation extends the lease only from this send.
        let mut unconfirmed_since: Option<Instant> = None;
        let first = loop {
            tokio::select! {
                biased;
                () = sleep_until(lease_end) => break Err(LossReason::RefreshFailed),
                request = control.release_requested() => break Ok(request),
                () = sleep_until(next_refresh) => {
                    let sent = Instant::now();
                    let counted_from = *unconfirmed_since.get_or_insert(sent);
                    let attempt = tokio::time::timeout(
                        lease_end.saturating_duration_since(sent),
                        self.statements.refresh(&self.name, self.me, self.ttl),
                    );
                    match attempt.await {
                        Ok(Ok(true)) => {
                            unconfirmed_since = None;
                            lease_end = counted_from + self.hold_for;
                            next_refresh = counted_from + self.hold_for.mul_f64(0.75);
                        }
                        Ok(Ok(false)) => break Err(LossReason::RefreshFailed),
                        Ok(Err(error)) => {
                            tracing::warn!(lock = %self.name, %error, "refreshing a global lock failed; retrying while the lease lasts");
                            next_refresh = Instant::now() + RETRY_PAUSE;
                        }
                        Err(_) => break Err(LossReason::RefreshFailed),
                    }
                }
            }
        };
        let mut request = match first {
            Ok(request) => {
                let released = match self.release(lease_end).await {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        // Not ours any more: the lease ran out before the release. The guard
                        // reports the loss.
                        if control.lose(LossReason::HoldExpired) {
                            metrics::count(&*self.inst, GLOBAL_LOCK.lost);
                        }
                        Ok(())
                    }
                    Err(error) => Err(error),
                };
                match request {
                    Some(reply) => reply.respond(released),
                    None => {
                        if let Err(error) = released {
                            tracing::warn!(lock = %self.name, %error, "could not release a dropped global lock");
                        }
                    }
                }
                control.release_requested().await
            }
            Err(reason) => {
                if control.lose(reason) {
                    tracing::warn!(lock = %self.name, %reason, "lost a global lock");
                    metrics::count(&*self.inst, GLOBAL_LOCK.lost);
                }
                // If the claim is still ours (the refresh failed in the engine, not in the
                // table), remove it rather than let it block others until its TTL.
                if let Err(error) = self.statements.release(&self.name, self.me).await {
                    tracing::debug!(lock = %self.name, %error, "could not remove a lost global lock's claim");
                }
                control.release_requested().await
            }
        };
        while let Some(reply) = request {
            reply.respond(Ok(()));
            request = control.release_requested().await;
        }
    }

    /// Removes our claim, retrying engine failures while the lease lasts; `false` if the claim
    /// was no longer ours before we released it.
    ///
    /// A release whose answer was lost may have applied: a retry that then finds the claim
    /// gone while the lease still lasts counts as released (nobody else could have taken it
    /// before the lease ran out).
    async fn release(&self, lease_end: Instant) -> Result<bool, SyncError> {
        let mut answer_lost = false;
        loop {
            match self.statements.release(&self.name, self.me).await {
                Ok(true) => return Ok(true),
                Ok(false) => return Ok(answer_lost && Instant::now() < lease_end),
                Err(error) if Instant::now() + RETRY_PAUSE < lease_end => {
                    tracing::debug!(lock = %self.name, %error, "retrying the release of a global lock");
                    answer_lost = true;
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
