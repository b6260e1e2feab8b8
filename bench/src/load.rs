//! The load every client role applies: a warm-up, then a fixed number of calls at a fixed
//! concurrency, each caller its own task, latencies in an HdrHistogram.
//!
//! The count is what the warm-up's rate makes last [`Pace::seconds`], so that the raw and the
//! kernel run each last about as long whatever their speed; a fixed count (`--calls`) skips the
//! estimate. Every loop is bounded twice: by its count and by a time limit, and every call by
//! [`CALL_TIMEOUT`] (a lost reply is an error, not a hang).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::report::{self, Line, Measured};

/// Longest wait for one reply.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Most calls a run makes, whatever its estimate.
const MAX_CALLS: u64 = 50_000_000;
/// The shortest warm-up that sizes a run when none is asked for and no count is given.
const PILOT: Duration = Duration::from_millis(200);
/// Highest latency the histograms hold, in nanoseconds (higher ones count as this).
const HIGHEST_NANOS: u64 = 60_000_000_000;

/// One echo call, as each system makes it.
pub(crate) trait Echo: Send + Sync + 'static {
    /// Sends one request and waits for its reply; the error says why there was none.
    fn call(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// How long a client runs.
#[derive(Debug, Clone)]
pub(crate) struct Pace {
    /// Calls before measuring, unrecorded.
    pub(crate) warmup: Duration,
    /// How long the measured run should last.
    pub(crate) seconds: Duration,
    /// A fixed count for the measured run instead.
    pub(crate) calls: Option<u64>,
    /// The measured run stops here whatever its count.
    pub(crate) time_limit: Duration,
}

/// Warms up, then measures `pace`'s run of calls to `echo` at `concurrency`.
pub(crate) async fn measure<E: Echo>(
    system: &'static str,
    echo: Arc<E>,
    concurrency: usize,
    pace: &Pace,
) -> crate::Result<Measured> {
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let warmup = match pace.calls {
        Some(_) => pace.warmup,
        None => pace.warmup.max(PILOT),
    };
    let calls = if warmup.is_zero() {
        pace.calls.unwrap_or(concurrency as u64)
    } else {
        let warm = phase(&echo, concurrency, MAX_CALLS, warmup).await?;
        let rate = warm.ok as f64 / warm.elapsed.as_secs_f64();
        pace.calls
            .unwrap_or((rate * pace.seconds.as_secs_f64()) as u64)
            .clamp(concurrency as u64, MAX_CALLS)
    };

    Line::Measuring { calls }.print()?;
    let cpu_before = report::cpu_time();
    let run = phase(&echo, concurrency, calls, pace.time_limit).await?;
    let cpu = report::cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before).as_secs_f64());
    let micros = |quantile: f64| run.latencies.value_at_quantile(quantile) as f64 / 1e3;
    let elapsed = run.elapsed.as_secs_f64();
    Ok(Measured {
        system,
        concurrency,
        calls: run.ok,
        errors: run.errors,
        complete: run.ok + run.errors == calls,
        elapsed_s: elapsed,
        calls_per_s: run.ok as f64 / elapsed,
        p50_us: micros(0.5),
        p99_us: micros(0.99),
        max_us: run.latencies.max() as f64 / 1e3,
        cpu_s: cpu,
        cpu_us_per_call: cpu
            .filter(|_| run.ok > 0)
            .map(|cpu| cpu * 1e6 / run.ok as f64),
    })
}

/// What one phase did.
struct Phase {
    ok: u64,
    errors: u64,
    elapsed: Duration,
    latencies: Histogram<u64>,
}

