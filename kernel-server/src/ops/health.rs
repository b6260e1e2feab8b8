//! Health checks: [`HealthCheck`]s registered on a service, run in the background and on demand.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use kernel_proto::platform::{self as proto, HealthPriority, HealthStatus};

/// How often a check runs unless told otherwise.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long a check may run unless told otherwise; a check still running then is reported
/// unhealthy ("timed out") and abandoned.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// A sample younger than this is fresh enough for a `health` call that asks to run the checks
/// now: however many callers ask, a check runs at most once per this period on their behalf.
pub const MIN_RUN_SPACING: Duration = Duration::from_secs(1);

/// What a check measured: names to values, reported with every sample.
pub type Measurements = BTreeMap<String, String>;

/// Who is told when a check fails, in H2's order of urgency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Priority {
    /// Wake someone up.
    Pager,
    /// Send an email.
    Email,
    /// Show it on a dashboard (the default).
    #[default]
    Warning,
}

impl From<Priority> for HealthPriority {
    fn from(priority: Priority) -> Self {
        match priority {
            Priority::Pager => HealthPriority::Pager,
            Priority::Email => HealthPriority::Email,
            Priority::Warning => HealthPriority::Warning,
        }
    }
}

/// A failed check: why, and what it measured.
///
/// ```
/// use kernel_server::Unhealthy;
///
/// let failed = Unhealthy::new("3 circuits open").measurement("open", 3);
/// assert_eq!(failed.reason(), "3 circuits open");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    reason: String,
    measurements: Measurements,
}

impl Unhealthy {
    /// A failure for `reason`.
    pub fn new(reason: impl Into<String>) -> Self {
        Unhealthy {
            reason: reason.into(),
            measurements: Measurements::new(),
        }
    }

    /// Adds a measurement.
    #[must_use]
    pub fn measurement(mut self, name: impl Into<String>, value: impl ToString) -> Self {
        self.measurements.insert(name.into(), value.to_string());
        self
    }

    /// Why the check failed.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl<E: std::error::Error> From<E> for Unhealthy {
    fn from(error: E) -> Self {
        Unhealthy::new(error.to_string())
    }
}

type CheckFn = dyn Fn() -> BoxFuture<'static, Result<Measurements, Unhealthy>> + Send + Sync;

/// A named health check: an async function that says whether something the service needs is
/// well, run every [`interval`](Self::interval) in the background and bounded by its
/// [`timeout`](Self::timeout).
///
/// Register it with [`ServiceBuilder::health_check`](crate::ServiceBuilder::health_check); the
/// `health` endpoint reports its latest sample, and each sample is published on
/// `kernel.monitor.healthcheck`.
///
/// ```
/// use std::time::Duration;
/// use kernel_server::{HealthCheck, Measurements, Priority, Unhealthy};
///
/// let disk = HealthCheck::new("com.example.disk", || async {
///     let free_gb = 42; // measure something
///     if free_gb < 5 {
///         return Err(Unhealthy::new("disk almost full").measurement("free_gb", free_gb));
///     }
///     Ok(Measurements::from([("free_gb".to_owned(), free_gb.to_string())]))
/// })
/// .priority(Priority::Pager)
/// .interval(Duration::from_secs(10))
/// .timeout(Duration::from_millis(500));
/// assert_eq!(disk.id(), "com.example.disk");
/// ```
#[derive(Clone)]
pub struct HealthCheck {
    pub(crate) id: String,
    pub(crate) priority: Priority,
    pub(crate) interval: Duration,
    pub(crate) timeout: Duration,
    check: Arc<CheckFn>,
}

impl HealthCheck {
    /// A check named `id` (dotted, e.g. `com.example.users.database`) that runs `check`.
    pub fn new<F, Fut>(id: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Measurements, Unhealthy>> + Send + 'static,
    {
        HealthCheck {
            id: id.into(),
            priority: Priority::default(),
            interval: DEFAULT_CHECK_INTERVAL,
            timeout: DEFAULT_CHECK_TIMEOUT,
            check: Arc::new(move || Box::pin(check())),
        }
    }

    /// Who is told when it fails; default [`Priority::Warning`].
    #[must_use]
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }

