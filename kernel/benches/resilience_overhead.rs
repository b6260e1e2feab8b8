//! Per-call cost of the client's circuit breaker and retry budget, on the in-process broker:
//! the same echo calls with both on (the defaults) and with both off, measured in the same
//! run, printed as a ratio (the target of the resilience issue: at most 5 % added). The
//! server's per-caller admission is always on, in both variants.
//!
//! `cargo xtask bench criterion -- resilience_overhead`, or
//! `cargo bench -p kernel-platform --bench resilience_overhead`.
//!
//! The runtime is single-threaded and the broker in process: client, broker and server all
//! run on the one thread, and what is measured is that thread's CPU time (Linux's
//! `/proc/thread-self/schedstat`; wall time elsewhere), so other processes on a shared machine
//! do not count. Each variant calls its own
//! instance of the service: a server's state grows with the calls it answers (its reply
//! cache keeps replies for 60 s), so with one shared service whichever variant ran later was
//! measured slower (by up to 30 %).
//!
//! - **guarded**: `Client::new` defaults: a breaker per endpoint, a shared retry budget.
//! - **bare**: the same client `without_breaker()` and `without_retry_budget()`.
#![allow(clippy::unwrap_used, clippy::print_stdout, missing_docs)] // a benchmark, not a library

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use kernel::proto::examples::{HelloRequest, HelloResponse};
use kernel::transport::InProcessBroker;
use kernel::{Client, Endpoint, Error, Request, Service};

const CONCURRENCY: [usize; 2] = [1, 64];
/// The service each variant calls.
fn service(variant: &str) -> String {
    format!("bench.resilience.{variant}")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let broker = InProcessBroker::new();
    const VARIANTS: [&str; 2] = ["bare", "guarded"];
    for variant in VARIANTS {
        runtime.block_on(serve(&broker, &service(variant)));
    }
    // One client per transport (each consumes its own instance queue).
    let guarded = Client::new(broker.connect());
    let bare = Client::builder(broker.connect())
        .without_breaker()
        .without_retry_budget()
        .build()
        .unwrap();
    let clients = [bare, guarded];
    runtime.block_on(async {
        for (variant, client) in VARIANTS.iter().zip(&clients) {
            let _: HelloResponse = client
                .call(&service(variant), "echo", &hello())
                .await
                .unwrap();
        }
    });

    let mut criterion = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    // Which variants were measured in this run (a name filter may skip some).
    let measured = RefCell::new(BTreeSet::new());
    let mut group = criterion.benchmark_group("resilience_overhead");
    group.throughput(Throughput::Elements(1));
    for concurrency in CONCURRENCY {
        for (variant, client) in VARIANTS.iter().zip(&clients) {
            let id = format!("{variant}/{concurrency}");
            let service = service(variant);
            group.bench_function(&id, |b| {
                measured.borrow_mut().insert(id.clone());
                b.iter_custom(|calls| runtime.block_on(run(client, &service, calls, concurrency)));
            });
        }
    }
    group.finish();
    criterion.final_summary();
    // Under `cargo test` (or `--test`, `--list`) criterion measures nothing: no ratio then.
    if kernel_testkit::bench::measuring() {
        report(&measured.borrow());
        let [bare, guarded] = &clients;
        paired(
            &runtime,
            (bare, &service("bare")),
            (guarded, &service("guarded")),
            &measured.borrow(),
        );
    }
}

fn hello() -> HelloRequest {
    HelloRequest {
        name: "bench".into(),
    }
}

/// The echo service `name`, serving on `broker` (admission on: capacity 64).
async fn serve(broker: &InProcessBroker, name: &str) {
    let server_client = Client::new(broker.connect());
    let echo = |request: Request<HelloRequest>| async move {
        Ok::<_, Error>(HelloResponse {
            greeting: request.into_message().name,
            served_by: String::new(),
        })
    };
    let service = Service::builder(name, &server_client)
        .endpoint(Endpoint::new("echo", echo).open())
        .capacity(64)
        .build()
        .unwrap();
    tokio::spawn(service.serve());
}

