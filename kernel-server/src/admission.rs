//! [`Admission`]: a service's capacity, shared fairly between its callers.
//!
//! At most `capacity` requests run at once. While there is room, a request runs at once, so a
//! caller alone may use all of it (work-conserving). When it is full, a request waits for a
//! slot, at most its endpoint's declared mean latency, and each freed slot goes to the waiting
//! caller that holds the fewest slots (among equals, the one served least recently, then the
//! oldest request): under
//! contention every caller converges to a fair share, and a caller that floods waits behind
//! the quiet ones. A request that waits out its time is answered `Overloaded`
//! (`kernel.server.capacity`), which clients retry elsewhere and breakers ignore.
//!
//! Callers are keyed by [`CallerMetrics`]: the first [`MAX_CALLER_METRICS`] distinct `from`
//! values seen each keep a key of their own, every later one shares `other` (empty `from`:
//! `unknown`). A flood that rotates through invented `from` values so competes as one caller.
//! The map holds only keys with a request running or waiting.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use foldhash::HashMap;
use tokio::sync::oneshot;

/// The most callers that get a key of their own, for admission and for metrics
/// (`server.tokens.<caller>`); the rest share `other`.
pub const MAX_CALLER_METRICS: usize = 32;

/// Metric names for callers: the first [`MAX_CALLER_METRICS`] distinct callers seen keep a
/// sanitised name of their own, every later one is `other`, so spoofed `from` values cannot
/// grow the set of metric names.
#[derive(Debug, Default)]
pub(crate) struct CallerMetrics(FirstSeen<Arc<CallerKey>>);

/// The first distinct keys seen, up to a bound, each with a value made for it, and one value
/// made once and shared by every key after them: how names that come from the wire stay a
/// bounded set.
#[derive(Debug)]
struct FirstSeen<V>(Mutex<HashMap<String, V>>);

impl<V> Default for FirstSeen<V> {
    fn default() -> Self {
        FirstSeen(Mutex::default())
    }
}

impl<V: Clone> FirstSeen<V> {
    /// What `key` is known by: `make(Some(key))`, made on its first sight, for the first
    /// `max` distinct keys; `make(None)`, made once, for every later one.
    fn get(&self, key: &str, max: usize, make: impl FnOnce(Option<&str>) -> V) -> V {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(known) = seen.get(key) {
            return known.clone();
        }
        if seen.len() >= max {
            // The shared value is kept under a key no name from the wire is expected to be.
            return seen
                .entry(String::from("\0other"))
                .or_insert_with(|| make(None))
                .clone();
        }
        let value = make(Some(key));
        seen.insert(key.to_owned(), value.clone());
        value
    }

    /// How many values are kept: the keys named, and the shared one once made.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A caller as admission and metrics know it, with its gauge's name made once, not per request.
#[derive(Debug)]
pub(crate) struct CallerKey {
    /// The caller's key: its sanitised name, or `other`.
    pub(crate) name: Arc<str>,
    /// `server.tokens.<name>`.
    pub(crate) tokens_gauge: String,
}

impl CallerKey {
    fn new(name: &str) -> Arc<Self> {
        Arc::new(CallerKey {
            name: Arc::from(name),
            tokens_gauge: format!("server.tokens.{name}"),
        })
    }
}

impl CallerMetrics {
    pub(crate) fn caller(&self, caller: &str) -> Arc<CallerKey> {
        self.0
            .get(caller, MAX_CALLER_METRICS, |caller| match caller {
                Some(caller) => CallerKey::new(&sanitise(caller)),
                None => CallerKey::new("other"),
            })
    }

