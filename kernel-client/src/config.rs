//! [`ClientConfig`]: the `[client]` section of the kernel's configuration.

use std::time::Duration;

use kernel_errors::InvalidConfig;
use serde::{Deserialize, Serialize};

use crate::breaker::{
    BreakerOptions, BreakerSettings, DEFAULT_BREAKER_INITIAL_BACKOFF, DEFAULT_BREAKER_MAX_BACKOFF,
    DEFAULT_BREAKER_MIN_SAMPLES, DEFAULT_BREAKER_MULTIPLIER, DEFAULT_BREAKER_THRESHOLD,
    DEFAULT_BREAKER_WINDOW,
};
use crate::budget::{DEFAULT_RETRY_FLOOR, DEFAULT_RETRY_RATIO, DEFAULT_RETRY_WINDOW, RetryBudget};
use crate::client::{DEFAULT_ATTEMPTS, DEFAULT_DEADLINE};
use crate::timeouts::{AttemptTimeouts, DEFAULT_UPPER95, MAX_ATTEMPT_TIMEOUT, MIN_ATTEMPT_TIMEOUT};
use crate::{BuildError, ClientBuilder};

/// How a client calls, as configuration: the `[client]` section of `kernel.toml`
/// (`KERNEL_CLIENT__<KEY>` in the environment). Every key is optional; the defaults are the
/// builder's. Durations are whole milliseconds.
///
/// ```toml
/// [client]
/// deadline_ms = 10000        # a call's overall deadline
/// attempts = 3               # sends per call at most
/// # attempt_timeout_ms = 500 # fixed attempt timeout; unset: from the endpoints' SLAs
///
/// [client.breaker]           # reloadable: applied again when the file changes
/// enabled = true
/// threshold = 0.95
/// min_samples = 100
/// window_ms = 10000
/// initial_backoff_ms = 100
/// max_backoff_ms = 60000
/// multiplier = 2.0
///
/// [client.retry_budget]
/// enabled = true
/// ratio = 0.2
/// floor = 10
/// window_ms = 10000
///
/// [client.timeouts]          # attempt timeouts from SLAs
/// default_upper95_ms = 2000
/// multiplier = 1.0
/// min_ms = 10
/// max_ms = 60000
/// ```
///
/// ```
/// use kernel_client::{Client, ClientConfig};
/// use kernel_transport::InProcessTransport;
///
/// let config: ClientConfig = serde_json::from_str(r#"{"attempts": 2, "breaker": {"threshold": 0.5}}"#)?;
/// config.check()?;
/// let client = Client::builder(InProcessTransport::new()).config(&config).build()?;
/// assert_eq!(client.breaker_settings(), config.breaker_settings());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ClientConfig {
    /// A call's overall deadline, attempts included.
    pub deadline_ms: u64,
    /// How many times a call is sent at most.
    pub attempts: u32,
    /// A fixed timeout for every attempt; unset: from the endpoints' SLAs (`timeouts`).
    pub attempt_timeout_ms: Option<u64>,
    /// The circuit breaker of every (service, endpoint).
    pub breaker: BreakerConfig,
    /// The retry budget shared by all calls.
    pub retry_budget: RetryBudgetConfig,
    /// Attempt timeouts derived from SLAs.
    pub timeouts: TimeoutsConfig,
}

/// `[client.breaker]`: see [`BreakerOptions`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BreakerConfig {
    /// Whether calls go through a breaker.
    pub enabled: bool,
    /// The share of failures (0 < t ≤ 1) at which a breaker opens.
    pub threshold: f64,
    /// Outcomes the window must hold before the breaker may open.
    pub min_samples: u32,
    /// The rolling window.
    pub window_ms: u64,
    /// How long a breaker stays open the first time.
    pub initial_backoff_ms: u64,
    /// How long a breaker stays open at most.
    pub max_backoff_ms: u64,
    /// How much the back-off grows after each failed probe.
    pub multiplier: f64,
}

/// `[client.retry_budget]`: see [`RetryBudget`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RetryBudgetConfig {
    /// Whether retries are limited by a budget (else by `attempts` alone).
    pub enabled: bool,
    /// Retries allowed per call made.
    pub ratio: f64,
    /// Retries allowed per second whatever the calls.
    pub floor: u32,
    /// How long a deposit or withdrawal counts.
    pub window_ms: u64,
}

/// `[client.timeouts]`: see [`AttemptTimeouts`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TimeoutsConfig {
    /// The upper95 assumed for endpoints whose SLA is neither declared nor announced.
    pub default_upper95_ms: u64,
    /// Scales every upper95.
    pub multiplier: f64,
    /// The shortest attempt timeout.
    pub min_ms: u64,
    /// The longest attempt timeout.
    pub max_ms: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            deadline_ms: ms(DEFAULT_DEADLINE),
            attempts: DEFAULT_ATTEMPTS,
            attempt_timeout_ms: None,
            breaker: BreakerConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            timeouts: TimeoutsConfig::default(),
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            threshold: DEFAULT_BREAKER_THRESHOLD,
            min_samples: DEFAULT_BREAKER_MIN_SAMPLES,
            window_ms: ms(DEFAULT_BREAKER_WINDOW),
            initial_backoff_ms: ms(DEFAULT_BREAKER_INITIAL_BACKOFF),
            max_backoff_ms: ms(DEFAULT_BREAKER_MAX_BACKOFF),
            multiplier: DEFAULT_BREAKER_MULTIPLIER,
        }
    }
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        RetryBudgetConfig {
            enabled: true,
            ratio: DEFAULT_RETRY_RATIO,
            floor: DEFAULT_RETRY_FLOOR,
            window_ms: ms(DEFAULT_RETRY_WINDOW),
        }
    }
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        TimeoutsConfig {
            default_upper95_ms: ms(DEFAULT_UPPER95),
            multiplier: 1.0,
            min_ms: ms(MIN_ATTEMPT_TIMEOUT),
            max_ms: ms(MAX_ATTEMPT_TIMEOUT),
        }
    }
}