/// The CPU time this thread has used, if the system says (Linux); else `None`.
fn thread_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// A stopwatch of this thread's CPU time, or of wall time where that is unknown.
enum Stopwatch {
    Cpu(Duration),
    Wall(Instant),
}

impl Stopwatch {
    fn start() -> Self {
        thread_cpu().map_or_else(|| Stopwatch::Wall(Instant::now()), Stopwatch::Cpu)
    }

    fn elapsed(&self) -> Duration {
        match self {
            Stopwatch::Cpu(start) => thread_cpu().unwrap_or(*start).saturating_sub(*start),
            Stopwatch::Wall(start) => start.elapsed(),
        }
    }
}

/// Runs `calls` calls split over `concurrency` tasks; returns the CPU time for all of them.
async fn run(client: &Client, service: &str, calls: u64, concurrency: usize) -> Duration {
    let per_task = calls.div_ceil(concurrency as u64);
    let request = hello();
    let started = Stopwatch::start();
    futures_util::future::join_all((0..concurrency).map(|_| async {
        for _ in 0..per_task {
            let _: HelloResponse = client.call(service, "echo", &request).await.unwrap();
        }
    }))
    .await;
    started
        .elapsed()
        .mul_f64(calls as f64 / (per_task * concurrency as u64) as f64)
}

/// Rounds of the paired comparison, and calls per variant in each.
const ROUNDS: usize = 31;
const CHUNK: u64 = 2_000;

/// The ratio again, measured so that drift cannot bias it: rounds of `CHUNK` calls of each
/// variant, back to back, the order swapped every round; prints the median of the rounds'
/// guarded/bare ratios and their interquartile range. Only for concurrencies whose two
/// routines the name filter selected.
fn paired(
    runtime: &tokio::runtime::Runtime,
    bare: (&Client, &str),
    guarded: (&Client, &str),
    measured: &BTreeSet<String>,
) {
    let selected = CONCURRENCY.into_iter().filter(|concurrency| {
        measured.contains(&format!("bare/{concurrency}"))
            && measured.contains(&format!("guarded/{concurrency}"))
    });
    for (i, concurrency) in selected.enumerate() {
        if i == 0 {
            println!(
                "resilience_overhead: paired rounds ({ROUNDS} × {CHUNK} calls each), guarded/bare"
            );
        }
        let mut ratios: Vec<f64> = (0..ROUNDS)
            .map(|round| {
                let time = |(client, service): (&Client, &str)| {
                    runtime.block_on(run(client, service, CHUNK, concurrency))
                };
                let (b, g) = if round % 2 == 0 {
                    let b = time(bare);
                    (b, time(guarded))
                } else {
                    let g = time(guarded);
                    (time(bare), g)
                };
                g.as_secs_f64() / b.as_secs_f64()
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        println!(
            "  concurrency {concurrency:>2}: median ratio {:.3} (interquartile {:.3}–{:.3})",
            ratios[ROUNDS / 2],
            ratios[ROUNDS / 4],
            ratios[3 * ROUNDS / 4]
        );
    }
}

/// Prints the time per call of each variant and guarded/bare, from criterion's estimates of
/// this run.
fn report(measured: &BTreeSet<String>) {
    let nanos_per_call = |id: &str| kernel_testkit::bench::mean_nanos("resilience_overhead", id);
    println!("\nresilience_overhead: CPU time per call, same run (target: guarded/bare <= 1.05)");
    for concurrency in CONCURRENCY {
        let (bare_id, guarded_id) = (
            format!("bare/{concurrency}"),
            format!("guarded/{concurrency}"),
        );
        if let Some(skipped) = kernel_testkit::bench::unmeasured(measured, &[&bare_id, &guarded_id])
        {
            println!(
                "  concurrency {concurrency:>2}: no ratio, {skipped} not measured in this run (skipped by the name filter)"
            );
            continue;
        }
        match (nanos_per_call(&bare_id), nanos_per_call(&guarded_id)) {
            (Some(bare), Some(guarded)) => println!(
                "  concurrency {concurrency:>2}: bare {bare:>7.0} ns  guarded {guarded:>7.0} ns  ratio {:.3}",
                guarded / bare
            ),
            _ => println!("  concurrency {concurrency:>2}: no criterion estimates found"),
        }
    }
}
