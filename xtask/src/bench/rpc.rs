//! `cargo xtask bench rpc`: the kernel against the raw lapin echo over RabbitMQ.
//!
//! Each round measures both systems at concurrency 1, then at 64, in an order that alternates
//! from round to round (raw first in odd rounds), so that a machine getting busier or quieter
//! during the run weighs on both alike. Every measurement has a fresh server process (its
//! state, such as the kernel's reply cache, starts empty) and a client process of its own.

use super::process::{Client, Measured, Server};
use super::summary::{self, Spread, Target};
use super::{Bench, PaceArgs};
use crate::Result;

/// The concurrencies every round measures.
pub(super) const CONCURRENCIES: [usize; 2] = [1, 64];
/// kernel calls/s ÷ raw calls/s, at each concurrency (medians over the rounds).
const THROUGHPUT: Target = Target::AtLeast(0.85);
/// kernel p99 ÷ raw p99.
const P99: Target = Target::AtMost(1.3);

/// One of the two systems over RabbitMQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum System {
    /// `raw-server` and `raw-client`: lapin alone.
    Raw,
    /// `kernel-server` and `kernel-client`.
    Kernel,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Kernel => "kernel",
        }
    }

    /// The server role, the client role, and the flag naming what they share.
    fn roles(self) -> (&'static str, &'static str, &'static str) {
        match self {
            System::Raw => ("raw-server", "raw-client", "--queue"),
            System::Kernel => ("kernel-server", "kernel-client", "--service"),
        }
    }
}

/// One measured run of a server and client pair.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) system: System,
    pub(super) measured: Measured,
    /// The server's CPU time during the measured run, per call.
    pub(super) server_cpu_us_per_call: Option<f64>,
}

impl Pair {
    pub(super) fn line(&self) -> String {
        summary::line(&self.measured, self.server_cpu_us_per_call)
    }
}

/// Starts `system`'s server, waits until it is ready, runs its client at `concurrency`, and
/// stops the server. `tag` names the logs (`<target>/kernel-bench/<tag>-<system>-c<n>-*.log`).
pub(super) fn pair(
    bench: &Bench,
    system: System,
    concurrency: usize,
    pace: &PaceArgs,
    tag: &str,
) -> Result<Pair> {
    let (server_role, client_role, flag) = system.roles();
    let name = bench.queue(&format!("{}.{tag}.c{concurrency}", system.name()));
    let log = format!("{tag}-{}-c{concurrency}", system.name());
    let server = Server::start(
        bench,
        &format!("{log}-server"),
        &[server_role.into(), flag.into(), name.clone()],
    )?;
    let mut args = vec![
        client_role.into(),
        flag.into(),
        name,
        "--concurrency".into(),
        concurrency.to_string(),
    ];
    args.extend(pace.client_args());
    let mut client = Client::start(bench, &format!("{log}-client"), &args, pace.client_bound())?;
    client.measuring()?;
    let before = server.cpu_time();
    let measured = client.result()?;
    let after = server.cpu_time();
    client.finish()?;
    let server_cpu_us_per_call =
        after
            .zip(before)
            .filter(|_| measured.calls > 0)
            .map(|(after, before)| {
                after.saturating_sub(before).as_secs_f64() * 1e6 / measured.calls as f64
            });
    Ok(Pair {
        system,
        measured,
        server_cpu_us_per_call,
    })
}

/// Runs the rounds, printing each measurement as it ends, then the summary.
pub(super) fn run(bench: &Bench, rounds: u32, pace: &PaceArgs) -> Result<()> {
    println!(
        "rpc: kernel against raw lapin over RabbitMQ, {rounds} round(s), {} s per run after {} s of warm-up",
        pace.seconds, pace.warmup
    );
    let mut runs: Vec<(u32, Pair)> = Vec::new();
    for round in 1..=rounds {
        let order = if round % 2 == 1 {
            [System::Raw, System::Kernel]
        } else {
            [System::Kernel, System::Raw]
        };
        for concurrency in CONCURRENCIES {
            for system in order {
                let pair = pair(bench, system, concurrency, pace, &format!("rpc-r{round}"))?;
                println!("round {round}/{rounds}  {}", pair.line());
                runs.push((round, pair));
            }
        }
    }
    print_summary(&runs, rounds);
    Ok(())
}

fn print_summary(runs: &[(u32, Pair)], rounds: u32) {
    println!("\nrpc: medians over {rounds} round(s), (min–max) where the rounds differ");
    for concurrency in CONCURRENCIES {
        let of = |system: System| {
            runs.iter()
                .filter(move |(_, pair)| {
                    pair.system == system && pair.measured.concurrency == concurrency
                })
                .map(|(round, pair)| (*round, &pair.measured))
        };
        for system in [System::Raw, System::Kernel] {
            let spread =
                |figure: fn(&Measured) -> f64| Spread::of(of(system).map(|(_, m)| figure(m)));
            let (Some(rate), Some(p50), Some(p99)) = (
                spread(|m| m.calls_per_s),
                spread(|m| m.p50_us),
                spread(|m| m.p99_us),
            ) else {
                continue;
            };
            println!(
                "  c{concurrency:<3} {:<7} calls/s {rate:.0}  p50 {p50:.0} µs  p99 {p99:.0} µs",
                system.name()
            );
        }
        // Ratios within each round, where raw and kernel ran minutes apart at most.
        let per_round = |figure: fn(&Measured, &Measured) -> f64| {
            Spread::of(of(System::Kernel).filter_map(|(round, kernel)| {
                of(System::Raw)
                    .find(|(raw_round, _)| *raw_round == round)
                    .map(|(_, raw)| figure(kernel, raw))
            }))
        };
        if let Some(ratio) = per_round(|kernel, raw| kernel.calls_per_s / raw.calls_per_s) {
            println!(
                "       kernel/raw calls/s  {ratio}  {}",
                THROUGHPUT.verdict(ratio.median)
            );
        }
        if let Some(ratio) = per_round(|kernel, raw| kernel.p99_us / raw.p99_us) {
            println!(
                "       kernel/raw p99      {ratio}  {}",
                P99.verdict(ratio.median)
            );
        }
    }
}
