//! Circuit breakers, one per (service, endpoint): [`BreakerOptions`], [`BreakerSettings`],
//! [`CircuitState`].
//!
//! A breaker watches the outcomes of a client's attempts on one endpoint over a rolling
//! window (10 s by default). When at least `min_samples` outcomes are in the window and the
//! share of failures reaches `threshold` (100 and 0.95 by default, H2's values), it **opens**:
//! calls to the endpoint fail at once with `CircuitBroken` (`kernel.client.circuitbroken`)
//! and nothing is sent. After a back-off (100 ms, doubling on each failed probe up to 60 s) it
//! is **half-open**: exactly one attempt, the probe, goes through. A probe that succeeds
//! **closes** it (and resets the back-off); one that fails re-opens it for the next back-off.
//!
//! ```text
//!            failures ≥ threshold over ≥ min_samples
//!   Closed ──────────────────────────────────────────► Open (back-off b)
//!     ▲                                                  │ b elapsed
//!     │ probe succeeds                                   ▼
//!     └──────────────────────────────────────────── HalfOpen ── probe fails ──► Open (b × multiplier)
//! ```
//!
//! What counts (decided in `attempts.rs`, from [`Kind`](kernel_errors::Kind)):
//! - a **failure**: an attempt that got no reply in time, an `InternalServerError` reply;
//! - a **success**: a reply, any other error reply (a client fault such as `NotFound` says
//!   nothing about the endpoint's health);
//! - **neither**: an `Overloaded` reply (the server protecting itself), a request that could
//!   not be delivered (`NoRoute`, `ConnectionLost`), the breaker's own rejections.
//!
//! The design and the differences from H2 are in [`docs/resilience.md`](https://github.com/kernel-platform/kernel/blob/main/docs/resilience.md).

mod machine;
mod registry;

use std::time::Duration;

pub(crate) use machine::Verdict;
pub(crate) use registry::Breakers;
pub use registry::{BreakerSettings, MAX_CIRCUITS};

use crate::BuildError;

/// Share of failures in the window at which a breaker opens (H2: `threshold`).
pub const DEFAULT_BREAKER_THRESHOLD: f64 = 0.95;
/// Outcomes the window must hold before a breaker may open (H2: `minSamples`).
pub const DEFAULT_BREAKER_MIN_SAMPLES: u32 = 100;
/// The span of the rolling window, in 10 slots (H2: 10 s in 10 buckets).
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(10);
/// How long a breaker stays open the first time (H2: `initialIntervalMs`).
pub const DEFAULT_BREAKER_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// The longest a breaker stays open before its next probe (H2: `maxIntervalMs`).
pub const DEFAULT_BREAKER_MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How much the back-off grows after each failed probe (H2: `multiplier`).
pub const DEFAULT_BREAKER_MULTIPLIER: f64 = 2.0;

/// The rules of one (service, endpoint)'s breaker. Defaults are H2's.
///
/// Set them for every endpoint with [`ClientBuilder::breaker`](crate::ClientBuilder::breaker),
/// for one with [`ClientBuilder::breaker_for`](crate::ClientBuilder::breaker_for), and at run
/// time with [`Client::set_breaker_settings`](crate::Client::set_breaker_settings).
///
/// ```
/// use std::time::Duration;
/// use kernel_client::BreakerOptions;
///
/// let touchy = BreakerOptions::new()
///     .threshold(0.5)
///     .min_samples(20)
///     .window(Duration::from_secs(5))
///     .backoff(Duration::from_millis(500), Duration::from_secs(30));
/// assert!(touchy.is_enabled());
/// assert!(!BreakerOptions::disabled().is_enabled());
/// assert_eq!(BreakerOptions::default(), BreakerOptions::new());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerOptions {
    pub(crate) enabled: bool,
    pub(crate) threshold: f64,
    pub(crate) min_samples: u32,
    pub(crate) window: Duration,
    pub(crate) initial_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) multiplier: f64,
}

