//! `kernel bench SERVICE ENDPOINT [JSON]`: `count` calls, `concurrency` at a time, then
//! throughput and latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::call::{parse_request, raw_call};
use super::{out, out_json};
use crate::context::Context;
use crate::failure::Failure;
use crate::table::{Table, ms};

pub(crate) async fn run(
    context: &Context,
    service: &str,
    endpoint: &str,
    request: &str,
    count: u64,
    concurrency: u64,
) -> Result<(), Failure> {
    if count == 0 || concurrency == 0 {
        return Err(Failure::usage(
            "--count and --concurrency must be at least 1",
        ));
    }
    let request = Arc::new(parse_request(request).await?);
    let client = context.client().await?;
    let session: Option<Arc<str>> = context.session()?.map(Arc::from);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count) {
        let (client, request, session, next) = (
            client.clone(),
            Arc::clone(&request),
            session.clone(),
            Arc::clone(&next),
        );
        let (service, endpoint) = (service.to_owned(), endpoint.to_owned());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: Vec<kernel_errors::Error> = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let start = Instant::now();
                match raw_call(&client, &service, &endpoint, &request, session.as_deref()).await {
                    Ok(_) => latencies.push(start.elapsed()),
                    Err(error) => errors.push(error),
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies: Vec<Duration> = Vec::new();
    let mut errors = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (mut l, mut e) = done.map_err(Failure::other)?;
        latencies.append(&mut l);
        errors.append(&mut e);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let report = Report::new(&latencies, errors.len() as u64, elapsed);
    if context.global.json {
        out_json(&report.json())?;
    } else {
        out(report.table());
    }
    match errors.into_iter().next() {
        // Every call failing is a failure of the run; some failing is in the report.
        Some(first) if latencies.is_empty() => Err(first.into()),
        _ => Ok(()),
    }
}

#[derive(Debug)]
struct Report {
    ok: u64,
    errors: u64,
    seconds: f64,
    rate: f64,
    percentiles: [(&'static str, f64); 4],
}

impl Report {
    fn new(sorted: &[Duration], errors: u64, elapsed: Duration) -> Self {
        let ok = sorted.len() as u64;
        let seconds = elapsed.as_secs_f64();
        let at = |q: f64| -> f64 {
            if sorted.is_empty() {
                return 0.0;
            }
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1].as_secs_f64() * 1000.0
        };
        Report {
            ok,
            errors,
            seconds,
            rate: if seconds > 0.0 {
                (ok + errors) as f64 / seconds
            } else {
                0.0
            },
            percentiles: [
                ("p50", at(0.5)),
                ("p90", at(0.9)),
                ("p99", at(0.99)),
                ("max", at(1.0)),
            ],
        }
    }

    fn json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "ok": self.ok,
            "errors": self.errors,
            "seconds": self.seconds,
            "calls_per_second": self.rate,
        });
        for (name, ms) in self.percentiles {
            value[format!("{name}_ms")] = serde_json::json!(ms);
        }
        value
    }

    fn table(&self) -> String {
        let mut table = Table::new([
            "CALLS", "ERRORS", "SECONDS", "CALLS/S", "P50", "P90", "P99", "MAX",
        ]);
        let mut row = vec![
            self.ok.to_string(),
            self.errors.to_string(),
            format!("{:.2}", self.seconds),
            format!("{:.1}", self.rate),
        ];
        row.extend(self.percentiles.iter().map(|(_, v)| ms(*v)));
        table.row(row);
        table.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<_> = (1..=100).map(Duration::from_millis).collect();
        let report = Report::new(&sorted, 0, Duration::from_secs(2));
        assert_eq!(report.rate, 50.0);
        assert_eq!(report.percentiles[0].1, 50.0);
        assert_eq!(report.percentiles[2].1, 99.0);
        assert_eq!(report.percentiles[3].1, 100.0);
    }
}
