//! The Prometheus exporter's names, kinds and bounds, and the probe listener over real HTTP.
#![cfg(feature = "prometheus")]
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kernel_inst::http::{CONNECTION_TIMEOUT, HEADER_READ_TIMEOUT, Probes, serve_probes};
use kernel_inst::{Instrumenter, MAX_BUCKET_LEN, PrometheusInstrumenter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long any one network step of a test may take before it fails.
const STEP: Duration = Duration::from_secs(5);

/// The sample lines of `text` (comments left out), for exact assertions.
fn samples(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

fn assert_has(text: &str, line: &str) {
    assert!(
        samples(text).contains(&line),
        "missing `{line}` in:\n{text}"
    );
}

/// Counters, gauges and timings of H2's bucket names appear under their mapped names.
#[test]
fn counters_gauges_and_timings_render_under_mapped_names() {
    let prometheus = PrometheusInstrumenter::new();
    prometheus.counter("server.error.kernel.server.capacity", 2, 1.0);
    prometheus.counter("server.error.kernel.server.capacity", 3, 1.0);
    prometheus.gauge("server.inflight", 7.5, 1.0);
    prometheus.timing("success.hello", Duration::from_millis(12), 1.0);
    prometheus.timing(
        "client.com.example.greeter.hello.success",
        Duration::from_millis(300),
        1.0,
    );

    let text = prometheus.render();
    assert_has(&text, "kernel_server_error_kernel_server_capacity_total 5");
    assert!(text.contains("# TYPE kernel_server_error_kernel_server_capacity_total counter\n"));
    assert_has(&text, "kernel_server_inflight 7.5");
    assert!(text.contains("# TYPE kernel_server_inflight gauge\n"));
    assert!(text.contains("# TYPE kernel_success_hello_seconds histogram\n"));
    assert_has(&text, "kernel_success_hello_seconds_bucket{le=\"0.01\"} 0");
    assert_has(&text, "kernel_success_hello_seconds_bucket{le=\"0.025\"} 1");
    assert_has(&text, "kernel_success_hello_seconds_bucket{le=\"+Inf\"} 1");
    assert_has(&text, "kernel_success_hello_seconds_sum 0.012");
    assert_has(&text, "kernel_success_hello_seconds_count 1");
    assert_has(
        &text,
        "kernel_client_com_example_greeter_hello_success_seconds_bucket{le=\"0.25\"} 0",
    );
    assert_has(
        &text,
        "kernel_client_com_example_greeter_hello_success_seconds_bucket{le=\"0.5\"} 1",
    );
    assert_has(&text, "kernel_dropped_series_total 0");
}

/// Every character outside `[a-zA-Z0-9_]` becomes `_`, and names differing only there share.
#[test]
fn other_characters_become_underscores_and_such_names_share_a_series() {
    let prometheus = PrometheusInstrumenter::new();
    prometheus.counter("sync.regionleader.remotely-rescinded", 1, 1.0);
    prometheus.counter("client.error.com:example/bad code", 1, 1.0);
    prometheus.counter("café.öl", 1, 1.0);
    prometheus.counter("a.b", 1, 1.0);
    prometheus.counter("a-b", 1, 1.0);
    prometheus.counter("a_b", 1, 1.0);

    let text = prometheus.render();
    assert_has(&text, "kernel_sync_regionleader_remotely_rescinded_total 1");
    assert_has(&text, "kernel_client_error_com_example_bad_code_total 1");
    assert_has(&text, "kernel_caf___l_total 1");
    assert_has(&text, "kernel_a_b_total 3");
    for line in samples(&text) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "`{name}` is not a plain Prometheus name"
        );
    }
    assert_eq!(prometheus.dropped(), 0);
}

/// A counter only goes up: negative deltas are ignored, a zero delta creates the series.
#[test]
fn negative_counter_deltas_are_ignored_and_zero_creates_the_series() {
    let prometheus = PrometheusInstrumenter::new();
    prometheus.counter("hits", 5, 1.0);
    prometheus.counter("hits", -3, 1.0);
    prometheus.counter("declared", 0, 1.0);
    prometheus.counter("only.negative", -1, 1.0);

    let text = prometheus.render();
    assert_has(&text, "kernel_hits_total 5");
    assert_has(&text, "kernel_declared_total 0");
    assert!(!text.contains("kernel_only_negative"), "{text}");
}

/// Sample rates do not thin recordings: every event counts, as in `MemoryInstrumenter`.
#[test]
fn every_event_is_recorded_whatever_its_sample_rate() {
    let prometheus = PrometheusInstrumenter::new();
    for _ in 0..100 {
        prometheus.counter("c", 1, 0.01);
        prometheus.timing("t", Duration::from_millis(1), 0.1);
    }
    let text = prometheus.render();
    assert_has(&text, "kernel_c_total 100");
    assert_has(&text, "kernel_t_seconds_count 100");
}

