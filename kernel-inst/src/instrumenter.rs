//! The [`Instrumenter`] seam, its blanket impls, and [`NoopInstrumenter`].

use std::sync::Arc;
use std::time::Duration;

/// Receives counters, gauges and timings. Never blocks and never fails the caller.
///
/// Bucket names are relative (`client.com.example.users.get.success`); each implementation
/// puts them under its own namespace, typically the service name, as H2 did
/// (`<service>.<bucket>`). A sample rate `r` in `(0, 1]` says that the caller wants about a
/// fraction `r` of these events recorded: a statsd sink sends that fraction tagged `|@r` (the
/// statsd server scales the counts back up), while an in-process aggregator may record every
/// event, since recording in memory is cheaper than deciding. A rate of `1.0` or more records
/// every event.
///
/// Implemented by [`StatsdInstrumenter`](crate::StatsdInstrumenter) (statsd over UDP, with the
/// `statsd` feature), [`MemoryInstrumenter`](crate::MemoryInstrumenter) (per-name counts and
/// latency percentiles, which back the `stats` endpoint) and [`NoopInstrumenter`]. A pair
/// `(A, B)` sends every event to both. Services hold one as `Arc<dyn Instrumenter>`, so the
/// trait is object safe; the methods are synchronous because recording must cost a caller
/// nothing it could wait on.
///
/// ```
/// use std::time::Duration;
/// use kernel_inst::{Instrumenter, MemoryInstrumenter};
///
/// fn record_call(inst: &dyn Instrumenter, elapsed: Duration) {
///     inst.counter("client.com.example.users.get.calls", 1, 1.0);
///     inst.timing("client.com.example.users.get.success", elapsed, 1.0);
/// }
///
/// let memory = MemoryInstrumenter::new();
/// record_call(&memory, Duration::from_millis(12));
/// let snapshot = memory.snapshot();
/// assert_eq!(snapshot.counter("client.com.example.users.get.calls"), Some(1));
/// ```
pub trait Instrumenter: Send + Sync + 'static {
    /// Adds `delta` to the counter `bucket`.
    fn counter(&self, bucket: &str, delta: i64, sample_rate: f64);

    /// Sets the gauge `bucket` to `value`.
    fn gauge(&self, bucket: &str, value: f64, sample_rate: f64);

    /// Records one duration under the timer `bucket`.
    fn timing(&self, bucket: &str, elapsed: Duration, sample_rate: f64);
}

impl std::fmt::Debug for dyn Instrumenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Instrumenter")
    }
}

impl<T: Instrumenter + ?Sized> Instrumenter for Arc<T> {
    fn counter(&self, bucket: &str, delta: i64, sample_rate: f64) {
        (**self).counter(bucket, delta, sample_rate);
    }

    fn gauge(&self, bucket: &str, value: f64, sample_rate: f64) {
        (**self).gauge(bucket, value, sample_rate);
    }

    fn timing(&self, bucket: &str, elapsed: Duration, sample_rate: f64) {
        (**self).timing(bucket, elapsed, sample_rate);
    }
}

impl<T: Instrumenter + ?Sized> Instrumenter for Box<T> {
    fn counter(&self, bucket: &str, delta: i64, sample_rate: f64) {
        (**self).counter(bucket, delta, sample_rate);
    }

    fn gauge(&self, bucket: &str, value: f64, sample_rate: f64) {
        (**self).gauge(bucket, value, sample_rate);
    }

    fn timing(&self, bucket: &str, elapsed: Duration, sample_rate: f64) {
        (**self).timing(bucket, elapsed, sample_rate);
    }
}

/// Sends every event to both instrumenters, e.g. statsd for dashboards and memory for the
/// `stats` endpoint.
impl<A: Instrumenter, B: Instrumenter> Instrumenter for (A, B) {
    fn counter(&self, bucket: &str, delta: i64, sample_rate: f64) {
        self.0.counter(bucket, delta, sample_rate);
        self.1.counter(bucket, delta, sample_rate);
    }

    fn gauge(&self, bucket: &str, value: f64, sample_rate: f64) {
        self.0.gauge(bucket, value, sample_rate);
        self.1.gauge(bucket, value, sample_rate);
    }

    fn timing(&self, bucket: &str, elapsed: Duration, sample_rate: f64) {
        self.0.timing(bucket, elapsed, sample_rate);
        self.1.timing(bucket, elapsed, sample_rate);
    }
}

/// Records nothing. For tests and for services that opt out of metrics.
///
/// ```
/// use kernel_inst::{Instrumenter, NoopInstrumenter};
/// NoopInstrumenter.counter("anything", 1, 1.0);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopInstrumenter;

impl Instrumenter for NoopInstrumenter {
    fn counter(&self, _bucket: &str, _delta: i64, _sample_rate: f64) {}

    fn gauge(&self, _bucket: &str, _value: f64, _sample_rate: f64) {}

    fn timing(&self, _bucket: &str, _elapsed: Duration, _sample_rate: f64) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryInstrumenter;

    #[test]
    fn instrumenter_is_object_safe_and_shareable() {
        let shared: Arc<dyn Instrumenter> = Arc::new(NoopInstrumenter);
        fn assert_bounds<T: Instrumenter + Clone>(_: &T) {}
        assert_bounds(&shared);
        shared.counter("a", 1, 1.0);
    }

    #[test]
    fn a_pair_records_into_both() {
        let (a, b) = (MemoryInstrumenter::new(), MemoryInstrumenter::new());
        let pair = (a.clone(), b.clone());
        pair.counter("hits", 2, 1.0);
        pair.gauge("level", 0.5, 1.0);
        pair.timing("took", Duration::from_millis(3), 1.0);
        for side in [a, b] {
            let snapshot = side.snapshot();
            assert_eq!(snapshot.counter("hits"), Some(2));
            assert_eq!(snapshot.gauge("level"), Some(0.5));
            assert_eq!(snapshot.timing("took").map(|t| t.count), Some(1));
        }
    }
}
