//! [`Breaker`]: one circuit breaker's state machine, with instants passed in.
//!
//! [`state`](Breaker::state) only reads. [`admit`](Breaker::admit) decides whether an attempt
//! may go and hands out a [`Permit`]; in the half-open state it hands out the single probe.
//! [`record`](Breaker::record) takes the attempt's [`Verdict`] with its permit. A permit from
//! before the last transition (an attempt sent while the breaker was closed, answered after
//! it opened) is stale and ignored, so only the probe decides how a half-open breaker goes.

use std::time::{Duration, Instant};

use super::{BreakerOptions, CircuitState};
use crate::window::Window;

/// What an attempt's outcome says about the endpoint's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// It answered (a reply, or an error reply that is not its own failure).
    Success,
    /// It failed: no answer in time, an internal error.
    Failure,
    /// Nothing either way (shed, undeliverable).
    Neutral,
}

/// Leave to send one attempt, to be handed back with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Permit {
    epoch: u64,
    probe: bool,
}

impl Permit {
    /// Whether this attempt is the half-open probe.
    pub(crate) fn is_probe(self) -> bool {
        self.probe
    }
}

/// A change of state worth logging and counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Closed → open, or a failed probe: open for `backoff`.
    Opened { backoff: Duration },
    /// The probe succeeded.
    Closed,
}

#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    successes: u32,
    failures: u32,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    /// Open until `until`, half-open from then; `probing` once the probe is out.
    Open {
        until: Instant,
        backoff: Duration,
        probing: bool,
    },
}

/// One breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    options: BreakerOptions,
    window: Window<Counts>,
    phase: Phase,
    /// Bumped on every transition: permits from an earlier epoch are stale.
    epoch: u64,
}

impl Breaker {
    /// A closed breaker with `options` (checked by the caller).
    pub(crate) fn new(options: BreakerOptions) -> Self {
        Breaker {
            options,
            window: Window::new(options.window),
            phase: Phase::Closed,
            epoch: 0,
        }
    }

    /// The options this breaker runs with.
    pub(crate) fn options(&self) -> &BreakerOptions {
        &self.options
    }

    /// Starts afresh (closed, nothing counted) with `options`; permits handed out before are
    /// stale.
    pub(crate) fn reset(&mut self, options: BreakerOptions) {
        let epoch = self.epoch + 1;
        *self = Breaker::new(options);
        self.epoch = epoch;
    }

    /// Where the breaker stands at `now`. Changes nothing.
    pub(crate) fn state(&self, now: Instant) -> CircuitState {
        match self.phase {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until, .. } if now < until => CircuitState::Open,
            Phase::Open { .. } => CircuitState::HalfOpen,
        }
    }

    /// Leave for one attempt at `now`: always while closed; while half-open, for the first
    /// caller only (the probe, until its outcome is recorded or it is
    /// [`abandon`](Self::abandon)ed); never while open.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<Permit> {
        let epoch = self.epoch;
        match &mut self.phase {
            Phase::Closed => Some(Permit {
                epoch,
                probe: false,
            }),
            Phase::Open { until, probing, .. } => {
                if now < *until || *probing {
                    None
                } else {
                    *probing = true;
                    Some(Permit { epoch, probe: true })
                }
            }
        }
    }

    /// Records how the attempt sent with `permit` went, at `now`.
    pub(crate) fn record(
        &mut self,
        permit: Permit,
        verdict: Verdict,
        now: Instant,
    ) -> Option<Transition> {
        if permit.epoch != self.epoch {
            return None;
        }
        match self.phase {
            Phase::Closed => {
                self.window.advance(now);
                let head = self.window.head_mut();
                match verdict {
                    Verdict::Success => head.successes = head.successes.saturating_add(1),
                    Verdict::Failure => head.failures = head.failures.saturating_add(1),
                    Verdict::Neutral => return None,
                }
                if verdict == Verdict::Failure && self.should_trip() {
                    let backoff = self.options.initial_backoff;
                    return Some(self.open(now, backoff));
                }
                None
            }
            Phase::Open { backoff, .. } if permit.probe => match verdict {
                Verdict::Success => {
                    self.window.clear();
                    self.phase = Phase::Closed;
                    self.epoch += 1;
                    Some(Transition::Closed)
                }
                Verdict::Failure => {
                    let next = grow(backoff, &self.options);
                    Some(self.open(now, next))
                }
                Verdict::Neutral => {
                    self.abandon(permit);
                    None
                }
            },
            // A permit of this epoch while open can only be the probe.
            Phase::Open { .. } => None,
        }
    }

    /// The attempt sent with `permit` ended with no outcome (the call was dropped, or ran out
    /// of time before sending): a probe is handed back so that another caller may probe.
    pub(crate) fn abandon(&mut self, permit: Permit) {
        if permit.probe
            && permit.epoch == self.epoch
            && let Phase::Open { probing, .. } = &mut self.phase
        {
            *probing = false;
        }
    }

    fn should_trip(&self) -> bool {
        let (successes, failures) = self.window.slots().iter().fold((0u64, 0u64), |(s, f), c| {
            (s + u64::from(c.successes), f + u64::from(c.failures))
        });
        let samples = successes + failures;
        samples >= u64::from(self.options.min_samples)
            && failures as f64 >= self.options.threshold * samples as f64
    }

    fn open(&mut self, now: Instant, backoff: Duration) -> Transition {
        self.phase = Phase::Open {
            until: now.checked_add(backoff).unwrap_or(now),
            backoff,
            probing: false,
        };
        self.epoch += 1;
        Transition::Opened { backoff }
    }
}