/// `calls` calls at `concurrency`, stopping early at `limit`.
async fn phase<E: Echo>(
    echo: &Arc<E>,
    concurrency: usize,
    calls: u64,
    limit: Duration,
) -> crate::Result<Phase> {
    let tickets = Arc::new(AtomicU64::new(calls));
    let started = Instant::now();
    let until = started + limit;
    let mut callers = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let latencies = histogram()?;
        let task = caller(Arc::clone(echo), Arc::clone(&tickets), until, latencies);
        callers.push(tokio::spawn(task));
    }
    let mut total = Phase {
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: histogram()?,
    };
    let mut first_error = None;
    for caller in callers {
        let done = caller.await?;
        total.ok += done.ok;
        total.errors += done.errors;
        total.latencies.add(&done.latencies)?;
        first_error = first_error.or(done.first_error);
    }
    total.elapsed = started.elapsed();
    if let Some(error) = first_error {
        eprintln!(
            "kernel-bench: {} of {} calls failed; the first: {error}",
            total.errors,
            total.ok + total.errors
        );
    }
    Ok(total)
}

/// What one caller task did.
struct Caller {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Histogram<u64>,
}

/// Calls while there are tickets left and time before `until`.
async fn caller<E: Echo>(
    echo: Arc<E>,
    tickets: Arc<AtomicU64>,
    until: Instant,
    latencies: Histogram<u64>,
) -> Caller {
    let mut done = Caller {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies,
    };
    let take = |left: u64| left.checked_sub(1);
    while Instant::now() < until
        && tickets
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
            .is_ok()
    {
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(CALL_TIMEOUT, echo.call()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no reply within {CALL_TIMEOUT:?}")),
        };
        match outcome {
            Ok(()) => {
                let nanos = u64::try_from(sent.elapsed().as_nanos()).unwrap_or(u64::MAX);
                done.latencies.saturating_record(nanos.max(1));
                done.ok += 1;
            }
            Err(error) => {
                done.errors += 1;
                done.first_error.get_or_insert(error);
            }
        }
    }
    done
}

/// Nanoseconds from 1 to [`HIGHEST_NANOS`], 3 significant figures.
fn histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, HIGHEST_NANOS, 3)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Immediate;

    impl Echo for Immediate {
        async fn call(&self) -> Result<(), String> {
            Ok(())
        }
    }

    struct EveryThirdFails(AtomicU64);

    impl Echo for EveryThirdFails {
        async fn call(&self) -> Result<(), String> {
            if self.0.fetch_add(1, Ordering::Relaxed) % 3 == 2 {
                Err("third".into())
            } else {
                Ok(())
            }
        }
    }

    fn fixed(calls: u64) -> Pace {
        Pace {
            warmup: Duration::ZERO,
            seconds: Duration::from_secs(1),
            calls: Some(calls),
            time_limit: Duration::from_secs(30),
        }
    }

    #[tokio::test]
    async fn a_fixed_count_is_made_exactly_whatever_the_concurrency() {
        let measured = measure("test", Arc::new(Immediate), 7, &fixed(1000))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(measured.calls, 1000);
        assert_eq!(measured.errors, 0);
        assert!(measured.complete);
        assert!(measured.calls_per_s > 0.0);
    }

    #[tokio::test]
    async fn failed_calls_are_counted_apart() {
        let echo = Arc::new(EveryThirdFails(AtomicU64::new(0)));
        let measured = measure("test", echo, 1, &fixed(300))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((measured.calls, measured.errors), (200, 100));
        assert!(measured.complete);
    }

    #[tokio::test]
    async fn the_warm_up_sizes_the_run() {
        let pace = Pace {
            warmup: Duration::from_millis(50),
            seconds: Duration::from_millis(50),
            calls: None,
            time_limit: Duration::from_secs(30),
        };
        let measured = measure("test", Arc::new(Immediate), 2, &pace)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(measured.calls >= 2, "{measured:?}");
        assert!(measured.complete);
    }

    #[tokio::test]
    async fn the_time_limit_stops_a_run() {
        struct Slow;
        impl Echo for Slow {
            async fn call(&self) -> Result<(), String> {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(())
            }
        }
        let pace = Pace {
            time_limit: Duration::from_millis(50),
            ..fixed(1_000_000)
        };
        let measured = measure("test", Arc::new(Slow), 1, &pace)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!measured.complete);
        assert!(measured.calls < 1_000_000);
    }
}
