//! [`PrometheusInstrumenter`]: statsd-style buckets as Prometheus counters, gauges and
//! histograms, rendered on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, Level, Metadata, Recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::Instrumenter;

/// How many buckets one instrumenter keeps at most, counted across counters, gauges and timers.
pub const DEFAULT_MAX_SERIES: usize = 10_000;

/// Longest bucket name recorded, in bytes; longer names are dropped and counted.
pub const MAX_BUCKET_LEN: usize = 256;

/// Upper bounds, in seconds, of the histogram buckets every timer is rendered with (plus
/// `+Inf`): from one millisecond, for in-process calls, to thirty seconds, past any sensible
/// deadline.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Prefix of every exposed name.
const PREFIX: &str = "kernel_";

/// The counter of recordings dropped because their series could not be created.
const DROPPED_SERIES: &str = "kernel_dropped_series_total";

/// Every this many timings, samples waiting in the recorder are folded into their histograms,
/// so that memory stays bounded when nobody scrapes.
const UPKEEP_EVERY: u64 = 1024;

/// Records into a Prometheus registry of its own and renders it as the text exposition.
///
/// Nothing is installed globally: the registry belongs to this value and its clones (cheap,
/// sharing one registry), and [`render`](Self::render) produces what a `/metrics` endpoint
/// serves (see [`http::serve_probes`](crate::http::serve_probes)).
///
/// # Names
///
/// A statsd bucket becomes a Prometheus name by prefixing `kernel_` and replacing every
/// character outside `[a-zA-Z0-9_]` with `_` (dots, dashes, colons, non-ASCII), then adding a
/// suffix for the kind, so that a counter and a timer of the same bucket stay apart:
///
/// | call | exposed as |
/// |---|---|
/// | `counter("server.error.kernel.server.capacity", 1, _)` | `kernel_server_error_kernel_server_capacity_total` (counter) |
/// | `gauge("server.inflight", 3.0, _)` | `kernel_server_inflight` (gauge) |
/// | `timing("success.hello", 12ms, _)` | `kernel_success_hello_seconds` (histogram) |
/// | `timing("client.com.example.greeter.hello.success", _, _)` | `kernel_client_com_example_greeter_hello_success_seconds` (histogram) |
///
/// Buckets that differ only in replaced characters (`a.b`, `a-b`, `a_b`) share one series. A
/// bucket whose names would clash with names a metric of another kind already shows (a gauge
/// `x.seconds.count` beside a timer `x`, a gauge `x.total` beside a counter `x`) is dropped, so
/// the exposition stays valid.
///
/// # Kinds
///
/// - Counters add `delta`. A Prometheus counter only goes up (a decrease reads as a restart to
///   `rate()`), so negative deltas are ignored; a zero delta creates the series at 0.
/// - Gauges keep the last value.
/// - Timings are histograms in seconds with the bounds of [`LATENCY_BUCKETS`]: unlike
///   summaries, histograms from many instances can be summed and their quantiles computed
///   in Prometheus (`histogram_quantile`).
///
/// Every event is recorded whatever its sample rate, as
/// [`MemoryInstrumenter`](crate::MemoryInstrumenter) does: recording in memory is cheaper than
/// deciding.
///
/// # Bounds
///
/// At most [`DEFAULT_MAX_SERIES`] buckets (or the number given to
/// [`with_max_series`](Self::with_max_series)), counted across kinds, and none longer than
/// [`MAX_BUCKET_LEN`] bytes: bucket names can carry remote input (an error code from a reply,
/// a topic), and a registry must not grow with it. A recording that cannot get a series (over
/// the bound, too long, or clashing as above) is dropped and adds one to the counter
/// `kernel_dropped_series_total`, which is always exposed; [`dropped`](Self::dropped) reads
/// it. Timing samples wait in the recorder until the next render or the next 1024th timing,
/// whichever comes first, so they too stay bounded when nobody scrapes.
///
/// ```
/// use std::time::Duration;
/// use kernel_inst::{Instrumenter, PrometheusInstrumenter};
///
/// let prometheus = PrometheusInstrumenter::new();
/// prometheus.counter("server.error.kernel.server.capacity", 1, 1.0);
/// prometheus.timing("success.hello", Duration::from_millis(12), 1.0);
///
/// let text = prometheus.render();
/// assert!(text.contains("kernel_server_error_kernel_server_capacity_total 1\n"));
/// assert!(text.contains("kernel_success_hello_seconds_bucket{le=\"0.025\"} 1\n"));
/// assert!(text.contains("kernel_success_hello_seconds_count 1\n"));
/// ```
#[derive(Clone)]
pub struct PrometheusInstrumenter {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    /// Renders the recorder; kept beside it because `handle()` clones an `Arc` each time.
    handle: PrometheusHandle,
    max_series: usize,
    series: RwLock<Series>,
    /// Recordings dropped so far; `dropped_counter` exposes the same count.
    dropped: AtomicU64,
    dropped_counter: Counter,
    /// Timings recorded so far, to run upkeep every [`UPKEEP_EVERY`].
    timings: AtomicU64,
    /// Held shared while a timing is recorded and alone while the recorder folds or renders
    /// its histograms' samples: a sample pushed while the exporter drained its bucket was
    /// seen lost (3,999 of 4,000 timings from four threads).
    draining: RwLock<()>,
}

