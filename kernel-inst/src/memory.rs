//! [`MemoryInstrumenter`]: per-name counts, gauges and latency percentiles, in process.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use foldhash::HashMap;

use crate::Instrumenter;

/// Number of recent samples each timer keeps for its percentiles.
pub const DEFAULT_WINDOW: usize = 1024;

/// Aggregates metrics in memory: counters summed, gauges last-value, timings summarised.
///
/// It backs a service's `stats` endpoint and lets tests assert what was recorded. It records
/// every event whatever its sample rate (sampling saves network packets; memory is cheaper than
/// the decision). Each timer keeps its all-time count and its most recent
/// [`DEFAULT_WINDOW`] samples, from which the mean and percentiles of a [`TimingSummary`] are
/// computed (nearest-rank method, exact on the window).
///
/// Cloning is cheap and clones share the same data. Names are stored as given, without a
/// namespace: one instance belongs to one service.
///
/// ```
/// use std::time::Duration;
/// use kernel_inst::{Instrumenter, MemoryInstrumenter};
///
/// let memory = MemoryInstrumenter::new();
/// for ms in 1..=100 {
///     memory.timing("success.get", Duration::from_millis(ms), 1.0);
/// }
/// let snapshot = memory.snapshot();
/// let get = snapshot.timing("success.get").unwrap();
/// assert_eq!(get.count, 100);
/// assert_eq!(get.p95, Duration::from_millis(95));
/// assert_eq!(get.p99, Duration::from_millis(99));
/// ```
#[derive(Clone, Debug)]
pub struct MemoryInstrumenter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    window: usize,
    counters: Mutex<HashMap<String, i64>>,
    gauges: Mutex<HashMap<String, f64>>,
    timers: RwLock<HashMap<String, Arc<Mutex<Timer>>>>,
}

/// One timer: all-time count plus a ring of the most recent samples.
#[derive(Debug, Default)]
struct Timer {
    count: u64,
    recent: VecDeque<Duration>,
}

impl Default for MemoryInstrumenter {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryInstrumenter {
    /// An empty aggregator keeping [`DEFAULT_WINDOW`] samples per timer.
    pub fn new() -> Self {
        Self::with_window(DEFAULT_WINDOW)
    }

    /// An empty aggregator keeping `window` recent samples per timer (at least one).
    pub fn with_window(window: usize) -> Self {
        MemoryInstrumenter {
            inner: Arc::new(Inner {
                window: window.max(1),
                counters: Mutex::default(),
                gauges: Mutex::default(),
                timers: RwLock::default(),
            }),
        }
    }

    /// A consistent-enough copy of everything recorded so far (each metric is copied
    /// atomically; metrics recorded during the copy may or may not be in it).
    pub fn snapshot(&self) -> Snapshot {
        let counters = lock(&self.inner.counters)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let gauges = lock(&self.inner.gauges)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let timers: Vec<_> = self
            .inner
            .timers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        let timings = timers
            .into_iter()
            .filter_map(|(name, timer)| lock(&timer).summary().map(|s| (name, s)))
            .collect();
        Snapshot {
            counters,
            gauges,
            timings,
        }
    }

    fn timer(&self, bucket: &str) -> Arc<Mutex<Timer>> {
        let timers = &self.inner.timers;
        if let Some(timer) = timers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(bucket)
        {
            return Arc::clone(timer);
        }
        let mut timers = timers.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(timers.entry(bucket.to_owned()).or_default())
    }
}

/// Locks a mutex whose data stays valid even if a holder panicked (every update is one
/// assignment), so poisoning is ignored rather than propagated into callers.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Instrumenter for MemoryInstrumenter {
    fn counter(&self, bucket: &str, delta: i64, _sample_rate: f64) {
        let mut counters = lock(&self.inner.counters);
        match counters.get_mut(bucket) {
            Some(value) => *value = value.saturating_add(delta),
            None => {
                counters.insert(bucket.to_owned(), delta);
            }
        }
    }

    fn gauge(&self, bucket: &str, value: f64, _sample_rate: f64) {
        let mut gauges = lock(&self.inner.gauges);
        match gauges.get_mut(bucket) {
            Some(current) => *current = value,
            None => {
                gauges.insert(bucket.to_owned(), value);
            }
        }
    }

    fn timing(&self, bucket: &str, elapsed: Duration, _sample_rate: f64) {
        let timer = self.timer(bucket);
        let mut timer = lock(&timer);
        timer.count += 1;
        if timer.recent.len() == self.inner.window {
            timer.recent.pop_front();
        }
        timer.recent.push_back(elapsed);
    }
}

impl Timer {
    fn summary(&self) -> Option<TimingSummary> {
        let mut sorted: Vec<Duration> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let (min, max) = (*sorted.first()?, *sorted.last()?);
        let total: Duration = sorted.iter().sum();
        let len = u32::try_from(sorted.len()).unwrap_or(u32::MAX);
        Some(TimingSummary {
            count: self.count,
            samples: sorted.len(),
            mean: total / len,
            min,
            max,
            p50: nearest_rank(&sorted, 50),
            p95: nearest_rank(&sorted, 95),
            p99: nearest_rank(&sorted, 99),
        })
    }
}