impl BreakerConfig {
    /// The breaker options these values describe.
    pub fn options(&self) -> BreakerOptions {
        if !self.enabled {
            return BreakerOptions::disabled();
        }
        BreakerOptions::new()
            .threshold(self.threshold)
            .min_samples(self.min_samples)
            .window(Duration::from_millis(self.window_ms))
            .backoff(
                Duration::from_millis(self.initial_backoff_ms),
                Duration::from_millis(self.max_backoff_ms),
            )
            .multiplier(self.multiplier)
    }
}

impl RetryBudgetConfig {
    /// The budget these values describe; `None` when disabled.
    pub fn budget(&self) -> Option<RetryBudget> {
        self.enabled.then(|| {
            RetryBudget::new()
                .ratio(self.ratio)
                .floor(self.floor)
                .window(Duration::from_millis(self.window_ms))
        })
    }
}

impl TimeoutsConfig {
    /// The attempt timeouts these values describe.
    pub fn timeouts(&self) -> AttemptTimeouts {
        AttemptTimeouts::default()
            .default_upper95(Duration::from_millis(self.default_upper95_ms))
            .multiplier(self.multiplier)
            .bounds(
                Duration::from_millis(self.min_ms),
                Duration::from_millis(self.max_ms),
            )
    }
}

impl ClientConfig {
    /// The breaker settings to put in force, at start and on reload
    /// ([`Client::set_breaker_settings`](crate::Client::set_breaker_settings)).
    pub fn breaker_settings(&self) -> BreakerSettings {
        BreakerSettings::new(self.breaker.options())
    }

    /// Checks every value is in range.
    ///
    /// # Errors
    /// [`InvalidConfig`] naming the first key out of range (relative to `[client]`, e.g.
    /// `breaker.threshold`) and its value.
    pub fn check(&self) -> Result<(), InvalidConfig> {
        if self.breaker.enabled {
            self.breaker
                .options()
                .check()
                .map_err(|e| self.invalid(&e))?;
        }
        if let Some(budget) = self.retry_budget.budget() {
            budget.check().map_err(|e| self.invalid(&e))?;
        }
        let zero = |key: &str, value: u64| {
            (value == 0).then(|| InvalidConfig::new(key, value, "greater than zero"))
        };
        if let Some(invalid) = zero("deadline_ms", self.deadline_ms)
            .or_else(|| zero("attempts", u64::from(self.attempts)))
            .or_else(|| {
                self.attempt_timeout_ms
                    .and_then(|t| zero("attempt_timeout_ms", t))
            })
        {
            return Err(invalid);
        }
        let multiplier = self.timeouts.multiplier;
        if !(multiplier.is_finite() && multiplier > 0.0) {
            return Err(InvalidConfig::new(
                "timeouts.multiplier",
                multiplier,
                "finite and greater than zero",
            ));
        }
        if self.timeouts.min_ms > self.timeouts.max_ms {
            return Err(InvalidConfig::new(
                "timeouts.min_ms",
                self.timeouts.min_ms,
                format!("at most timeouts.max_ms ({})", self.timeouts.max_ms),
            ));
        }
        Ok(())
    }

    /// The configuration key and value a builder error is about.
    fn invalid(&self, error: &BuildError) -> InvalidConfig {
        let (key, value, expected) = match error {
            BuildError::OutOfRange { field, expected } => {
                let (key, value) = match *field {
                    "breaker.threshold" => (*field, self.breaker.threshold.to_string()),
                    "breaker.min_samples" => (*field, self.breaker.min_samples.to_string()),
                    "breaker.window" => ("breaker.window_ms", self.breaker.window_ms.to_string()),
                    "breaker.backoff" => (
                        "breaker.initial_backoff_ms",
                        self.breaker.initial_backoff_ms.to_string(),
                    ),
                    "breaker.multiplier" => (*field, self.breaker.multiplier.to_string()),
                    "retry_budget.ratio" => (*field, self.retry_budget.ratio.to_string()),
                    "retry_budget.window" => (
                        "retry_budget.window_ms",
                        self.retry_budget.window_ms.to_string(),
                    ),
                    other => (other, String::new()),
                };
                (key, value, (*expected).to_owned())
            }
            other => ("", String::new(), other.to_string()),
        };
        InvalidConfig::new(key, value, expected)
    }
}

impl ClientBuilder {
    /// Takes every setting of a [`ClientConfig`] (check it first with
    /// [`ClientConfig::check`]; [`build`](Self::build) refuses what is out of range).
    pub fn config(self, config: &ClientConfig) -> Self {
        let builder = self
            .deadline(Duration::from_millis(config.deadline_ms))
            .attempts(config.attempts)
            .breaker(config.breaker.options())
            .attempt_timeouts(config.timeouts.timeouts());
        let builder = match config.attempt_timeout_ms {
            Some(ms) => builder.attempt_timeout(Duration::from_millis(ms)),
            None => builder,
        };
        match config.retry_budget.budget() {
            Some(budget) => builder.retry_budget(budget),
            None => builder.without_retry_budget(),
        }
    }
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