/// The handles of every bucket recorded so far, by bucket as given (so that a hit costs no
/// name mapping), and the exposed names they occupy.
#[derive(Default)]
struct Series {
    counters: HashMap<String, Counter>,
    gauges: HashMap<String, Gauge>,
    histograms: HashMap<String, Histogram>,
    /// Every name the exposition shows, with the kind that shows it.
    taken: HashMap<String, Kind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    /// Names of our own (the dropped-series counter), which no bucket may take.
    Reserved,
}

impl Default for PrometheusInstrumenter {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for PrometheusInstrumenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusInstrumenter")
            .field("series", &self.inner.read_series().len())
            .field("max_series", &self.inner.max_series)
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

impl PrometheusInstrumenter {
    /// An empty registry keeping at most [`DEFAULT_MAX_SERIES`] buckets.
    pub fn new() -> Self {
        Self::with_max_series(DEFAULT_MAX_SERIES)
    }

    /// An empty registry keeping at most `max_series` buckets, counted across kinds.
    pub fn with_max_series(max_series: usize) -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&LATENCY_BUCKETS)
            .expect("LATENCY_BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        let dropped_counter =
            recorder.register_counter(&Key::from_static_name(DROPPED_SERIES), &METADATA);
        let mut series = Series::default();
        series
            .taken
            .insert(DROPPED_SERIES.to_owned(), Kind::Reserved);
        PrometheusInstrumenter {
            inner: Arc::new(Inner {
                recorder,
                handle,
                max_series,
                series: RwLock::new(series),
                dropped: AtomicU64::new(0),
                dropped_counter,
                timings: AtomicU64::new(0),
                draining: RwLock::new(()),
            }),
        }
    }

    /// Everything recorded so far, in the Prometheus text exposition format (version 0.0.4),
    /// as served with `Content-Type: text/plain; version=0.0.4`.
    pub fn render(&self) -> String {
        let _alone = self.inner.drain();
        self.inner.handle.render()
    }

    /// Recordings dropped so far because their bucket could not get a series (see
    /// [Bounds](Self#bounds)); also exposed as `kernel_dropped_series_total`.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }
}