impl Default for BreakerOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl BreakerOptions {
    /// H2's defaults: open at 95 % failures over at least 100 outcomes in 10 s; back off
    /// 100 ms, doubling to 60 s.
    pub const fn new() -> Self {
        BreakerOptions {
            enabled: true,
            threshold: DEFAULT_BREAKER_THRESHOLD,
            min_samples: DEFAULT_BREAKER_MIN_SAMPLES,
            window: DEFAULT_BREAKER_WINDOW,
            initial_backoff: DEFAULT_BREAKER_INITIAL_BACKOFF,
            max_backoff: DEFAULT_BREAKER_MAX_BACKOFF,
            multiplier: DEFAULT_BREAKER_MULTIPLIER,
        }
    }

    /// No breaker: calls are never refused, and nothing is tracked (H2: `disabled: true`).
    pub const fn disabled() -> Self {
        let mut options = Self::new();
        options.enabled = false;
        options
    }

    /// Whether these options enable a breaker.
    pub const fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The share of failures (0 < t ≤ 1) at which the breaker opens; default
    /// [`DEFAULT_BREAKER_THRESHOLD`].
    pub const fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// How many outcomes (failures and successes) the window must hold before the breaker
    /// may open (at least 1); default [`DEFAULT_BREAKER_MIN_SAMPLES`].
    pub const fn min_samples(mut self, samples: u32) -> Self {
        self.min_samples = samples;
        self
    }

    /// The span of the rolling window; default [`DEFAULT_BREAKER_WINDOW`].
    pub const fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How long the breaker stays open the first time (`initial`) and at most (`max`);
    /// defaults [`DEFAULT_BREAKER_INITIAL_BACKOFF`], [`DEFAULT_BREAKER_MAX_BACKOFF`].
    pub const fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max;
        self
    }

    /// How much the back-off grows after each failed probe (≥ 1); default
    /// [`DEFAULT_BREAKER_MULTIPLIER`].
    pub const fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`BuildError::OutOfRange`] naming the first value that is not.
    pub fn check(&self) -> Result<(), BuildError> {
        let out_of_range = |field, expected| Err(BuildError::OutOfRange { field, expected });
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return out_of_range("breaker.threshold", "in (0, 1]");
        }
        if self.min_samples == 0 {
            return out_of_range("breaker.min_samples", "at least 1");
        }
        if self.window.is_zero() {
            return out_of_range("breaker.window", "greater than zero");
        }
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return out_of_range("breaker.backoff", "greater than zero, initial at most max");
        }
        if !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return out_of_range("breaker.multiplier", "finite and at least 1");
        }
        Ok(())
    }
}

/// Where a breaker stands. Reading it ([`Client::circuit_state`](crate::Client::circuit_state))
/// changes nothing: in particular, it never takes the half-open probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CircuitState {
    /// Calls go through and their outcomes are counted.
    Closed,
    /// Calls fail at once with `CircuitBroken`; nothing is sent.
    Open,
    /// The back-off has passed: one call (the probe) may go through, or has and is awaited.
    HalfOpen,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_h2s_and_valid() {
        let options = BreakerOptions::new();
        assert_eq!(options.threshold, 0.95);
        assert_eq!(options.min_samples, 100);
        assert_eq!(options.window, Duration::from_secs(10));
        assert_eq!(options.initial_backoff, Duration::from_millis(100));
        assert_eq!(options.max_backoff, Duration::from_secs(60));
        assert_eq!(options.multiplier, 2.0);
        assert_eq!(options.check(), Ok(()));
    }

    #[test]
    fn check_names_the_value_out_of_range() {
        let field = |options: BreakerOptions| match options.check() {
            Err(BuildError::OutOfRange { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let o = BreakerOptions::new();
        assert_eq!(field(o.threshold(0.0)), "breaker.threshold");
        assert_eq!(field(o.threshold(1.5)), "breaker.threshold");
        assert_eq!(field(o.threshold(f64::NAN)), "breaker.threshold");
        assert_eq!(field(o.min_samples(0)), "breaker.min_samples");
        assert_eq!(field(o.window(Duration::ZERO)), "breaker.window");
        let (short, long) = (Duration::from_millis(1), Duration::from_secs(1));
        assert_eq!(field(o.backoff(Duration::ZERO, long)), "breaker.backoff");
        assert_eq!(field(o.backoff(long, short)), "breaker.backoff");
        assert_eq!(field(o.multiplier(0.5)), "breaker.multiplier");
        assert_eq!(field(o.multiplier(f64::INFINITY)), "breaker.multiplier");
        assert_eq!(o.threshold(1.0).min_samples(1).check(), Ok(()));
    }
}