    #[cfg(test)]
    pub(crate) fn name(&self, caller: &str) -> Arc<str> {
        Arc::clone(&self.caller(caller).name)
    }
}

/// The most error codes that get a counter of their own (`server.error.<code>`); the rest
/// count as `server.error.other`. A handler may pass on an error a downstream service sent,
/// code and all, so the codes are not all this program's.
pub const MAX_ERROR_METRICS: usize = 64;

/// Counter names for error codes: the first [`MAX_ERROR_METRICS`] distinct codes answered keep
/// `server.error.<code>` (ASCII letters, digits, `.`, `_`, `-`; at most 64), every later one
/// counts as `server.error.other`, so codes from the wire cannot grow the set of metric
/// names. Each name is made once.
#[derive(Debug, Default)]
pub(crate) struct ErrorMetrics(FirstSeen<Arc<str>>);

impl ErrorMetrics {
    /// The counter that an error with `code` counts on.
    pub(crate) fn counter(&self, code: &str) -> Arc<str> {
        self.0.get(code, MAX_ERROR_METRICS, |code| {
            let Some(code) = code else {
                return Arc::from("server.error.other");
            };
            // A code as a metric name keeps its case (codes are H2's `com.example.badThing`),
            // and loses what a metric name cannot hold.
            let kept: String = code
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                .take(64)
                .collect();
            if kept.is_empty() {
                Arc::from("server.error.unknown")
            } else {
                Arc::from(format!("server.error.{kept}"))
            }
        })
    }
}

/// A caller's name as a metric name: lowercase ASCII letters, digits, `.`, `_`, `-`, at most
/// 64 characters; `unknown` if nothing is left.
fn sanitise(caller: &str) -> String {
    let name: String = caller
        .chars()
        .filter_map(|c| {
            let c = c.to_ascii_lowercase();
            (c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
                .then_some(c)
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "unknown".to_owned()
    } else {
        name
    }
}

/// The capacity of one service instance, shared between its callers.
#[derive(Debug)]
pub(crate) struct Admission {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    running: usize,
    callers: HashMap<Arc<str>, Caller>,
    /// Orders waiters across callers.
    next_ticket: u64,
    /// When each caller was last granted a slot (a grant count), kept after its requests are
    /// done so that taking turns survives gaps; cleared when it grows past
    /// [`MAX_REMEMBERED`].
    last_grant: HashMap<Arc<str>, u64>,
    grants: u64,
}

/// The most callers whose last grant is remembered.
const MAX_REMEMBERED: usize = 1024;

#[derive(Debug, Default)]
struct Caller {
    running: usize,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// A slot: the request runs while it is held. Dropping it frees the slot.
#[derive(Debug)]
pub(crate) struct Permit {
    admission: Arc<Admission>,
    caller: Arc<str>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(&self.caller);
    }
}

impl Admission {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Admission {
            capacity: capacity.max(1),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each critical section leaves the state consistent before anything can panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requests running now.
    pub(crate) fn running(&self) -> usize {
        self.lock().running
    }

    /// Slots `caller` could still take before reaching the whole capacity.
    pub(crate) fn slots_left(&self, caller: &str) -> usize {
        let state = self.lock();
        let held = state.callers.get(caller).map_or(0, |c| c.running);
        self.capacity.saturating_sub(held)
    }

    /// A slot for `caller`, waiting at most `wait`; `None` if none came in time.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        caller: Arc<str>,
        wait: Duration,
    ) -> Option<Permit> {
        let (ticket, granted) = {
            let mut state = self.lock();
            let key = Arc::clone(&caller);
            if state.running < self.capacity {
                state.running += 1;
                state.callers.entry(key.clone()).or_default().running += 1;
                state.grants += 1;
                let grant_no = state.grants;
                if state.last_grant.len() >= MAX_REMEMBERED {
                    state.last_grant.clear();
                }
                state.last_grant.insert(key.clone(), grant_no);
                return Some(self.permit(key));
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            let (grant, granted) = oneshot::channel();
            state
                .callers
                .entry(key)
                .or_default()
                .waiting
                .push_back((ticket, grant));
            (ticket, granted)
        };
        let mut granted = granted;
        if tokio::time::timeout(wait, &mut granted).await.is_ok() {
            return Some(self.permit(caller));
        }
        // Timed out: leave the queue, unless a slot was granted meanwhile (under the lock,
        // so it is in the channel by now).
        let mut state = self.lock();
        if let Some(entry) = state.callers.get_mut(&*caller)
            && let Some(at) = entry.waiting.iter().position(|(t, _)| *t == ticket)
        {
            entry.waiting.remove(at);
            if entry.running == 0 && entry.waiting.is_empty() {
                state.callers.remove(&*caller);
            }
            return None;
        }
        drop(state);
        granted.try_recv().ok().map(|()| self.permit(caller))
    }

    fn permit(self: &Arc<Self>, caller: Arc<str>) -> Permit {
        Permit {
            admission: Arc::clone(self),
            caller,
        }
    }

    /// Frees `caller`'s slot and hands it to the waiting caller holding the fewest.
    fn release(&self, caller: &str) {
        let mut state = self.lock();
        state.running = state.running.saturating_sub(1);
        if let Some(entry) = state.callers.get_mut(caller) {
            entry.running = entry.running.saturating_sub(1);
            if entry.running == 0 && entry.waiting.is_empty() {
                state.callers.remove(caller);
            }
        }
        while state.running < self.capacity {
            // The waiting caller holding the fewest slots; among equals, the one served least
            // recently (callers take turns; one never served counts as served just now, so
            // new names cannot jump the queue), then the oldest request.
            let now = state.grants + 1;
            let next = state
                .callers
                .iter()
                .filter_map(|(key, c)| {
                    let (ticket, _) = c.waiting.front()?;
                    let served = state.last_grant.get(key).copied().unwrap_or(now);
                    Some((c.running, served, *ticket, key))
                })
                .min()
                .map(|(_, _, _, key)| key.clone());
            let Some(key) = next else {
                break;
            };
            let Some(entry) = state.callers.get_mut(&key) else {
                break;
            };
            let Some((_, grant)) = entry.waiting.pop_front() else {
                break;
            };
            // Counted before it is sent: the waiter builds its permit from the grant.
            entry.running += 1;
            state.running += 1;
            state.grants += 1;
            let grant_no = state.grants;
            if state.last_grant.len() >= MAX_REMEMBERED {
                state.last_grant.clear();
            }
            state.last_grant.insert(key.clone(), grant_no);
            if grant.send(()).is_err() {
                // The waiter is gone (its task ended): undo and try the next one.
                state.running -= 1;
                if let Some(entry) = state.callers.get_mut(&key) {
                    entry.running -= 1;
                    if entry.running == 0 && entry.waiting.is_empty() {
                        state.callers.remove(&key);
                    }
                }
            }
        }
    }

    /// Callers with a request running or waiting (for tests of the bound).
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().callers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_name_counters_up_to_a_bound_then_share_other() {
        let errors = ErrorMetrics::default();
        let unknown = errors.counter("kernel.server.unknownendpoint");
        assert_eq!(&*unknown, "server.error.kernel.server.unknownendpoint");
        assert!(Arc::ptr_eq(
            &unknown,
            &errors.counter("kernel.server.unknownendpoint")
        ));
        assert_eq!(
            &*errors.counter("com.example.bad Thing!\n"),
            "server.error.com.example.badThing"
        );
        assert_eq!(&*errors.counter("\u{1b}"), "server.error.unknown");
        for n in 0..2 * MAX_ERROR_METRICS {
            errors.counter(&format!("flood.{n}"));
        }
        assert_eq!(&*errors.counter("one.more"), "server.error.other");
        assert_eq!(errors.0.len(), MAX_ERROR_METRICS + 1);
        // The codes named first keep their names.
        assert_eq!(&*errors.counter("kernel.server.unknownendpoint"), &*unknown);
    }

    const WAIT: Duration = Duration::from_millis(100);

    #[tokio::test]
    async fn a_caller_alone_uses_the_whole_capacity() {
        let admission = Admission::new(3);
        let permits: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| admission.admit("flood".into(), WAIT)))
                .await;
        assert!(permits.iter().all(Option::is_some));
        assert_eq!(admission.running(), 3);
        assert_eq!(admission.slots_left("flood"), 0);
        drop(permits);
        assert_eq!(admission.running(), 0);
        assert_eq!(admission.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_service_answers_overloaded_after_the_wait() {
        let admission = Admission::new(1);
        let _held = admission.admit("a".into(), WAIT).await.expect("room");
        let started = tokio::time::Instant::now();
        assert!(admission.admit("a".into(), WAIT).await.is_none());
        assert_eq!(started.elapsed(), WAIT);
        assert_eq!(admission.tracked(), 1, "the waiter left the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_freed_slot_goes_to_the_caller_holding_fewest() {
        let admission = Admission::new(2);
        let flood_1 = admission.admit("flood".into(), WAIT).await.expect("room");
        let flood_2 = admission.admit("flood".into(), WAIT).await.expect("room");
        // The flood queues first, the trickle after: the trickle still gets the next slot.
        let queued_flood = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move {
                admission
                    .admit("flood".into(), Duration::from_secs(1))
                    .await
            }
        });
        tokio::task::yield_now().await;
        let trickle = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move {
                admission
                    .admit("trickle".into(), Duration::from_secs(1))
                    .await
            }
        });
        tokio::task::yield_now().await;
        drop(flood_1);
        let trickle = trickle.await.expect("no panic").expect("the slot");
        assert!(!queued_flood.is_finished());
        drop(flood_2);
        let flood = queued_flood
            .await
            .expect("no panic")
            .expect("the next slot");
        drop((trickle, flood));
        assert_eq!(admission.running(), 0);
        assert_eq!(admission.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn among_equals_the_caller_served_least_recently_goes_first() {
        let admission = Admission::new(1);
        // `quiet` was served once, long ago; then `busy` took the slot.
        drop(admission.admit("quiet".into(), WAIT).await.expect("room"));
        let held = admission.admit("busy".into(), WAIT).await.expect("room");
        // `busy` queues first, `quiet` after; both hold no slot when it frees.
        let busy = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move {
                admission
                    .admit("busy-too".into(), Duration::from_secs(1))
                    .await
            }
        });
        tokio::task::yield_now().await;
        let quiet = tokio::spawn({
            let admission = Arc::clone(&admission);
            async move {
                admission
                    .admit("quiet".into(), Duration::from_secs(1))
                    .await
            }
        });
        tokio::task::yield_now().await;
        drop(held);
        let quiet = quiet.await.expect("no panic").expect("its turn");
        assert!(
            !busy.is_finished(),
            "a name never served does not jump the queue"
        );
        drop(quiet);
        drop(busy.await.expect("no panic").expect("the next slot"));
    }

    #[test]
    fn caller_metric_names_are_bounded_and_sanitised() {
        let metrics = CallerMetrics::default();
        assert_eq!(&*metrics.name("com.Example.Web!"), "com.example.web");
        assert_eq!(&*metrics.name(""), "unknown");
        for n in 0..100 {
            metrics.name(&format!("spoof-{n}"));
        }
        assert_eq!(&*metrics.name("late-comer"), "other");
        assert_eq!(&*metrics.name("com.Example.Web!"), "com.example.web");
    }

    #[tokio::test(start_paused = true)]
    async fn spoofed_callers_leave_no_trace() {
        let admission = Admission::new(1);
        let held = admission.admit("real".into(), WAIT).await.expect("room");
        let spoofed = futures_util::future::join_all((0..1000).map(|n| {
            let admission = Arc::clone(&admission);
            async move { admission.admit(format!("spoof-{n}").into(), WAIT).await }
        }))
        .await;
        assert!(spoofed.iter().all(Option::is_none));
        assert_eq!(admission.tracked(), 1);
        drop(held);
        assert_eq!(admission.tracked(), 0);
    }
}
