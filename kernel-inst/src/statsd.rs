//! [`StatsdInstrumenter`]: metrics to statsd over UDP, from a background thread.

use std::net::{ToSocketAddrs, UdpSocket};
use std::panic::RefUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cadence::prelude::*;
use cadence::{MetricSink, QueuingMetricSink, StatsdClient, UdpMetricSink};

use crate::Instrumenter;

/// How many metrics may wait for the sender thread before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;

/// Sends metrics to a statsd server: `<namespace>.<bucket>:<value>|<type>[|@<rate>]`.
///
/// Lines are formatted by [cadence] and handed to a bounded queue; one background thread sends
/// each as a UDP datagram. A caller therefore never waits on the network: a slow, dead or
/// absent statsd costs it nothing, and when the queue is full the metric is dropped and counted
/// ([`dropped`](Self::dropped)). Sampling is decided here: at rate `r < 1` each event is sent
/// with probability `r`, tagged `|@r`, so the statsd server scales counts back up.
///
/// | call | line |
/// |---|---|
/// | `counter("server.error.x", 1, 1.0)` | `svc.server.error.x:1\|c` |
/// | `gauge("inflight", 3.0, 1.0)` | `svc.inflight:3\|g` |
/// | `timing("success.get", 12ms, 0.5)` | `svc.success.get:12\|ms\|@0.5` (half the time) |
///
/// Timings are whole milliseconds, as statsd expects.
///
/// ```
/// use std::time::Duration;
/// use kernel_inst::{Instrumenter, StatsdInstrumenter};
///
/// # fn main() -> Result<(), kernel_inst::StatsdError> {
/// let statsd = StatsdInstrumenter::builder("com.example.users").build("127.0.0.1:8125")?;
/// statsd.timing("success.get", Duration::from_millis(12), 1.0);
/// # Ok(()) }
/// ```
pub struct StatsdInstrumenter {
    client: StatsdClient,
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for StatsdInstrumenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsdInstrumenter")
            .field("dropped", &self.dropped())
            .finish_non_exhaustive()
    }
}

/// Builds a [`StatsdInstrumenter`]; see [`StatsdInstrumenter::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct StatsdBuilder {
    namespace: String,
    queue_capacity: usize,
}

/// The statsd sink could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StatsdError {
    /// The statsd address did not resolve. Permanent until the configuration is fixed.
    #[error("statsd address {address} does not resolve")]
    Resolve {
        /// The address as given.
        address: String,
        /// Why resolution failed.
        #[source]
        source: std::io::Error,
    },
    /// No local UDP socket could be opened. Transient (e.g. out of file descriptors).
    #[error("cannot open a UDP socket for statsd")]
    Socket(#[source] std::io::Error),
}

impl StatsdInstrumenter {
    /// Starts building an instrumenter whose buckets go under `namespace` (usually the service
    /// name, e.g. `com.example.users`).
    pub fn builder(namespace: impl Into<String>) -> StatsdBuilder {
        StatsdBuilder {
            namespace: namespace.into(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
        }
    }

    /// Metrics dropped so far because the queue was full or the datagram could not be sent.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl StatsdBuilder {
    /// How many metrics may wait for the sender thread; default [`DEFAULT_QUEUE_CAPACITY`].
    pub fn queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// Sends to the statsd server at `address` (e.g. `"127.0.0.1:8125"`), resolved once.
    ///
    /// # Errors
    /// [`StatsdError::Resolve`] if the address does not resolve, [`StatsdError::Socket`] if no
    /// UDP socket can be opened. Nothing is sent yet, so an unreachable server is not an error.
    pub fn build(
        self,
        address: impl ToSocketAddrs + std::fmt::Debug,
    ) -> Result<StatsdInstrumenter, StatsdError> {
        let resolve_error = |source| StatsdError::Resolve {
            address: format!("{address:?}"),
            source,
        };
        let target = address
            .to_socket_addrs()
            .map_err(resolve_error)?
            .next()
            .ok_or_else(|| resolve_error(std::io::ErrorKind::NotFound.into()))?;
        let local = if target.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let socket = UdpSocket::bind(local).map_err(StatsdError::Socket)?;
        socket.set_nonblocking(true).map_err(StatsdError::Socket)?;
        let sink = UdpMetricSink::from(target, socket)
            .map_err(|e| StatsdError::Socket(std::io::Error::other(e)))?;
        Ok(self.build_with_sink(sink))
    }

    /// Sends through any cadence sink (a Unix socket, a test spy, …), still behind the queue.
    pub fn build_with_sink<S>(self, sink: S) -> StatsdInstrumenter
    where
        S: MetricSink + Send + Sync + RefUnwindSafe + 'static,
    {
        let dropped = Arc::new(AtomicU64::new(0));
        let send_failures = Arc::clone(&dropped);
        let queued = QueuingMetricSink::builder()
            .with_capacity(self.queue_capacity)
            .with_error_handler(move |_| {
                send_failures.fetch_add(1, Ordering::Relaxed);
            })
            .build(sink);
        let queue_full = Arc::clone(&dropped);
        let client = StatsdClient::builder(&self.namespace, queued)
            .with_error_handler(move |_| {
                queue_full.fetch_add(1, Ordering::Relaxed);
            })
            .build();
        StatsdInstrumenter { client, dropped }
    }
}

/// Whether to record one event sampled at `rate`: always at 1 or more, never at 0 or less
/// (or NaN), otherwise with probability `rate`.
fn sampled(rate: f64) -> bool {
    rate >= 1.0 || (rate > 0.0 && rand::random::<f64>() < rate)
}

/// Sends a cadence metric builder, tagging the sample rate when it is below 1.
macro_rules! send_sampled {
    ($builder:expr, $rate:expr) => {{
        let rate = $rate;
        if sampled(rate) {
            let builder = $builder;
            if rate < 1.0 {
                builder.with_sampling_rate(rate).send();
            } else {
                builder.send();
            }
        }
    }};
}

impl Instrumenter for StatsdInstrumenter {
    fn counter(&self, bucket: &str, delta: i64, sample_rate: f64) {
        send_sampled!(self.client.count_with_tags(bucket, delta), sample_rate);
    }

    fn gauge(&self, bucket: &str, value: f64, sample_rate: f64) {
        send_sampled!(self.client.gauge_with_tags(bucket, value), sample_rate);
    }

    fn timing(&self, bucket: &str, elapsed: Duration, sample_rate: f64) {
        send_sampled!(self.client.time_with_tags(bucket, elapsed), sample_rate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_at_the_edges_are_all_or_nothing() {
        assert!((0..1000).all(|_| sampled(1.0)));
        assert!((0..1000).all(|_| sampled(2.0)));
        assert!((0..1000).all(|_| !sampled(0.0)));
        assert!((0..1000).all(|_| !sampled(-1.0)));
        assert!((0..1000).all(|_| !sampled(f64::NAN)));
    }

    #[test]
    fn an_unresolvable_address_is_a_typed_error() {
        let error = StatsdInstrumenter::builder("svc")
            .build("no-such-host.invalid:8125")
            .unwrap_err();
        assert!(matches!(error, StatsdError::Resolve { .. }), "{error:?}");
    }
}