/// The `percent`th percentile of a sorted, non-empty slice by the nearest-rank method: the
/// smallest sample such that at least `percent`% of the samples are less than or equal to it.
fn nearest_rank(sorted: &[Duration], percent: usize) -> Duration {
    let rank = (percent * sorted.len()).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// A copy of what a [`MemoryInstrumenter`] has recorded.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    counters: BTreeMap<String, i64>,
    gauges: BTreeMap<String, f64>,
    timings: BTreeMap<String, TimingSummary>,
}

impl Snapshot {
    /// The sum of a counter, if it was ever recorded.
    pub fn counter(&self, bucket: &str) -> Option<i64> {
        self.counters.get(bucket).copied()
    }

    /// The last value of a gauge, if it was ever recorded.
    pub fn gauge(&self, bucket: &str) -> Option<f64> {
        self.gauges.get(bucket).copied()
    }

    /// The summary of a timer, if it was ever recorded.
    pub fn timing(&self, bucket: &str) -> Option<&TimingSummary> {
        self.timings.get(bucket)
    }

    /// Every counter, by name.
    pub fn counters(&self) -> &BTreeMap<String, i64> {
        &self.counters
    }

    /// Every gauge, by name.
    pub fn gauges(&self) -> &BTreeMap<String, f64> {
        &self.gauges
    }

    /// Every timer's summary, by name.
    pub fn timings(&self) -> &BTreeMap<String, TimingSummary> {
        &self.timings
    }
}

/// A timer's all-time count and the distribution of its recent samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimingSummary {
    /// Samples recorded since the instrumenter was created.
    pub count: u64,
    /// Recent samples the figures below are computed from (at most the window).
    pub samples: usize,
    /// Mean of the recent samples.
    pub mean: Duration,
    /// Smallest recent sample.
    pub min: Duration,
    /// Largest recent sample.
    pub max: Duration,
    /// Median of the recent samples.
    pub p50: Duration,
    /// 95th percentile of the recent samples.
    pub p95: Duration,
    /// 99th percentile of the recent samples.
    pub p99: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn percentiles_are_exact_on_known_data() {
        let memory = MemoryInstrumenter::new();
        // 1..=1000 ms in a scrambled order: p50 = 500, p95 = 950, p99 = 990, mean = 500.5.
        for i in 0..1000u64 {
            memory.timing("t", ms((i * 7919) % 1000 + 1), 1.0);
        }
        let t = *memory.snapshot().timing("t").unwrap();
        assert_eq!(t.count, 1000);
        assert_eq!((t.min, t.max), (ms(1), ms(1000)));
        assert_eq!((t.p50, t.p95, t.p99), (ms(500), ms(950), ms(990)));
        assert_eq!(t.mean, Duration::from_micros(500_500));
    }

    #[test]
    fn percentiles_of_few_samples_use_nearest_rank() {
        let memory = MemoryInstrumenter::new();
        for n in [30, 10, 20] {
            memory.timing("t", ms(n), 1.0);
        }
        let t = *memory.snapshot().timing("t").unwrap();
        assert_eq!((t.p50, t.p95, t.p99), (ms(20), ms(30), ms(30)));
        assert_eq!(t.mean, ms(20));

        memory.timing("one", ms(7), 1.0);
        let one = *memory.snapshot().timing("one").unwrap();
        assert_eq!(
            (one.min, one.p50, one.p99, one.max),
            (ms(7), ms(7), ms(7), ms(7))
        );
    }

    #[test]
    fn the_window_keeps_only_recent_samples_but_counts_all() {
        let memory = MemoryInstrumenter::with_window(10);
        for n in 1..=100 {
            memory.timing("t", ms(n), 1.0);
        }
        let t = *memory.snapshot().timing("t").unwrap();
        assert_eq!(t.count, 100);
        assert_eq!(t.samples, 10);
        assert_eq!((t.min, t.max), (ms(91), ms(100)));
    }

    #[test]
    fn counters_sum_and_gauges_keep_the_last_value_whatever_the_sample_rate() {
        let memory = MemoryInstrumenter::new();
        memory.counter("c", 2, 1.0);
        memory.counter("c", 3, 0.01);
        memory.counter("c", -1, 1.0);
        memory.gauge("g", 1.5, 1.0);
        memory.gauge("g", 4.25, 0.5);
        let snapshot = memory.snapshot();
        assert_eq!(snapshot.counter("c"), Some(4));
        assert_eq!(snapshot.gauge("g"), Some(4.25));
        assert_eq!(snapshot.counter("missing"), None);
        assert!(snapshot.timing("missing").is_none());
    }

    #[test]
    fn clones_share_and_threads_can_record_concurrently() {
        let memory = MemoryInstrumenter::new();
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let memory = memory.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        memory.counter("c", 1, 1.0);
                        memory.timing("t", ms(1), 1.0);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        let snapshot = memory.snapshot();
        assert_eq!(snapshot.counter("c"), Some(4000));
        assert_eq!(snapshot.timing("t").unwrap().count, 4000);
    }
}