/// Where our registrations say they come from; the recorder ignores it.
const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The exposed name of `bucket` before its kind's suffix: `kernel_` and the bucket with every
/// character outside `[a-zA-Z0-9_]` replaced by `_`.
fn family(bucket: &str) -> String {
    let mut name = String::with_capacity(PREFIX.len() + bucket.len());
    name.push_str(PREFIX);
    name.extend(bucket.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    name
}

impl Kind {
    /// Every name a metric of this kind for `bucket` shows in the exposition; the first is the
    /// one it is registered under.
    fn exposed_names(self, bucket: &str) -> Vec<String> {
        let family = family(bucket);
        match self {
            Kind::Counter => vec![family + "_total"],
            Kind::Gauge | Kind::Reserved => vec![family],
            Kind::Histogram => {
                let base = family + "_seconds";
                let parts = ["_bucket", "_sum", "_count"].map(|suffix| format!("{base}{suffix}"));
                let mut names = vec![base];
                names.extend(parts);
                names
            }
        }
    }
}

impl Series {
    fn len(&self) -> usize {
        self.counters.len() + self.gauges.len() + self.histograms.len()
    }

    /// Claims the names `bucket` shows as `kind` and returns the one to register, or `None`
    /// if another kind shows one of them. Buckets mapping to the same names share them.
    fn claim(&mut self, kind: Kind, bucket: &str) -> Option<String> {
        let names = kind.exposed_names(bucket);
        if names
            .iter()
            .any(|name| self.taken.get(name).is_some_and(|taken| *taken != kind))
        {
            return None;
        }
        let mut names = names.into_iter();
        let registered = names.next()?;
        for name in names.chain(std::iter::once(registered.clone())) {
            self.taken.entry(name).or_insert(kind);
        }
        Some(registered)
    }
}

impl Inner {
    /// Waits for the timings being recorded, and keeps new ones out until dropped.
    fn drain(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.draining
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn read_series(&self) -> std::sync::RwLockReadGuard<'_, Series> {
        self.series.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The handle of `bucket` as `kind`, created on first use if the bounds allow; otherwise
    /// `None`, with the recording counted as dropped. `get` and `get_mut` pick the kind's map
    /// and `register` creates the handle in the recorder.
    fn handle<H: Clone>(
        &self,
        kind: Kind,
        bucket: &str,
        get: fn(&Series) -> &HashMap<String, H>,
        get_mut: fn(&mut Series) -> &mut HashMap<String, H>,
        register: fn(&PrometheusRecorder, &Key, &Metadata<'_>) -> H,
    ) -> Option<H> {
        {
            let series = self.read_series();
            if let Some(handle) = get(&series).get(bucket) {
                return Some(handle.clone());
            }
            // Over the bounds, a flood of new names never takes the write lock.
            if series.len() >= self.max_series || bucket.len() > MAX_BUCKET_LEN {
                return self.dropped_one();
            }
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = get(&series).get(bucket) {
            return Some(handle.clone());
        }
        if series.len() >= self.max_series {
            return self.dropped_one();
        }
        let Some(name) = series.claim(kind, bucket) else {
            return self.dropped_one();
        };
        let handle = register(&self.recorder, &Key::from_name(name), &METADATA);
        get_mut(&mut series).insert(bucket.to_owned(), handle.clone());
        Some(handle)
    }

    fn dropped_one<H>(&self) -> Option<H> {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.dropped_counter.increment(1);
        None
    }
}

impl Instrumenter for PrometheusInstrumenter {
    fn counter(&self, bucket: &str, delta: i64, _sample_rate: f64) {
        let Ok(delta) = u64::try_from(delta) else {
            return;
        };
        let counter = self.inner.handle(
            Kind::Counter,
            bucket,
            |s| &s.counters,
            |s| &mut s.counters,
            <PrometheusRecorder as Recorder>::register_counter,
        );
        if let Some(counter) = counter {
            counter.increment(delta);
        }
    }

    fn gauge(&self, bucket: &str, value: f64, _sample_rate: f64) {
        let gauge = self.inner.handle(
            Kind::Gauge,
            bucket,
            |s| &s.gauges,
            |s| &mut s.gauges,
            <PrometheusRecorder as Recorder>::register_gauge,
        );
        if let Some(gauge) = gauge {
            gauge.set(value);
        }
    }

    fn timing(&self, bucket: &str, elapsed: Duration, _sample_rate: f64) {
        let histogram = self.inner.handle(
            Kind::Histogram,
            bucket,
            |s| &s.histograms,
            |s| &mut s.histograms,
            <PrometheusRecorder as Recorder>::register_histogram,
        );
        if let Some(histogram) = histogram {
            {
                let _recording = self
                    .inner
                    .draining
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                histogram.record(elapsed.as_secs_f64());
            }
            if self.inner.timings.fetch_add(1, Ordering::Relaxed) % UPKEEP_EVERY == UPKEEP_EVERY - 1
            {
                let _alone = self.inner.drain();
                self.inner.handle.run_upkeep();
            }
        }
    }
}
