//! `kernel bench SERVICE ENDPOINT [JSON]`: calls, `concurrency` at a time, until `--count`
//! calls are made or `--duration` has passed, whichever comes first; then throughput,
//! latency percentiles and a latency histogram ([`report`]).
//!
//! A progress bar (indicatif) shows on stderr when stderr is a terminal.

mod report;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use self::report::{Report, Tally};
use super::call::{parse_request, raw_call};
use super::{out, out_json};
use crate::context::Context;
use crate::failure::Failure;

/// Calls made when neither `--count` nor `--duration` is given.
pub(crate) const DEFAULT_COUNT: u64 = 100;
/// The most calls in flight at once.
pub(crate) const MAX_CONCURRENCY: u64 = 1024;

/// What `kernel bench` was asked for.
#[derive(Debug)]
pub(crate) struct Bench {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) request: String,
    pub(crate) count: Option<u64>,
    pub(crate) concurrency: u64,
    pub(crate) duration: Option<Duration>,
}

/// When a run stops starting calls: after `count` calls, or once `deadline` has passed.
/// Calls in flight then finish (each bounded by `--timeout`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// At most this many calls.
    pub(crate) count: u64,
    /// No call starts at or after this instant.
    pub(crate) deadline: Option<Instant>,
}

impl Limits {
    /// The limits of a run that starts at `start`: `--count` (default [`DEFAULT_COUNT`], or
    /// none with `--duration` alone) and `--duration`.
    pub(crate) fn new(count: Option<u64>, duration: Option<Duration>, start: Instant) -> Self {
        let count = match (count, duration) {
            (Some(count), _) => count,
            (None, Some(_)) => u64::MAX,
            (None, None) => DEFAULT_COUNT,
        };
        Limits {
            count,
            deadline: duration.map(|d| start + d),
        }
    }

    /// Whether call number `issued` (counting from 0) may start at `now`.
    pub(crate) fn may_start(&self, issued: u64, now: Instant) -> bool {
        issued < self.count && self.deadline.is_none_or(|deadline| now < deadline)
    }
}

pub(crate) async fn run(context: &Context, bench: Bench) -> Result<(), Failure> {
    if bench.count == Some(0) || bench.concurrency == 0 {
        return Err(Failure::usage(
            "--count and --concurrency must be at least 1",
        ));
    }
    if bench.concurrency > MAX_CONCURRENCY {
        return Err(Failure::usage(format!(
            "--concurrency is at most {MAX_CONCURRENCY}"
        )));
    }
    let request = Arc::new(parse_request(&bench.request).await?);
    let client = context.client().await?;
    let session: Option<Arc<str>> = context.session()?.map(Arc::from);
    let started = Instant::now();
    let limits = Limits::new(bench.count, bench.duration, started);
    let progress = progress_bar(&limits, bench.duration);
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..bench.concurrency.min(limits.count) {
        let (client, request, session, issued, progress) = (
            client.clone(),
            Arc::clone(&request),
            session.clone(),
            Arc::clone(&issued),
            progress.clone(),
        );
        let (service, endpoint) = (bench.service.clone(), bench.endpoint.clone());
        workers.spawn(async move {
            let mut tally = Tally::new()?;
            while limits.may_start(issued.fetch_add(1, Ordering::Relaxed), Instant::now()) {
                let start = Instant::now();
                let outcome =
                    raw_call(&client, &service, &endpoint, &request, session.as_deref()).await;
                tally.record(outcome.map(|_| start.elapsed()));
                progress.inc(1);
            }
            Ok::<_, Failure>(tally)
        });
    }
    let mut total = Tally::new()?;
    while let Some(done) = workers.join_next().await {
        total.merge(done.map_err(Failure::other)??)?;
    }
    let elapsed = started.elapsed();
    progress.finish_and_clear();
    let stopped_by_count = total.calls() >= limits.count;
    let report = Report::new(&total, elapsed, stopped_by_count);
    if context.global.json {
        out_json(&report.json())?;
    } else {
        out(report.render(context.paint()));
    }
    match total.into_first_error() {
        // Every call failing is a failure of the run (its first error says why, on stderr);
        // some failing is in the report.
        Some(first) if report.ok == 0 => Err(Failure::Reported(Box::new(first.into()))),
        _ => Ok(()),
    }
}

/// A bar of calls made (a spinner when only a duration bounds the run), on stderr when it
/// is a terminal; hidden otherwise, so that logs and pipes get no control codes.
fn progress_bar(limits: &Limits, duration: Option<Duration>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = if limits.count == u64::MAX {
        let bar = ProgressBar::new_spinner();
        let of = duration.map_or_else(String::new, |d| format!(" of {d:?}"));
        bar.set_message(of);
        (bar, "{spinner} {pos} calls in {elapsed}{msg}")
    } else {
        (
            ProgressBar::new(limits.count),
            "{bar:40} {pos}/{len} calls in {elapsed} (eta {eta})",
        )
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_stops_at_the_count_or_the_deadline_whichever_comes_first() {
        let start = Instant::now();
        let later = |ms| start + Duration::from_millis(ms);

        let count_only = Limits::new(Some(3), None, start);
        assert!(count_only.may_start(2, later(1_000_000)));
        assert!(!count_only.may_start(3, start));

        let both = Limits::new(Some(3), Some(Duration::from_secs(1)), start);
        assert!(both.may_start(0, later(999)));
        assert!(!both.may_start(0, later(1000)), "the deadline passed first");
        assert!(!both.may_start(3, later(1)), "the count was reached first");

        let duration_only = Limits::new(None, Some(Duration::from_secs(1)), start);
        assert!(duration_only.may_start(1_000_000, later(999)));
        assert!(!duration_only.may_start(0, later(1000)));

        assert_eq!(Limits::new(None, None, start).count, DEFAULT_COUNT);
    }
}