    /// How often it runs in the background; default [`DEFAULT_CHECK_INTERVAL`].
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How long a run may take before it counts as failed; default [`DEFAULT_CHECK_TIMEOUT`].
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The check's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for HealthCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthCheck")
            .field("id", &self.id)
            .field("priority", &self.priority)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One registered check with its latest sample.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) check: HealthCheck,
    latest: Mutex<Option<Sample>>,
    /// Held while the check runs: concurrent requests to run it wait for that run.
    running: tokio::sync::Mutex<()>,
}

#[derive(Clone, Debug)]
struct Sample {
    taken: Instant,
    message: proto::HealthCheck,
}

impl Slot {
    pub(crate) fn new(check: HealthCheck) -> Self {
        Slot {
            check,
            latest: Mutex::new(None),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The latest sample, or one saying the check has not run yet.
    pub(crate) fn latest(&self) -> proto::HealthCheck {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        match &*latest {
            Some(sample) => sample.message.clone(),
            None => proto::HealthCheck {
                id: self.check.id.clone(),
                status: HealthStatus::Unknown.into(),
                priority: HealthPriority::from(self.check.priority).into(),
                ..Default::default()
            },
        }
    }

    fn fresh_since(&self, since: Instant) -> Option<proto::HealthCheck> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        latest
            .as_ref()
            .filter(|sample| sample.taken >= since)
            .map(|sample| sample.message.clone())
    }

    /// Runs the check (bounded by its timeout) and keeps the sample, unless a run that
    /// started after `fresh_after` has produced one already. Returns the sample, and whether
    /// it is new (to be published).
    pub(crate) async fn run(&self, fresh_after: Instant) -> (proto::HealthCheck, bool) {
        let _running = self.running.lock().await;
        if let Some(sample) = self.fresh_since(fresh_after) {
            return (sample, false);
        }
        let taken = Instant::now();
        let outcome = match tokio::time::timeout(self.check.timeout, (self.check.check)()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Unhealthy::new(format!(
                "timed out after {:?}",
                self.check.timeout
            ))),
        };
        let (status, error_message, measurements) = match outcome {
            Ok(measurements) => (HealthStatus::Healthy, String::new(), measurements),
            Err(failed) => (HealthStatus::Unhealthy, failed.reason, failed.measurements),
        };
        let message = proto::HealthCheck {
            id: self.check.id.clone(),
            status: status.into(),
            priority: HealthPriority::from(self.check.priority).into(),
            timestamp_unix_ms: unix_ms(SystemTime::now()),
            error_message,
            measurements: measurements.into_iter().collect(),
        };
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Sample {
            taken,
            message: message.clone(),
        });
        (message, true)
    }

    /// A sample no older than [`MIN_RUN_SPACING`], running the check if there is none.
    pub(crate) async fn run_now(&self) -> (proto::HealthCheck, bool) {
        let now = Instant::now();
        self.run(now.checked_sub(MIN_RUN_SPACING).unwrap_or(now))
            .await
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(at: SystemTime) -> i64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_hanging_check_is_unhealthy_after_its_timeout() {
        let slot = Slot::new(
            HealthCheck::new("hangs", std::future::pending).timeout(Duration::from_millis(300)),
        );
        let started = tokio::time::Instant::now();
        let (sample, new) = slot.run_now().await;
        assert!(new);
        assert_eq!(sample.status(), HealthStatus::Unhealthy);
        assert!(sample.error_message.contains("timed out"), "{sample:?}");
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test]
    async fn a_recent_sample_is_reused_rather_than_run_again() {
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = Arc::clone(&runs);
        let slot = Slot::new(HealthCheck::new("counts", move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok(Measurements::new()) }
        }));
        assert_eq!(slot.latest().status(), HealthStatus::Unknown);
        let (first, new) = slot.run_now().await;
        assert!(new);
        assert_eq!(first.status(), HealthStatus::Healthy);
        let (again, new) = slot.run_now().await;
        assert!(!new, "a second run within the spacing is the same sample");
        assert_eq!(again, first);
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_check_keeps_its_reason_and_measurements() {
        let slot = Slot::new(
            HealthCheck::new("fails", || async {
                Err(Unhealthy::new("down").measurement("open", 2))
            })
            .priority(Priority::Pager),
        );
        let (sample, _) = slot.run_now().await;
        assert_eq!(sample.status(), HealthStatus::Unhealthy);
        assert_eq!(sample.priority(), HealthPriority::Pager);
        assert_eq!(sample.error_message, "down");
        assert_eq!(
            sample.measurements.get("open").map(String::as_str),
            Some("2")
        );
    }
}
