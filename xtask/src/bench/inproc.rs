//! `cargo xtask bench inproc`: the kernel's echo on the in-process broker, against the raw
//! lapin echo over RabbitMQ measured in the same run.
//!
//! The targets are ratios because machines differ by up to five times in absolute speed: the
//! in-process echo must make at least 13 times the raw echo's calls per second at
//! concurrency 64, and answer in at most 1/30 of its p50 at concurrency 1.

use super::process::{Client, Measured};
use super::rpc::{self, CONCURRENCIES, System};
use super::summary::{self, Spread, Target};
use super::{Bench, PaceArgs};
use crate::Result;

/// In-process calls/s ÷ raw calls/s, at concurrency 64.
const THROUGHPUT: Target = Target::AtLeast(13.0);
/// Raw p50 ÷ in-process p50, at concurrency 1.
const LATENCY: Target = Target::AtLeast(30.0);

/// Runs the rounds (each: the in-process echo at 1 and 64, then the raw pair at 64 and 1),
/// printing each measurement, then the ratios.
pub(super) fn run(bench: &Bench, rounds: u32, pace: &PaceArgs) -> Result<()> {
    println!(
        "inproc: the kernel on the in-process broker against raw lapin over RabbitMQ, \
         {rounds} round(s), {} s per run after {} s of warm-up; allocator: {}",
        pace.seconds, pace.warmup, bench.allocator
    );
    let mut in_process: Vec<(u32, Measured)> = Vec::new();
    let mut raw: Vec<(u32, Measured)> = Vec::new();
    for round in 1..=rounds {
        let concurrencies: Vec<String> = CONCURRENCIES.iter().map(usize::to_string).collect();
        let mut args = vec![
            "inproc".to_owned(),
            "--concurrency".into(),
            concurrencies.join(","),
        ];
        args.extend(pace.client_args());
        let bound = pace.client_bound() * CONCURRENCIES.len() as u32;
        let mut client = Client::start(bench, &format!("inproc-r{round}"), &args, bound)?;
        for _ in CONCURRENCIES {
            let measured = client.result()?;
            println!(
                "round {round}/{rounds}  {}",
                summary::line(&measured, summary::CpuPerCall::default())
            );
            in_process.push((round, measured));
        }
        client.finish()?;
        for concurrency in CONCURRENCIES.into_iter().rev() {
            let pair = rpc::pair(
                bench,
                System::Raw,
                concurrency,
                pace,
                &format!("inproc-r{round}"),
            )?;
            println!("round {round}/{rounds}  {}", pair.line());
            raw.push((round, pair.measured));
        }
    }

    println!("\ninproc: medians over {rounds} round(s), (min–max) where the rounds differ");
    let at = |runs: &[(u32, Measured)], round: u32, concurrency: usize| {
        runs.iter()
            .find(|(r, m)| *r == round && m.concurrency == concurrency)
            .map(|(_, m)| m.clone())
    };
    let per_round = |concurrency: usize, figure: fn(&Measured, &Measured) -> f64| {
        Spread::of((1..=rounds).filter_map(|round| {
            let inside = at(&in_process, round, concurrency)?;
            let over_rabbitmq = at(&raw, round, concurrency)?;
            Some(figure(&inside, &over_rabbitmq))
        }))
    };
    if let Some(ratio) = per_round(64, |inside, raw| inside.calls_per_s / raw.calls_per_s) {
        println!(
            "  in-process calls/s ÷ raw calls/s, c64:  {ratio:.1}  {}",
            THROUGHPUT.verdict(ratio.median)
        );
    }
    if let Some(ratio) = per_round(1, |inside, raw| raw.p50_us / inside.p50_us) {
        println!(
            "  raw p50 ÷ in-process p50, c1:           {ratio:.1}  {}",
            LATENCY.verdict(ratio.median)
        );
    }
    for concurrency in CONCURRENCIES {
        let of = |figure: fn(&Measured) -> Option<f64>| {
            Spread::of(
                in_process
                    .iter()
                    .filter(|(_, m)| m.concurrency == concurrency)
                    .filter_map(|(_, m)| figure(m)),
            )
        };
        if let (Some(rate), Some(p50), Some(p99)) = (
            of(|m| Some(m.calls_per_s)),
            of(|m| Some(m.p50_us)),
            of(|m| Some(m.p99_us)),
        ) {
            let cpu = of(|m| m.cpu_us_per_call)
                .map_or_else(|| "unknown".to_owned(), |cpu| format!("{cpu:.1} µs"));
            println!(
                "  in-process c{concurrency:<3} calls/s {rate:.0}  p50 {p50:.1} µs  p99 {p99:.1} µs  CPU per call {cpu}"
            );
        }
    }
    Ok(())
}
