//! [`Attempts`]: the retry rules of a call, as a pure step function.
//!
//! The async driver (`call.rs`) sends, waits and sleeps. Before each attempt it asks
//! [`Attempts::before`] whether to send, given the circuit breaker's answer and the retry
//! budget ([`Before`]); after each attempt it reports what happened ([`Outcome`]), records its
//! [`Verdict`](Outcome::verdict) in the breaker, and is told what to do next ([`Next`]).
//! Nothing here waits or reads a clock: instants are passed in, so every rule is unit-tested
//! without a runtime.

use std::time::{Duration, Instant};

use kernel_errors::{Error, Kind};

use crate::breaker::Verdict;
use crate::codes;

/// How one attempt ended, when it did not end the call.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The send failed at once (no route, connection lost, a refusal).
    SendFailed(Error),
    /// No answer within the attempt's wait.
    TimedOut,
    /// An error reply arrived.
    ErrorReply(Error),
}

impl Outcome {
    /// What the outcome says about the endpoint's health, for its circuit breaker: no answer
    /// in time and an internal error are failures; any other error reply is an answer (a
    /// client fault, or a failure further down that the endpoint passes on); an overload or
    /// a request that was never delivered says nothing.
    pub(crate) fn verdict(&self) -> Verdict {
        match self {
            Outcome::TimedOut => Verdict::Failure,
            Outcome::ErrorReply(error) => match error.kind() {
                Kind::InternalServerError => Verdict::Failure,
                Kind::Overloaded => Verdict::Neutral,
                _ => Verdict::Success,
            },
            Outcome::SendFailed(_) => Verdict::Neutral,
        }
    }
}

/// What the retry budget is asked for before an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spend {
    /// The call's first send: it adds to the budget.
    Deposit,
    /// A retry: it takes one from the budget, if the budget has one.
    Withdraw,
}

/// Whether an attempt is sent.
#[derive(Debug)]
pub(crate) enum Before {
    /// Send it.
    Send,
    /// End the call with this error (the breaker is open); nothing is sent.
    Fail(Failure),
    /// The retry budget is empty: end the call as if the attempts had run out.
    OutOfBudget,
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Send again, after a backoff pause if `pause` (a failure that came back at once would
    /// only fail again at once).
    Retry {
        /// Whether to pause first.
        pause: bool,
    },
    /// End the call with this error.
    Fail(Failure),
}

/// An error that ends a call, and where it came from.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: Error,
    /// Whether a server answered with it (its code came off the wire).
    pub(crate) remote: bool,
}

/// The attempts of one call.
#[derive(Debug)]
pub(crate) struct Attempts {
    max: u32,
    attempt_timeout: Duration,
    used: u32,
    /// Attempts sent (an undeliverable one included, though it may use up no attempt).
    sent: u32,
    last: Option<Failure>,
    /// Since when every send has come back undelivered (no route, connection lost).
    undelivered_since: Option<Instant>,
}

impl Attempts {
    /// At most `max` attempts (at least one).
    pub(crate) fn new(max: u32, attempt_timeout: Duration) -> Self {
        Attempts {
            max: max.max(1),
            attempt_timeout,
            used: 0,
            sent: 0,
            last: None,
            undelivered_since: None,
        }
    }

    /// Starts an attempt; `false` once they are used up.
    pub(crate) fn start(&mut self) -> bool {
        if self.used < self.max {
            self.used += 1;
            true
        } else {
            false
        }
    }

    /// The number of the attempt under way (1 for the first; an undeliverable attempt given
    /// back does not count).
    pub(crate) fn number(&self) -> u32 {
        self.used
    }

    /// Whether the attempt under way is the last one: it waits for all that is left of the
    /// deadline, since the deadline sent with the request says how long the caller waits.
    pub(crate) fn is_last(&self) -> bool {
        self.used >= self.max
    }

    /// Whether a pause before the next attempt is worth it (there is a next attempt).
    pub(crate) fn more(&self) -> bool {
        self.used < self.max
    }

    /// The rules before an attempt. `admitted`: the circuit breaker lets it go. `budget` is
    /// asked only if it does: to take the call's first send as a deposit, or to cover a
    /// retry (its answer: whether it does).
    pub(crate) fn before(&mut self, admitted: bool, budget: impl FnOnce(Spend) -> bool) -> Before {
        if !admitted {
            let error = Error::circuit_broken(
                codes::CIRCUIT_BROKEN,
                "the circuit breaker for the endpoint is open; nothing was sent",
            );
            return Before::Fail(Failure {
                error,
                remote: false,
            });
        }
        let spend = if self.sent == 0 {
            Spend::Deposit
        } else {
            Spend::Withdraw
        };
        if !budget(spend) && spend == Spend::Withdraw {
            return Before::OutOfBudget;
        }
        self.sent += 1;
        Before::Send
    }

