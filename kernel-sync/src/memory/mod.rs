//! [`MemoryLockBackend`]: locks and elections within one process, the embedded default.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kernel_inst::{Instrumenter, NoopInstrumenter};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};

use crate::metrics::{self, REGION_LOCK};
use crate::{
    Election, FencingToken, GuardControl, Leadership, LockBackend, LockGuard, LockId, LockSpec,
    LossReason, LossSignal, Namespace, SyncError,
};

/// Locks and leader elections within one process, with the semantics of the ZooKeeper
/// backend: FIFO hand-over, `hold_for` as a maximum hold, fencing tokens, loss signals.
///
/// It is the embedded default, for laptops, examples and unit tests of code that takes locks;
/// it excludes nothing outside the process. Clones share the lock table; so do backends made
/// with [`for_namespace`](MemoryLockBackend::for_namespace), which lets several services of
/// one test share it. [`revoke`](MemoryLockBackend::revoke) and
/// [`expire_session`](MemoryLockBackend::expire_session) inject the losses a real engine can
/// cause, so that code's loss handling can be tested.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kernel_sync::SyncError> {
/// use std::time::Duration;
/// use kernel_sync::{LockBackendExt, MemoryLockBackend, Namespace, SyncError};
///
/// let backend = MemoryLockBackend::new(Namespace::new("com.example.billing")?);
/// let first = backend.lock("close").acquire().await?;
/// let second = backend.lock("close").wait_for(Duration::ZERO).acquire().await;
/// assert!(matches!(second, Err(SyncError::Contended { .. })));
/// first.unlock().await?;
/// let third = backend.lock("close").acquire().await?;
/// assert!(third.fencing_token() > kernel_sync::FencingToken::ZERO);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryLockBackend {
    table: Arc<Table>,
    namespace: Namespace,
    inst: Arc<dyn Instrumenter>,
}

impl fmt::Debug for MemoryLockBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLockBackend")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// Locks and elections are separate name spaces, as their ZooKeeper paths are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Lock,
    Leader,
}

type Key = (Kind, Namespace, LockId);

/// The lock table: one entry per lock or election that has, or had, a holder or waiter.
#[derive(Debug, Default)]
struct Table {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<Key, Entry>,
    /// Tickets order the waiters of every entry (like ZooKeeper's sequence numbers).
    next_ticket: u64,
    /// The last fencing token handed out, by any entry.
    last_token: u64,
}

#[derive(Debug, Default)]
struct Entry {
    holder: Option<Holder>,
    queue: VecDeque<u64>,
    changed: Arc<Notify>,
}

#[derive(Debug)]
struct Holder {
    ticket: u64,
    /// Fired by `revoke` and `expire_session`; the hold task turns it into a loss.
    revocation: LossSignal,
}

impl Table {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing that panics runs under this mutex; a poisoned table is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn enqueue(&self, key: &Key) -> (u64, Arc<Notify>) {
        let mut state = self.state();
        state.next_ticket += 1;
        let ticket = state.next_ticket;
        let entry = state.entries.entry(key.clone()).or_default();
        entry.queue.push_back(ticket);
        (ticket, entry.changed.clone())
    }

    /// Takes the lock for `ticket` if it is free and `ticket` is first in line.
    fn try_take(&self, key: &Key, ticket: u64) -> Option<(FencingToken, LossSignal)> {
        let mut state = self.state();
        let state = &mut *state;
        let entry = state.entries.get_mut(key)?;
        if entry.holder.is_some() || entry.queue.front() != Some(&ticket) {
            return None;
        }
        entry.queue.pop_front();
        let revocation = LossSignal::new();
        entry.holder = Some(Holder {
            ticket,
            revocation: revocation.clone(),
        });
        state.last_token += 1;
        Some((FencingToken::new(state.last_token), revocation))
    }

    /// Removes `ticket` as holder or waiter, and wakes the waiters.
    fn leave(&self, key: &Key, ticket: u64) {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(key) else {
            return;
        };
        if entry.holder.as_ref().is_some_and(|h| h.ticket == ticket) {
            entry.holder = None;
        }
        entry.queue.retain(|t| *t != ticket);
        entry.changed.notify_waiters();
        if entry.holder.is_none() && entry.queue.is_empty() {
            state.entries.remove(key);
        }
    }

    fn revoke_where(&self, reason: LossReason, matches: impl Fn(&Key) -> bool) -> usize {
        let state = self.state();
        let mut revoked = 0;
        for (key, entry) in &state.entries {
            if let Some(holder) = entry.holder.as_ref().filter(|_| matches(key)) {
                revoked += usize::from(holder.revocation.fire(reason));
            }
        }
        revoked
    }
}

/// Leaves the queue if the waiting future is dropped before it took the lock.
struct Waiting<'a> {
    table: &'a Table,
    key: &'a Key,
    ticket: u64,
    armed: bool,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.table.leave(self.key, self.ticket);
        }
    }
}

impl MemoryLockBackend {
    /// Default `hold_for`, as H2's `RegionLock`: 2 s.
    pub const DEFAULT_HOLD_FOR: Duration = crate::REGION_DEFAULT_HOLD_FOR;
    /// Minimum `hold_for`, as H2's `RegionTimedLock`: 1 s.
    pub const MIN_HOLD_FOR: Duration = crate::REGION_MIN_HOLD_FOR;

    /// A new, empty lock table for `namespace`, recording nothing.
    pub fn new(namespace: Namespace) -> Self {
        MemoryLockBackend {
            table: Arc::default(),
            namespace,
            inst: Arc::new(NoopInstrumenter),
        }
    }