/// Timings folded in by upkeep (every 1024th) and by renders add up to every one recorded.
#[test]
fn no_timing_is_lost_across_upkeeps_and_renders() {
    let prometheus = PrometheusInstrumenter::new();
    for i in 0..3000 {
        prometheus.timing("t", Duration::from_millis(1), 1.0);
        if i == 1500 {
            prometheus.render();
        }
    }
    assert_has(&prometheus.render(), "kernel_t_seconds_count 3000");
}

/// Past the bound, new buckets are dropped and counted; known ones keep recording.
#[test]
fn buckets_beyond_the_bound_are_dropped_and_counted() {
    let prometheus = PrometheusInstrumenter::with_max_series(2);
    prometheus.counter("first", 1, 1.0);
    prometheus.timing("second", Duration::from_millis(1), 1.0);
    prometheus.counter("third", 1, 1.0);
    prometheus.gauge("fourth", 1.0, 1.0);
    prometheus.counter("third", 1, 1.0);
    prometheus.counter("first", 1, 1.0);

    let text = prometheus.render();
    assert_has(&text, "kernel_first_total 2");
    assert_has(&text, "kernel_second_seconds_count 1");
    assert!(!text.contains("kernel_third") && !text.contains("kernel_fourth"));
    assert_has(&text, "kernel_dropped_series_total 3");
    assert_eq!(prometheus.dropped(), 3);
}

/// A bucket longer than `MAX_BUCKET_LEN` bytes is dropped and counted.
#[test]
fn over_long_buckets_are_dropped_and_counted() {
    let prometheus = PrometheusInstrumenter::new();
    prometheus.counter(&"x".repeat(MAX_BUCKET_LEN), 1, 1.0);
    prometheus.counter(&"y".repeat(MAX_BUCKET_LEN + 1), 1, 1.0);

    let text = prometheus.render();
    assert_has(
        &text,
        &format!("kernel_{}_total 1", "x".repeat(MAX_BUCKET_LEN)),
    );
    assert!(!text.contains("kernel_yyy"));
    assert_eq!(prometheus.dropped(), 1);
}

/// A bucket that would show a name another kind already shows is dropped, so that the
/// exposition never holds two families of one name.
#[test]
fn a_bucket_clashing_with_another_kinds_names_is_dropped() {
    let prometheus = PrometheusInstrumenter::new();
    prometheus.timing("x", Duration::from_millis(1), 1.0);
    prometheus.gauge("x.seconds.count", 1.0, 1.0);
    prometheus.gauge("x.seconds", 1.0, 1.0);
    prometheus.counter("y", 1, 1.0);
    prometheus.gauge("y.total", 1.0, 1.0);
    prometheus.counter("dropped.series", 1, 1.0);
    // Same bucket, other kind, distinct names: allowed.
    prometheus.counter("x", 1, 1.0);
    prometheus.gauge("x", 2.0, 1.0);

    let text = prometheus.render();
    assert_eq!(prometheus.dropped(), 4);
    assert_has(&text, "kernel_dropped_series_total 4");
    assert_has(&text, "kernel_x_seconds_count 1");
    assert_has(&text, "kernel_x_total 1");
    assert_has(&text, "kernel_x 2");
    assert_has(&text, "kernel_y_total 1");
    let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
    let families: std::collections::BTreeSet<_> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(types, families.len(), "a family is declared twice:\n{text}");
}

/// Clones share one registry, and threads record into it concurrently.
#[test]
fn clones_share_one_registry_across_threads() {
    let prometheus = PrometheusInstrumenter::new();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let prometheus = prometheus.clone();
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    prometheus.counter("c", 1, 1.0);
                    prometheus.timing("t", Duration::from_micros(10), 1.0);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let text = prometheus.render();
    assert_has(&text, "kernel_c_total 4000");
    assert_has(&text, "kernel_t_seconds_count 4000");
}

/// Ready when the flag says so; live unless told otherwise.
struct Flags {
    live: AtomicBool,
    ready: AtomicBool,
}

impl Probes for Flags {
    fn live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// A probe listener on `127.0.0.1:0`, stopped by sending on the returned channel.
struct Listener {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    served: JoinHandle<()>,
}

async fn start(metrics: PrometheusInstrumenter, probes: Arc<Flags>) -> Listener {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(serve_probes(listener, metrics, probes, stopped));
    Listener {
        address,
        stop,
        served,
    }
}

impl Listener {
    /// Stops the listener; fails if serving does not end within `within`.
    async fn stop(self, within: Duration) {
        self.stop.send(()).unwrap();
        timeout(within, self.served)
            .await
            .unwrap_or_else(|_| panic!("serve_probes did not return within {within:?} of shutdown"))
            .unwrap();
    }
}

/// One response: status code, head (status line and headers) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: String,
}

