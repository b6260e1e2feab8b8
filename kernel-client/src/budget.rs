//! [`RetryBudget`]: how many retries all calls of a client may make, together.
//!
//! Tower's `TpsBudget` semantics (and Finagle's `RetryBudget`): every call's first attempt
//! deposits `ratio` of a retry, every retry withdraws one, and a retry goes only if the
//! deposits of the last `window`, plus a floor of `floor` retries per second of window, cover
//! it. With the defaults, over any 10 s, retries are at most 20 % of calls plus 100. A call
//! whose retry finds the budget empty returns its last error at once.
//!
//! Tower is not a dependency of this workspace, and its budget is a few dozen lines, so this
//! is our own: the same rule on the same [`Window`] the breaker uses, with instants passed in
//! so that it is unit-tested without a clock.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::BuildError;
use crate::window::Window;

/// Share of a retry each call deposits: retries are at most this share of calls.
pub const DEFAULT_RETRY_RATIO: f64 = 0.2;
/// Retries per second allowed whatever the number of calls (the floor, for quiet clients).
pub const DEFAULT_RETRY_FLOOR: u32 = 10;
/// How long deposits and withdrawals count.
pub const DEFAULT_RETRY_WINDOW: Duration = Duration::from_secs(10);

/// The retry budget shared by all calls of a client; set it with
/// [`ClientBuilder::retry_budget`](crate::ClientBuilder::retry_budget), or turn it off with
/// [`ClientBuilder::without_retry_budget`](crate::ClientBuilder::without_retry_budget).
///
/// ```
/// use std::time::Duration;
/// use kernel_client::RetryBudget;
///
/// // At most 10 % of calls, plus 1 retry a second, over 30 s.
/// let thrifty = RetryBudget::new().ratio(0.1).floor(1).window(Duration::from_secs(30));
/// assert_eq!(thrifty.check(), Ok(()));
/// assert_eq!(RetryBudget::default(), RetryBudget::new());
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    ratio: f64,
    floor: u32,
    window: Duration,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self::new()
    }
}

impl RetryBudget {
    /// The defaults: 20 % of calls plus 10 retries a second, over 10 s (tower's and Finagle's).
    pub const fn new() -> Self {
        RetryBudget {
            ratio: DEFAULT_RETRY_RATIO,
            floor: DEFAULT_RETRY_FLOOR,
            window: DEFAULT_RETRY_WINDOW,
        }
    }

    /// Retries allowed per call made (0 to 1000); default [`DEFAULT_RETRY_RATIO`].
    pub const fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// Retries allowed per second whatever the calls; default [`DEFAULT_RETRY_FLOOR`].
    pub const fn floor(mut self, per_second: u32) -> Self {
        self.floor = per_second;
        self
    }

    /// How long a deposit or a withdrawal counts; default [`DEFAULT_RETRY_WINDOW`].
    pub const fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`BuildError::OutOfRange`] naming the first value that is not.
    pub fn check(&self) -> Result<(), BuildError> {
        if !(self.ratio >= 0.0 && self.ratio <= 1000.0) {
            return Err(BuildError::OutOfRange {
                field: "retry_budget.ratio",
                expected: "in [0, 1000]",
            });
        }
        if self.window.is_zero() {
            return Err(BuildError::OutOfRange {
                field: "retry_budget.window",
                expected: "greater than zero",
            });
        }
        Ok(())
    }
}

/// One retry, in the budget's units (a deposit is a fraction of it).
const RETRY: i64 = 1000;

/// A client's budget: deposits and withdrawals over the window.
#[derive(Debug)]
pub(crate) struct Budget {
    deposit: i64,
    reserve: i64,
    window: Mutex<Window<i64>>,
}