    /// The rules, applied to how the attempt started at `started` ended, at `now`.
    pub(crate) fn after(&mut self, outcome: Outcome, started: Instant, now: Instant) -> Next {
        match outcome {
            Outcome::TimedOut => {
                // Nothing more specific to report than the timeout itself.
                self.last = None;
                Next::Retry { pause: false }
            }
            // An error reply is the answer, except the server's own "overloaded": a NoRoute or
            // Timeout a handler passes on from further down must not be retried by every
            // caller up the chain.
            Outcome::ErrorReply(error) if error.kind() != Kind::Overloaded => Next::Fail(Failure {
                error,
                remote: true,
            }),
            Outcome::ErrorReply(error) => {
                self.last = Some(Failure {
                    error,
                    remote: true,
                });
                Next::Retry { pause: true }
            }
            Outcome::SendFailed(error) if !error.is_retryable() => Next::Fail(Failure {
                error,
                remote: false,
            }),
            Outcome::SendFailed(error) => {
                // A request that could not be delivered (the service's queue is gone while
                // its only instance restarts or reconnects, or our connection is) uses up no
                // attempt until it has been undeliverable for one attempt timeout: a brief gap
                // is ridden through, and a service nobody serves still fails well before a
                // long deadline.
                if matches!(error.kind(), Kind::NoRoute | Kind::ConnectionLost) {
                    let since = *self.undelivered_since.get_or_insert(started);
                    if now.saturating_duration_since(since) < self.attempt_timeout {
                        self.used -= 1;
                    }
                }
                self.last = Some(Failure {
                    error,
                    remote: false,
                });
                Next::Retry { pause: true }
            }
        }
    }

    /// The attempts or the deadline ran out: the last retryable error, if the last attempt
    /// ended with one (`None`: it timed out).
    pub(crate) fn exhausted(self) -> Option<Failure> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATTEMPT: Duration = Duration::from_secs(2);

    fn no_route() -> Error {
        Error::no_route("test.noroute", "nobody serves it")
    }

    #[test]
    fn a_timeout_is_retried_at_once_and_leaves_no_error() {
        let mut attempts = Attempts::new(2, ATTEMPT);
        let t = Instant::now();
        assert!(attempts.start());
        assert!(!attempts.is_last());
        assert!(matches!(
            attempts.after(Outcome::TimedOut, t, t),
            Next::Retry { pause: false }
        ));
        assert!(attempts.start());
        assert!(attempts.is_last());
        attempts.after(Outcome::TimedOut, t, t);
        assert!(!attempts.start());
        assert!(attempts.exhausted().is_none());
    }

    #[test]
    fn an_error_reply_is_the_answer_unless_overloaded() {
        let t = Instant::now();
        let mut attempts = Attempts::new(3, ATTEMPT);
        attempts.start();
        let not_found = Error::not_found("test.nf", "no such thing");
        match attempts.after(Outcome::ErrorReply(not_found), t, t) {
            Next::Fail(failure) => {
                assert!(failure.remote);
                assert_eq!(failure.error.kind(), Kind::NotFound);
            }
            other => panic!("{other:?}"),
        }

        let mut attempts = Attempts::new(1, ATTEMPT);
        attempts.start();
        let overloaded = Error::overloaded("test.busy", "try elsewhere");
        assert!(matches!(
            attempts.after(Outcome::ErrorReply(overloaded), t, t),
            Next::Retry { pause: true }
        ));
        assert!(!attempts.more());
        let last = attempts.exhausted().expect("the overload is reported");
        assert!(last.remote);
        assert_eq!(last.error.kind(), Kind::Overloaded);
    }

    #[test]
    fn an_undeliverable_request_uses_no_attempt_for_one_attempt_timeout() {
        let t = Instant::now();
        let mut attempts = Attempts::new(1, ATTEMPT);
        // Within the attempt timeout: the attempt is given back, again and again.
        for ms in [0, 500, 1999] {
            assert!(attempts.start());
            let now = t + Duration::from_millis(ms);
            assert!(matches!(
                attempts.after(Outcome::SendFailed(no_route()), now, now),
                Next::Retry { pause: true }
            ));
        }
        // Past it, the attempt counts.
        assert!(attempts.start());
        let now = t + ATTEMPT;
        attempts.after(Outcome::SendFailed(no_route()), now, now);
        assert!(!attempts.start());
        let last = attempts.exhausted().expect("the no-route is reported");
        assert!(!last.remote);
        assert_eq!(last.error.kind(), Kind::NoRoute);
    }