    /// Records H2's `sync.regionlock.*` and `sync.regionleader.*` metrics into `inst`.
    #[must_use]
    pub fn instrumenter(mut self, inst: Arc<dyn Instrumenter>) -> Self {
        self.inst = inst;
        self
    }

    /// A backend for another namespace sharing this one's lock table.
    #[must_use]
    pub fn for_namespace(&self, namespace: Namespace) -> Self {
        MemoryLockBackend {
            namespace,
            ..self.clone()
        }
    }

    /// The namespace locks are taken in.
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// Takes the lock and the leadership named `id` (in this namespace) from their holders,
    /// as deleting their ZooKeeper nodes would: their signals fire with
    /// [`LossReason::Deleted`] and the next in line takes over. Returns how many were taken.
    pub fn revoke(&self, id: &LockId) -> usize {
        self.table
            .revoke_where(LossReason::Deleted, |(_, ns, lock)| {
                *ns == self.namespace && lock == id
            })
    }

    /// Takes every lock and leadership in the table (all namespaces) from its holder, as a
    /// ZooKeeper session expiry would: their signals fire with
    /// [`LossReason::SessionExpired`]. Returns how many were taken.
    pub fn expire_session(&self) -> usize {
        self.table
            .revoke_where(LossReason::SessionExpired, |_| true)
    }

    /// Waits in line for `key` until first and free, or until `deadline`.
    async fn take(
        &self,
        key: &Key,
        deadline: Option<Instant>,
    ) -> Option<(u64, FencingToken, LossSignal)> {
        let (ticket, changed) = self.table.enqueue(key);
        let mut waiting = Waiting {
            table: &self.table,
            key,
            ticket,
            armed: true,
        };
        loop {
            let notified = changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some((token, revocation)) = self.table.try_take(key, ticket) {
                waiting.armed = false;
                return Some((ticket, token, revocation));
            }
            match deadline {
                Some(deadline) => tokio::select! {
                    () = &mut notified => {}
                    () = sleep_until(deadline) => return None,
                },
                None => notified.await,
            }
        }
    }
}

/// Keeps one hold: ends it on release, revocation or the hold deadline.
struct Hold {
    table: Arc<Table>,
    key: Key,
    ticket: u64,
    revocation: LossSignal,
    hold_until: Option<Instant>,
    inst: Arc<dyn Instrumenter>,
}

impl Hold {
    async fn run(self, mut control: GuardControl, leader: bool) {
        let hold_until = self.hold_until;
        let expired = async move {
            match hold_until {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let first = tokio::select! {
            request = control.release_requested() => Ok(request),
            reason = self.revocation.lost() => Err(reason),
            () = expired => Err(LossReason::HoldExpired),
        };
        // A loss is reported before the next holder is let in, so that the old holder hears
        // of it before the new one's term starts.
        if let Err(reason) = first
            && control.lose(reason)
        {
            let bucket = if leader {
                metrics::LEADER_REMOTELY_RESCINDED
            } else {
                REGION_LOCK.lost
            };
            metrics::count(&*self.inst, bucket);
        }
        self.table.leave(&self.key, self.ticket);
        let mut request = match first {
            Ok(request) => {
                if leader {
                    metrics::count(&*self.inst, metrics::LEADER_RESCINDED);
                }
                request
            }
            Err(_) => control.release_requested().await,
        };
        // Released: answer this and any later request (a repeated rescind).
        while let Some(reply) = request {
            reply.respond(Ok(()));
            request = control.release_requested().await;
        }
    }
}

impl LockBackend for MemoryLockBackend {
    async fn acquire(&self, spec: LockSpec) -> Result<LockGuard, SyncError> {
        let hold_for = spec.checked_hold_for(Self::DEFAULT_HOLD_FOR, Self::MIN_HOLD_FOR)?;
        let started = Instant::now();
        let key = (Kind::Lock, self.namespace.clone(), spec.id.clone());
        let taken = self
            .take(&key, Some(crate::after(started, spec.wait_for)))
            .await;
        REGION_LOCK.record_acquire(&*self.inst, started.elapsed(), taken.is_some());
        let Some((ticket, token, revocation)) = taken else {
            return Err(SyncError::Contended {
                id: spec.id,
                waited: started.elapsed(),
            });
        };
        let (guard, control) = LockGuard::new(spec.id, token);
        let hold = Hold {
            table: self.table.clone(),
            key,
            ticket,
            revocation,
            hold_until: Some(Instant::now() + hold_for),
            inst: self.inst.clone(),
        };
        tokio::spawn(hold.run(control, false));
        Ok(guard)
    }
}

impl Election for MemoryLockBackend {
    async fn campaign(&self, id: LockId) -> Result<Leadership, SyncError> {
        let key = (Kind::Leader, self.namespace.clone(), id.clone());
        let Some((ticket, token, revocation)) = self.take(&key, None).await else {
            return Err(SyncError::backend_message(
                "memory",
                "elect a leader",
                "the wait for leadership ended without a deadline",
            ));
        };
        metrics::count(&*self.inst, metrics::LEADER_ELECTED);
        let (leadership, control) = Leadership::new(id, token);
        let hold = Hold {
            table: self.table.clone(),
            key,
            ticket,
            revocation,
            hold_until: None,
            inst: self.inst.clone(),
        };
        tokio::spawn(hold.run(control, true));
        Ok(leadership)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backend_is_send_sync_and_cheap_to_clone() {
        fn assert_bounds<T: Send + Sync + Clone + 'static>() {}
        assert_bounds::<MemoryLockBackend>();
    }
}
