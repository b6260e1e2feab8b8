//! The statsd sink against a real UDP socket, and its sampling and back-pressure behaviour.
#![cfg(feature = "statsd")]
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::collections::BTreeSet;
use std::io;
use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cadence::MetricSink;
use kernel_inst::{Instrumenter, StatsdInstrumenter};

/// A statsd "server": a UDP socket on loopback that gives up reading after a bounded wait.
fn statsd_server() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a loopback UDP socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("set a read timeout");
    socket
}

/// Reads `n` datagrams; fails naming how many arrived if the bounded wait runs out.
fn receive_lines(socket: &UdpSocket, n: usize) -> Vec<String> {
    let mut buf = [0u8; 1024];
    (0..n)
        .map(|i| {
            let len = socket.recv(&mut buf).unwrap_or_else(|e| {
                panic!("datagram {} of {n} did not arrive within 5 s: {e}", i + 1)
            });
            String::from_utf8(buf[..len].to_vec()).expect("statsd lines are UTF-8")
        })
        .collect()
}

/// Every kind of metric arrives as one datagram with the namespace, value, type and rate.
#[test]
fn lines_arrive_on_a_real_udp_socket_with_names_types_and_rates() {
    let server = statsd_server();
    let statsd = StatsdInstrumenter::builder("com.example.users")
        .build(server.local_addr().unwrap())
        .unwrap();

    statsd.counter("server.error.kernel.server.capacity", 3, 1.0);
    statsd.gauge("server.inflightrequests.caller", 7.0, 1.0);
    statsd.timing("success.get", Duration::from_millis(12), 1.0);
    // A rate of (just below) one is sampled but (almost) always kept, and tagged.
    statsd.counter("auth.cache.fetch.hit", 1, 0.999_999);

    let lines: BTreeSet<_> = receive_lines(&server, 4).into_iter().collect();
    let expected: BTreeSet<_> = [
        "com.example.users.server.error.kernel.server.capacity:3|c",
        "com.example.users.server.inflightrequests.caller:7|g",
        "com.example.users.success.get:12|ms",
        "com.example.users.auth.cache.fetch.hit:1|c|@0.999999",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(lines, expected);
    assert_eq!(statsd.dropped(), 0);
}

/// Sampled lines carry their rate so that the statsd server can scale them back up.
#[test]
fn sampled_lines_carry_their_rate() {
    let server = statsd_server();
    let statsd = StatsdInstrumenter::builder("svc")
        .build(server.local_addr().unwrap())
        .unwrap();
    // At rate 0.5, 64 events send none with probability 2^-64.
    for _ in 0..64 {
        statsd.timing("success.get", Duration::from_millis(5), 0.5);
    }
    let line = &receive_lines(&server, 1)[0];
    assert_eq!(line, "svc.success.get:5|ms|@0.5");
}

/// Counts what reaches the sink, standing in for the network, and says when `end` arrives.
struct CountingSink {
    kept: Arc<AtomicU64>,
    end: std::sync::mpsc::SyncSender<()>,
}

impl MetricSink for CountingSink {
    fn emit(&self, metric: &str) -> io::Result<usize> {
        if metric.starts_with("svc.end:") {
            let _ = self.end.try_send(());
        } else {
            self.kept.fetch_add(1, Ordering::Relaxed);
        }
        Ok(metric.len())
    }
}

/// Sends `events` counters at `rate` through a counting sink and returns how many were sent.
fn kept_at(rate: f64, events: u64) -> u64 {
    let kept = Arc::new(AtomicU64::new(0));
    let (end, ended) = std::sync::mpsc::sync_channel(1);
    let statsd = StatsdInstrumenter::builder("svc")
        .queue_capacity(usize::try_from(events + 1).unwrap())
        .build_with_sink(CountingSink {
            kept: Arc::clone(&kept),
            end,
        });
    for _ in 0..events {
        statsd.counter("hits", 1, rate);
    }
    // The queue is FIFO: once `end` is sent, every kept event before it has been too.
    statsd.counter("end", 1, 1.0);
    ended
        .recv_timeout(Duration::from_secs(10))
        .expect("the sender thread drained the queue within 10 s");
    assert_eq!(statsd.dropped(), 0);
    kept.load(Ordering::Relaxed)
}

/// Sampling at rate r keeps about r of the events: 20,000 draws at r = 0.1 keep 2,000 on
/// average with a standard deviation of about 42; the bounds are seven deviations wide.
#[test]
fn sampling_at_rate_r_keeps_about_r_of_the_events() {
    let kept = kept_at(0.1, 20_000);
    assert!(
        (1_700..=2_300).contains(&kept),
        "kept {kept} of 20000 at rate 0.1"
    );
    let kept = kept_at(0.5, 20_000);
    assert!(
        (9_500..=10_500).contains(&kept),
        "kept {kept} of 20000 at rate 0.5"
    );
    assert_eq!(kept_at(1.0, 1_000), 1_000);
}

/// A sink that does not finish sending until the test lets it: the worst a dead statsd can do.
struct StuckSink(std::sync::Mutex<std::sync::mpsc::Receiver<()>>);

impl MetricSink for StuckSink {
    fn emit(&self, _metric: &str) -> io::Result<usize> {
        let release = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = release.recv(); // returns once the test drops the sender
        Ok(0)
    }
}

/// When the sender is stuck, callers are not: the queue fills, then metrics are dropped and
/// counted, and every call returns.
#[test]
fn a_stuck_statsd_never_blocks_the_caller() {
    let (release, stuck) = std::sync::mpsc::channel();
    let statsd = StatsdInstrumenter::builder("svc")
        .queue_capacity(16)
        .build_with_sink(StuckSink(std::sync::Mutex::new(stuck)));
    for _ in 0..10_000 {
        statsd.counter("hits", 1, 1.0);
    }
    // At most the queue plus the one metric the sender holds got through; the rest dropped.
    assert!(
        statsd.dropped() >= 10_000 - 17,
        "dropped only {}",
        statsd.dropped()
    );
    drop(release);
}

/// A statsd that is not running is not an error for the caller.
#[test]
fn an_absent_statsd_is_not_an_error() {
    let port = {
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    }; // nothing listens on this port any more
    let statsd = StatsdInstrumenter::builder("svc")
        .build(("127.0.0.1", port))
        .unwrap();
    for _ in 0..1_000 {
        statsd.counter("hits", 1, 1.0);
        statsd.timing("took", Duration::from_millis(1), 1.0);
    }
}