/// The back-off after `backoff`: multiplied, at most the max (also when the product overflows).
fn grow(backoff: Duration, options: &BreakerOptions) -> Duration {
    Duration::try_from_secs_f64(backoff.as_secs_f64() * options.multiplier)
        .map_or(options.max_backoff, |next| next.min(options.max_backoff))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Opens at 50 % over 4 samples in a 10 s window; back-off 100 ms ×2 up to 400 ms.
    fn options() -> BreakerOptions {
        BreakerOptions::new()
            .threshold(0.5)
            .min_samples(4)
            .backoff(100 * MS, 400 * MS)
    }

    /// Records `verdict` for one admitted attempt at `now`.
    fn outcome(breaker: &mut Breaker, verdict: Verdict, now: Instant) -> Option<Transition> {
        let permit = breaker.admit(now).expect("admitted");
        breaker.record(permit, verdict, now)
    }

    /// A breaker opened at `t` with a 100 ms back-off.
    fn opened(t: Instant) -> Breaker {
        let mut breaker = Breaker::new(options());
        for _ in 0..3 {
            assert_eq!(outcome(&mut breaker, Verdict::Failure, t), None);
        }
        assert_eq!(
            outcome(&mut breaker, Verdict::Failure, t),
            Some(Transition::Opened { backoff: 100 * MS })
        );
        breaker
    }

    #[test]
    fn opens_when_failures_reach_the_threshold_over_enough_samples() {
        let t = Instant::now();
        let mut breaker = Breaker::new(options());
        // 3 failures: 100 % but too few samples.
        for _ in 0..3 {
            assert_eq!(outcome(&mut breaker, Verdict::Failure, t), None);
        }
        assert_eq!(breaker.state(t), CircuitState::Closed);
        // Successes never trip it, whatever the rate.
        assert_eq!(outcome(&mut breaker, Verdict::Success, t), None);
        assert_eq!(outcome(&mut breaker, Verdict::Success, t), None);
        assert_eq!(breaker.state(t), CircuitState::Closed);
        // 4 failures of 6 ≥ 50 %: the failure trips it.
        assert!(matches!(
            outcome(&mut breaker, Verdict::Failure, t),
            Some(Transition::Opened { .. })
        ));
        assert_eq!(breaker.state(t), CircuitState::Open);
        assert_eq!(breaker.admit(t), None);
    }

    #[test]
    fn below_the_threshold_it_stays_closed() {
        let t = Instant::now();
        let mut breaker = Breaker::new(options().threshold(0.95));
        for i in 0..200 {
            let verdict = if i % 10 == 0 {
                Verdict::Success
            } else {
                Verdict::Failure
            };
            assert_eq!(outcome(&mut breaker, verdict, t), None, "at {i}");
        }
        assert_eq!(breaker.state(t), CircuitState::Closed);
    }

    #[test]
    fn neutral_outcomes_are_not_samples() {
        let t = Instant::now();
        let mut breaker = Breaker::new(options());
        for _ in 0..100 {
            assert_eq!(outcome(&mut breaker, Verdict::Neutral, t), None);
        }
        for _ in 0..3 {
            assert_eq!(outcome(&mut breaker, Verdict::Failure, t), None);
        }
        assert_eq!(breaker.state(t), CircuitState::Closed);
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let t = Instant::now();
        let mut breaker = Breaker::new(options());
        for _ in 0..3 {
            outcome(&mut breaker, Verdict::Failure, t);
        }
        // 10 s later the three have aged out: one more failure is 1 sample, not 4.
        let later = t + Duration::from_secs(10);
        assert_eq!(outcome(&mut breaker, Verdict::Failure, later), None);
        assert_eq!(breaker.state(later), CircuitState::Closed);
        // Within the window they add up.
        for _ in 0..2 {
            outcome(&mut breaker, Verdict::Failure, later + MS);
        }
        assert!(outcome(&mut breaker, Verdict::Failure, later + 2 * MS).is_some());
    }

    #[test]
    fn state_is_a_pure_query_and_admit_takes_the_single_probe() {
        let t = Instant::now();
        let mut breaker = opened(t);
        assert_eq!(breaker.state(t + 99 * MS), CircuitState::Open);
        assert_eq!(breaker.admit(t + 99 * MS), None);
        let half = t + 100 * MS;
        // Asking, however often, hands out nothing.
        for _ in 0..5 {
            assert_eq!(breaker.state(half), CircuitState::HalfOpen);
        }
        let probe = breaker.admit(half).expect("the probe");
        assert!(probe.is_probe());
        // Exactly one probe: everyone else is refused while it is out.
        assert_eq!(breaker.admit(half), None);
        assert_eq!(breaker.admit(half + Duration::from_secs(3600)), None);
        assert_eq!(breaker.state(half), CircuitState::HalfOpen);
    }

    #[test]
    fn a_successful_probe_closes_it_and_resets_the_backoff() {
        let t = Instant::now();
        let mut breaker = opened(t);
        let half = t + 100 * MS;
        let probe = breaker.admit(half).expect("the probe");
        assert_eq!(
            breaker.record(probe, Verdict::Success, half),
            Some(Transition::Closed)
        );
        assert_eq!(breaker.state(half), CircuitState::Closed);
        assert!(!breaker.admit(half).expect("closed").is_probe());
        // The window was cleared: the old failures do not re-open it at once.
        assert_eq!(outcome(&mut breaker, Verdict::Failure, half), None);
        // Tripping again starts from the initial back-off.
        for _ in 0..2 {
            outcome(&mut breaker, Verdict::Failure, half);
        }
        assert_eq!(
            outcome(&mut breaker, Verdict::Failure, half),
            Some(Transition::Opened { backoff: 100 * MS })
        );
    }

    #[test]
    fn a_failed_probe_reopens_it_with_the_backoff_multiplied_up_to_the_max() {
        let t = Instant::now();
        let mut breaker = opened(t);
        let mut now = t;
        // Each probe comes when the previous back-off has passed.
        for (previous, expected) in [(100, 200), (200, 400), (400, 400)] {
            now += previous * MS;
            let probe = breaker.admit(now).expect("the probe");
            assert_eq!(
                breaker.record(probe, Verdict::Failure, now),
                Some(Transition::Opened {
                    backoff: expected * MS
                })
            );
            assert_eq!(breaker.state(now + (expected - 1) * MS), CircuitState::Open);
            assert_eq!(breaker.state(now + expected * MS), CircuitState::HalfOpen);
        }
    }

    #[test]
    fn a_backoff_that_would_overflow_is_the_max() {
        let options = options().multiplier(1e300);
        assert_eq!(grow(Duration::from_secs(1), &options), options.max_backoff);
    }

    #[test]
    fn a_probe_without_an_outcome_is_handed_back() {
        let t = Instant::now();
        let mut breaker = opened(t);
        let half = t + 100 * MS;
        let probe = breaker.admit(half).expect("the probe");
        breaker.abandon(probe);
        let again = breaker.admit(half).expect("a new probe");
        // A neutral outcome (overloaded, undeliverable) also hands it back.
        assert_eq!(breaker.record(again, Verdict::Neutral, half), None);
        assert!(breaker.admit(half).is_some());
    }

    #[test]
    fn outcomes_of_attempts_sent_before_a_transition_are_ignored() {
        let t = Instant::now();
        let mut breaker = Breaker::new(options());
        let in_flight = breaker.admit(t).expect("closed");
        for _ in 0..4 {
            outcome(&mut breaker, Verdict::Failure, t);
        }
        assert_eq!(breaker.state(t), CircuitState::Open);
        // A late success of an attempt sent while closed neither closes it nor is a probe.
        assert_eq!(breaker.record(in_flight, Verdict::Success, t), None);
        assert_eq!(breaker.state(t), CircuitState::Open);
        // The same after a reset.
        let half = t + 100 * MS;
        let probe = breaker.admit(half).expect("the probe");
        breaker.reset(options());
        assert_eq!(breaker.record(probe, Verdict::Failure, half), None);
        assert_eq!(breaker.state(half), CircuitState::Closed);
    }
}