impl Budget {
    /// An empty budget with `settings` (checked by the caller).
    pub(crate) fn new(settings: RetryBudget) -> Self {
        // In range after `check`: ratio ≤ 1000, so the product fits.
        let deposit = (settings.ratio * RETRY as f64).round() as i64;
        let reserve = f64::from(settings.floor) * settings.window.as_secs_f64() * RETRY as f64;
        Budget {
            deposit,
            // Saturating: a huge floor is "no limit".
            reserve: if reserve >= i64::MAX as f64 {
                i64::MAX
            } else {
                reserve as i64
            },
            window: Mutex::new(Window::new(settings.window)),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window<i64>> {
        self.window.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A call's first attempt, at `now`.
    pub(crate) fn deposit(&self, now: Instant) {
        let mut window = self.window();
        window.advance(now);
        let head = window.head_mut();
        *head = head.saturating_add(self.deposit);
    }

    /// A retry, at `now`: whether the budget covers it (it is then spent).
    pub(crate) fn withdraw(&self, now: Instant) -> bool {
        let mut window = self.window();
        window.advance(now);
        let balance = window
            .slots()
            .iter()
            .fold(self.reserve, |sum, slot| sum.saturating_add(*slot));
        if balance < RETRY {
            return false;
        }
        let head = window.head_mut();
        *head = head.saturating_sub(RETRY);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How many retries in a row `budget` allows at `now`.
    fn retries(budget: &Budget, now: Instant) -> usize {
        (0..100_000).take_while(|_| budget.withdraw(now)).count()
    }

    #[test]
    fn the_floor_alone_allows_floor_times_window_retries() {
        let t = Instant::now();
        let budget = Budget::new(RetryBudget::new());
        assert_eq!(retries(&budget, t), 100);
        assert!(!budget.withdraw(t + Duration::from_secs(9)));
    }

    #[test]
    fn each_call_adds_its_ratio_of_a_retry() {
        let t = Instant::now();
        let budget = Budget::new(RetryBudget::new().floor(0));
        assert!(!budget.withdraw(t));
        for _ in 0..50 {
            budget.deposit(t);
        }
        assert_eq!(retries(&budget, t), 10);
        let budget = Budget::new(RetryBudget::new());
        for _ in 0..50 {
            budget.deposit(t);
        }
        assert_eq!(retries(&budget, t), 110);
    }

    #[test]
    fn spent_retries_come_back_when_they_leave_the_window() {
        let t = Instant::now();
        let budget = Budget::new(RetryBudget::new().floor(1));
        assert_eq!(retries(&budget, t), 10);
        // Withdrawals made at t age out once a whole window has passed.
        assert_eq!(retries(&budget, t + Duration::from_millis(9_999)), 0);
        assert_eq!(retries(&budget, t + Duration::from_secs(10)), 10);
    }

    #[test]
    fn deposits_age_out_too() {
        let t = Instant::now();
        let budget = Budget::new(RetryBudget::new().floor(0).ratio(1.0));
        for _ in 0..5 {
            budget.deposit(t);
        }
        assert_eq!(retries(&budget, t + Duration::from_secs(20)), 0);
    }

    #[test]
    fn a_zero_budget_allows_no_retry_and_a_huge_one_does_not_overflow() {
        let t = Instant::now();
        let none = Budget::new(RetryBudget::new().floor(0).ratio(0.0));
        none.deposit(t);
        assert!(!none.withdraw(t));
        let huge = Budget::new(RetryBudget::new().floor(u32::MAX).window(Duration::MAX));
        assert!(huge.withdraw(t));
    }

    #[test]
    fn check_names_the_value_out_of_range() {
        let field = |budget: RetryBudget| match budget.check() {
            Err(BuildError::OutOfRange { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(RetryBudget::new().ratio(-0.1)), "retry_budget.ratio");
        assert_eq!(
            field(RetryBudget::new().ratio(f64::NAN)),
            "retry_budget.ratio"
        );
        assert_eq!(
            field(RetryBudget::new().window(Duration::ZERO)),
            "retry_budget.window"
        );
        assert_eq!(RetryBudget::new().check(), Ok(()));
    }
}