/// Sends `method path` over a fresh connection and reads the whole response (the listener
/// closes after one).
async fn request(address: SocketAddr, method: &str, path: &str) -> Reply {
    let what = format!("{method} {path}");
    let exchange = async {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("{method} {path} HTTP/1.1\r\nHost: probes\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = timeout(STEP, exchange)
        .await
        .unwrap_or_else(|_| panic!("no complete response to {what} within {STEP:?}"));
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{what}: no end of head in {raw:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no status in {head:?}"));
    Reply {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_owned(),
    }
}

/// `/metrics`, `/healthz`, `/readyz`, unknown paths and other methods, over real HTTP.
#[tokio::test]
async fn the_listener_serves_metrics_and_probes_over_http() {
    let metrics = PrometheusInstrumenter::new();
    metrics.counter("server.error.kernel.server.capacity", 1, 1.0);
    let probes = Arc::new(Flags {
        live: AtomicBool::new(true),
        ready: AtomicBool::new(false),
    });
    let listener = start(metrics.clone(), Arc::clone(&probes)).await;
    let address = listener.address;

    let scrape = request(address, "GET", "/metrics").await;
    assert_eq!(scrape.status, 200, "{scrape:?}");
    assert!(
        scrape
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{scrape:?}"
    );
    assert_has(
        &scrape.body,
        "kernel_server_error_kernel_server_capacity_total 1",
    );

    metrics.counter("server.error.kernel.server.capacity", 1, 1.0);
    let scrape = request(address, "GET", "/metrics?ignored=query").await;
    assert_has(
        &scrape.body,
        "kernel_server_error_kernel_server_capacity_total 2",
    );

    let health = request(address, "GET", "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));

    let ready = request(address, "GET", "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (503, "not ready\n"));
    probes.ready.store(true, Ordering::SeqCst);
    let ready = request(address, "GET", "/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));

    probes.live.store(false, Ordering::SeqCst);
    let health = request(address, "GET", "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (503, "not live\n"));

    assert_eq!(request(address, "GET", "/").await.status, 404);
    assert_eq!(request(address, "GET", "/metrics/extra").await.status, 404);
    let post = request(address, "POST", "/metrics").await;
    assert_eq!(post.status, 405, "{post:?}");
    assert!(post.head.contains("allow: get"), "{post:?}");
    assert_eq!(request(address, "HEAD", "/healthz").await.status, 405);

    listener.stop(STEP).await;
}

/// Shutdown does not wait for a client that connected but never sent a request.
#[tokio::test]
async fn shutdown_closes_a_connection_that_sent_nothing() {
    let probes = Arc::new(Flags {
        live: AtomicBool::new(true),
        ready: AtomicBool::new(true),
    });
    let listener = start(PrometheusInstrumenter::new(), probes).await;
    let mut silent = TcpStream::connect(listener.address).await.unwrap();
    // A full exchange proves the silent connection has been accepted before shutdown.
    assert_eq!(
        request(listener.address, "GET", "/healthz").await.status,
        200
    );

    listener.stop(HEADER_READ_TIMEOUT / 2).await;
    let mut rest = Vec::new();
    let read = timeout(STEP, silent.read_to_end(&mut rest))
        .await
        .expect("the silent connection was not closed by shutdown");
    assert!(read.is_ok_and(|n| n == 0), "{rest:?}");
}

/// A client that starts a request and never finishes its headers is disconnected after the
/// header read timeout (on tokio's paused clock, so the test does not wait for it).
#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let probes = Arc::new(Flags {
        live: AtomicBool::new(true),
        ready: AtomicBool::new(true),
    });
    let listener = start(PrometheusInstrumenter::new(), probes).await;
    let mut slow = TcpStream::connect(listener.address).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: pro")
        .await
        .unwrap();

    // Shorter than the connection timeout, so only the header read timeout can end it.
    let within = HEADER_READ_TIMEOUT + Duration::from_secs(1);
    assert!(within < CONNECTION_TIMEOUT);
    let mut rest = Vec::new();
    let read = timeout(within, slow.read_to_end(&mut rest))
        .await
        .expect("the slow client was still connected after the header read timeout");
    assert!(read.is_ok(), "{read:?}");
    assert!(
        !String::from_utf8_lossy(&rest).contains(" 200 "),
        "{rest:?}"
    );

    listener.stop(STEP).await;
}
