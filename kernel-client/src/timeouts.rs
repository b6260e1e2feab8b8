//! [`AttemptTimeouts`]: how long each attempt of a call waits, from the endpoint's SLA.

use std::collections::HashMap;
use std::time::Duration;

/// The upper-95 latency assumed for an endpoint whose SLA is not known (H2's 2 s).
pub const DEFAULT_UPPER95: Duration = Duration::from_secs(2);
/// The shortest attempt timeout.
pub const MIN_ATTEMPT_TIMEOUT: Duration = Duration::from_millis(10);
/// The longest attempt timeout.
pub const MAX_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Attempt timeouts derived from each endpoint's 95th-percentile latency, as H2's adaptive
/// timeout table: attempt *n* of a call to (service, endpoint) waits
/// `clamp(upper95 × multiplier × n, min, max)`, and never past what is left of the call's
/// deadline. Later attempts wait longer (linear back-off), so a slow but healthy endpoint is
/// not retried into overload.
///
/// Where an endpoint's upper95 comes from, first match wins: a per-call
/// [`Call::attempt_timeout`](crate::Call::attempt_timeout) (used as is, not scaled); a value
/// declared here with [`upper95`](Self::upper95) (in code, or from configuration); the
/// one announced by the endpoint's instances, once a [`Registry`](crate::Registry) listens on
/// the client; the [`default_upper95`](Self::default_upper95) (2 s).
///
/// Unlike H2, the multiplier is a float (H2 truncated it to an integer, so 1.5 acted as 1).
///
/// ```
/// use std::time::Duration;
/// use kernel_client::AttemptTimeouts;
///
/// let timeouts = AttemptTimeouts::default()
///     .upper95("com.example.users", "get", Duration::from_millis(300))
///     .multiplier(1.5);
/// assert_eq!(timeouts.get("com.example.users", "get", 1), Duration::from_millis(450));
/// assert_eq!(timeouts.get("com.example.users", "get", 2), Duration::from_millis(900));
/// // Unknown endpoints start from the default upper95, 2 s.
/// assert_eq!(timeouts.get("com.example.other", "get", 1), Duration::from_secs(3));
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptTimeouts {
    default_upper95: Duration,
    min: Duration,
    max: Duration,
    multiplier: f64,
    /// By service, then endpoint: looked up on every attempt without allocating a key.
    known: HashMap<String, HashMap<String, Duration>>,
}

impl Default for AttemptTimeouts {
    fn default() -> Self {
        AttemptTimeouts {
            default_upper95: DEFAULT_UPPER95,
            min: MIN_ATTEMPT_TIMEOUT,
            max: MAX_ATTEMPT_TIMEOUT,
            multiplier: 1.0,
            known: HashMap::new(),
        }
    }
}

impl AttemptTimeouts {
    /// Declares the upper-95 latency of `service`'s `endpoint`.
    #[must_use]
    pub fn upper95(mut self, service: &str, endpoint: &str, upper95: Duration) -> Self {
        self.known
            .entry(service.to_owned())
            .or_default()
            .insert(endpoint.to_owned(), upper95);
        self
    }

    /// The upper95 assumed when an endpoint's is not known; default [`DEFAULT_UPPER95`].
    #[must_use]
    pub fn default_upper95(mut self, upper95: Duration) -> Self {
        self.default_upper95 = upper95;
        self
    }

    /// Scales every upper95 (default 1.0; negative or not a number counts as 1.0).
    #[must_use]
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier.is_finite() && multiplier >= 0.0 {
            multiplier
        } else {
            1.0
        };
        self
    }

    /// The bounds every attempt timeout is clamped to; default 10 ms and 60 s. A `max` below
    /// `min` is raised to it.
    #[must_use]
    pub fn bounds(mut self, min: Duration, max: Duration) -> Self {
        self.min = min;
        self.max = max.max(min);
        self
    }

    /// How long attempt `attempt` (1 for the first) of a call to (service, endpoint) waits,
    /// before the call's own deadline is applied.
    pub fn get(&self, service: &str, endpoint: &str, attempt: u32) -> Duration {
        self.get_learned(service, endpoint, attempt, None)
    }

    /// As [`get`](Self::get), with the upper95 the endpoint announced (if known) in place of
    /// the default.
    pub(crate) fn get_learned(
        &self,
        service: &str,
        endpoint: &str,
        attempt: u32,
        learned: Option<Duration>,
    ) -> Duration {
        let upper95 = self
            .known
            .get(service)
            .and_then(|endpoints| endpoints.get(endpoint))
            .copied()
            .or(learned)
            .unwrap_or(self.default_upper95);
        let scaled = upper95.as_secs_f64() * self.multiplier * f64::from(attempt.max(1));
        let scaled = Duration::try_from_secs_f64(scaled).unwrap_or(self.max);
        scaled.clamp(self.min, self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_back_off_linearly_and_are_clamped() {
        let timeouts = AttemptTimeouts::default().upper95("svc", "ep", Duration::from_secs(1));
        let secs = |n| timeouts.get("svc", "ep", n).as_secs();
        assert_eq!((secs(1), secs(2), secs(3)), (1, 2, 3));
        assert_eq!(timeouts.get("svc", "ep", 66), MAX_ATTEMPT_TIMEOUT);
        let zero = AttemptTimeouts::default().upper95("svc", "ep", Duration::ZERO);
        assert_eq!(zero.get("svc", "ep", 1), MIN_ATTEMPT_TIMEOUT);
    }

    #[test]
    fn the_multiplier_is_a_float_not_truncated() {
        let timeouts = AttemptTimeouts::default()
            .upper95("svc", "ep", Duration::from_millis(200))
            .multiplier(0.5);
        assert_eq!(timeouts.get("svc", "ep", 1), Duration::from_millis(100));
        let nan = AttemptTimeouts::default().multiplier(f64::NAN);
        assert_eq!(nan.get("svc", "ep", 1), DEFAULT_UPPER95);
    }

    #[test]
    fn bounds_hold_even_when_given_upside_down() {
        let timeouts = AttemptTimeouts::default()
            .bounds(Duration::from_secs(5), Duration::from_secs(1))
            .upper95("svc", "ep", Duration::from_millis(1));
        assert_eq!(timeouts.get("svc", "ep", 1), Duration::from_secs(5));
    }
}