    /// A budget that records what it was asked and answers `covers` to withdrawals.
    fn budget(asked: &mut Vec<Spend>, covers: bool) -> impl FnOnce(Spend) -> bool + '_ {
        move |spend| {
            asked.push(spend);
            spend == Spend::Deposit || covers
        }
    }

    #[test]
    fn the_first_send_deposits_and_each_retry_withdraws() {
        let t = Instant::now();
        let mut asked = Vec::new();
        let mut attempts = Attempts::new(3, ATTEMPT);
        for _ in 0..3 {
            assert!(attempts.start());
            assert!(matches!(
                attempts.before(true, budget(&mut asked, true)),
                Before::Send
            ));
            attempts.after(Outcome::TimedOut, t, t);
        }
        assert_eq!(asked, [Spend::Deposit, Spend::Withdraw, Spend::Withdraw]);
    }

    #[test]
    fn an_empty_budget_ends_the_call_with_the_last_error() {
        let t = Instant::now();
        let mut asked = Vec::new();
        let mut attempts = Attempts::new(3, ATTEMPT);
        attempts.start();
        assert!(matches!(
            attempts.before(true, budget(&mut asked, false)),
            Before::Send
        ));
        let overloaded = Error::overloaded("test.busy", "try elsewhere");
        attempts.after(Outcome::ErrorReply(overloaded), t, t);
        assert!(attempts.start());
        assert!(matches!(
            attempts.before(true, budget(&mut asked, false)),
            Before::OutOfBudget
        ));
        let last = attempts.exhausted().expect("the overload is reported");
        assert_eq!(last.error.kind(), Kind::Overloaded);
        assert_eq!(asked, [Spend::Deposit, Spend::Withdraw]);
    }

    #[test]
    fn an_undeliverable_retry_still_withdraws() {
        let t = Instant::now();
        let mut asked = Vec::new();
        let mut attempts = Attempts::new(1, ATTEMPT);
        for _ in 0..2 {
            assert!(attempts.start());
            attempts.before(true, budget(&mut asked, true));
            attempts.after(Outcome::SendFailed(no_route()), t, t);
        }
        assert_eq!(asked, [Spend::Deposit, Spend::Withdraw]);
    }

    #[test]
    fn an_open_breaker_fails_the_call_and_leaves_the_budget_alone() {
        let mut asked = Vec::new();
        let mut attempts = Attempts::new(3, ATTEMPT);
        attempts.start();
        match attempts.before(false, budget(&mut asked, true)) {
            Before::Fail(failure) => {
                assert!(!failure.remote);
                assert_eq!(failure.error.kind(), Kind::CircuitBroken);
                assert_eq!(failure.error.code(), codes::CIRCUIT_BROKEN);
                assert!(!failure.error.trips_breaker());
                assert!(!failure.error.is_retryable());
            }
            other => panic!("{other:?}"),
        }
        assert!(asked.is_empty());
    }

    #[test]
    fn timeouts_and_internal_errors_are_failures_for_the_breaker() {
        let verdict = |outcome: Outcome| outcome.verdict();
        assert_eq!(verdict(Outcome::TimedOut), Verdict::Failure);
        let ise = Error::internal_server_error("x.bug", "no");
        assert_eq!(verdict(Outcome::ErrorReply(ise)), Verdict::Failure);
        for answer in [
            Error::not_found("x.missing", "no"),
            Error::bad_request("x.invalid", "no"),
            Error::forbidden("x.denied", "no"),
            // Passed on from further down: the endpoint itself answered.
            Error::timeout("x.down", "no"),
        ] {
            assert_eq!(verdict(Outcome::ErrorReply(answer)), Verdict::Success);
        }
        let busy = Error::overloaded("kernel.server.capacity", "full");
        assert_eq!(verdict(Outcome::ErrorReply(busy)), Verdict::Neutral);
        assert_eq!(verdict(Outcome::SendFailed(no_route())), Verdict::Neutral);
        let lost = Error::connection_lost("x.lost", "gone");
        assert_eq!(verdict(Outcome::SendFailed(lost)), Verdict::Neutral);
    }

    #[test]
    fn a_send_refused_for_good_ends_the_call() {
        let t = Instant::now();
        let mut attempts = Attempts::new(3, ATTEMPT);
        attempts.start();
        let refused = Error::bad_request("test.toolarge", "too large");
        match attempts.after(Outcome::SendFailed(refused), t, t) {
            Next::Fail(failure) => assert!(!failure.remote),
            other => panic!("{other:?}"),
        }
    }
}
