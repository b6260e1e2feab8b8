//! [`AttemptPolicy`] and the per-username limiter of sign-in attempts.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many failed sign-ins a username may have before it is locked out, and for how long.
///
/// Every attempt counts as a failure when it is admitted (so parallel guesses cannot slip
/// past the limit while their hashes are being checked); a successful sign-in forgets the
/// username's failures. Once `max_failures` attempts fall within `window`, the next attempt
/// locks the username for `lockout`: every attempt in that time, even with the right
/// password, is refused with `kernel.login.auth.toomanyattempts`, without checking the
/// password. Unknown usernames are counted the same way, so the answers do not tell which
/// names exist.
///
/// The price of locking by username: anyone can lock a user out for `lockout` by guessing
/// wrong passwords for them. That is the usual trade; an operator who sees it abused shortens
/// `lockout` rather than raising `max_failures`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptPolicy {
    /// Failed attempts allowed within `window`; the next one locks the username.
    pub max_failures: usize,
    /// How far back failures count.
    pub window: Duration,
    /// How long a locked username stays locked.
    pub lockout: Duration,
    /// How many usernames are tracked at most (the limiter's memory bound). Beyond it, the
    /// least useful entries are dropped first (moka's TinyLFU): a flood of made-up names
    /// does not push out the names under sustained attack.
    pub max_tracked: u64,
}

impl AttemptPolicy {
    /// Failures allowed before a lockout: 5.
    pub const DEFAULT_MAX_FAILURES: usize = 5;
    /// How far back failures count: 5 minutes.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(5 * 60);
    /// How long a lockout lasts: 5 minutes.
    pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(5 * 60);
    /// Usernames tracked at most: 100 000 (a few MiB).
    pub const DEFAULT_MAX_TRACKED: u64 = 100_000;
}

impl Default for AttemptPolicy {
    fn default() -> Self {
        AttemptPolicy {
            max_failures: Self::DEFAULT_MAX_FAILURES,
            window: Self::DEFAULT_WINDOW,
            lockout: Self::DEFAULT_LOCKOUT,
            max_tracked: Self::DEFAULT_MAX_TRACKED,
        }
    }
}

/// One username's recent attempts: the pure step, unit-tested without a clock.
#[derive(Debug, Default)]
struct Attempts {
    /// When recent attempts were admitted (each counted as a failure until it succeeds).
    failures: VecDeque<Instant>,
    /// Locked until then.
    locked_until: Option<Instant>,
}

impl Attempts {
    /// Admits an attempt at `now` (counting it as a failure), or says until when the
    /// username is locked.
    fn admit(&mut self, now: Instant, policy: &AttemptPolicy) -> Result<(), Instant> {
        if let Some(until) = self.locked_until {
            if now < until {
                return Err(until);
            }
            self.locked_until = None;
            self.failures.clear();
        }
        while self
            .failures
            .front()
            .is_some_and(|&at| now.saturating_duration_since(at) >= policy.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= policy.max_failures {
            let until = now + policy.lockout;
            self.locked_until = Some(until);
            self.failures.clear();
            return Err(until);
        }
        self.failures.push_back(now);
        Ok(())
    }

    /// The attempt succeeded: forget the failures.
    fn succeeded(&mut self) {
        self.failures.clear();
    }
}

/// Failed sign-ins per username, bounded in memory.
#[derive(Clone, Debug)]
pub(crate) struct AttemptLimiter {
    policy: AttemptPolicy,
    entries: moka::sync::Cache<String, Arc<Mutex<Attempts>>>,
}

impl AttemptLimiter {
    pub(crate) fn new(policy: AttemptPolicy) -> Self {
        let entries = moka::sync::Cache::builder()
            .max_capacity(policy.max_tracked)
            // An entry untouched for this long holds no failure in the window and no lockout.
            .time_to_idle(policy.window.max(policy.lockout))
            .build();
        AttemptLimiter { policy, entries }
    }

    /// Admits an attempt for `username`, or says until when it is locked.
    pub(crate) fn admit(&self, username: &str) -> Result<(), Instant> {
        let entry = self.entries.get_with_by_ref(username, Arc::default);
        let mut attempts = entry.lock().unwrap_or_else(PoisonError::into_inner);
        attempts.admit(Instant::now(), &self.policy)
    }

    /// `username` signed in: forget its failures.
    pub(crate) fn succeeded(&self, username: &str) {
        if let Some(entry) = self.entries.get(username) {
            entry
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .succeeded();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AttemptPolicy {
        AttemptPolicy {
            max_failures: 3,
            window: Duration::from_secs(60),
            lockout: Duration::from_secs(300),
            max_tracked: 10,
        }
    }

    #[test]
    fn the_attempt_after_max_failures_locks_for_the_lockout() {
        let (policy, start) = (policy(), Instant::now());
        let mut attempts = Attempts::default();
        for second in 0..3 {
            assert_eq!(
                attempts.admit(start + Duration::from_secs(second), &policy),
                Ok(())
            );
        }
        let locked_at = start + Duration::from_secs(3);
        let until = locked_at + policy.lockout;
        assert_eq!(attempts.admit(locked_at, &policy), Err(until));
        assert_eq!(
            attempts.admit(until - Duration::from_secs(1), &policy),
            Err(until),
            "still locked, and attempts do not extend the lockout"
        );
        assert_eq!(attempts.admit(until, &policy), Ok(()), "the lockout ended");
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let (policy, start) = (policy(), Instant::now());
        let mut attempts = Attempts::default();
        // By 61 s the failures at 0 and 1 s have left the window.
        for second in [0, 1, 61, 62, 63] {
            assert_eq!(
                attempts.admit(start + Duration::from_secs(second), &policy),
                Ok(()),
                "at {second} s"
            );
        }
        assert!(
            attempts
                .admit(start + Duration::from_secs(63), &policy)
                .is_err()
        );
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let (policy, start) = (policy(), Instant::now());
        let mut attempts = Attempts::default();
        for round in 0..3 {
            for second in 0..3 {
                let at = start + Duration::from_secs(round * 10 + second);
                assert_eq!(attempts.admit(at, &policy), Ok(()));
            }
            attempts.succeeded();
        }
    }

    #[test]
    fn the_limiter_keeps_usernames_apart() {
        let limiter = AttemptLimiter::new(policy());
        for _ in 0..3 {
            limiter.admit("ada").unwrap();
        }
        assert!(limiter.admit("ada").is_err());
        assert_eq!(limiter.admit("grace"), Ok(()));
        limiter.succeeded("ada");
        assert!(
            limiter.admit("ada").is_err(),
            "a success cannot end a lockout"
        );
    }
}
