//! A failed span export is logged through the subscriber `kernel::telemetry::init` installed.
//!
//! Its own test binary: it installs the global subscriber, which the exporter's thread logs to.

#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::io;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use kernel::telemetry::{self, LogConfig};
use tracing_subscriber::fmt::MakeWriter;

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// With no collector listening, the spans flushed when the guard is dropped fail to export,
/// and an operator sees it: a `WARN` line saying spans may be lost, with the SDK's reason.
#[test]
fn an_unreachable_collector_at_shutdown_is_logged() {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = LogConfig::default();
    config.filter = "info".to_owned();
    config.otlp_endpoint = Some(format!("http://{}", closed.local_addr().unwrap()));
    drop(closed);

    let output = Captured::default();
    let telemetry =
        telemetry::init_with_writer("com.example.greeter", &config, output.clone()).unwrap();
    tracing::info_span!("request", trace_id = "4bf92f3577b34da6a3ce929d0e0e4736").in_scope(|| {});
    // Dropping waits (at most 10 s) for the export, which fails at once: connection refused.
    drop(telemetry);

    let logged = String::from_utf8(output.0.lock().unwrap().clone()).unwrap();
    assert!(
        logged
            .lines()
            .any(|line| line.contains("WARN") && line.contains("HTTP export failed")),
        "{logged}"
    );
}
