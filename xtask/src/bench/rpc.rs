//! `cargo xtask bench rpc`: the kernel against the raw lapin echo over RabbitMQ.
//!
//! Each round measures the systems at concurrency 1, then at 64, in an order that reverses
//! from round to round (raw first in odd rounds, kernel first in even ones), so that a machine
//! getting busier or quieter during the run weighs on all alike. Every measurement has a fresh
//! server process (its state, such as the kernel's reply cache, starts empty) and a client
//! process of its own. Beside the baseline (`raw`) and the kernel, `wire` is lapin speaking the
//! kernel's wire: it splits what the kernel costs into the wire contract's share and the
//! code's.

use std::time::Duration;

use super::process::{Client, Measured, Server};
use super::summary::{self, CpuPerCall, Spread, Target};
use super::{Bench, PaceArgs};

use crate::Result;

/// The concurrencies every round measures.
pub(super) const CONCURRENCIES: [usize; 2] = [1, 64];
/// kernel calls/s ÷ raw calls/s, at each concurrency (medians over the rounds).
const THROUGHPUT: Target = Target::AtLeast(0.85);
/// kernel p99 ÷ raw p99.
const P99: Target = Target::AtMost(1.3);

/// One of the systems over RabbitMQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum System {
    /// `raw-server` and `raw-client`: lapin alone, the fastest echo (the baseline).
    Raw,
    /// `wire-server` and `wire-client`: lapin alone, speaking the kernel's wire.
    Wire,
    /// `kernel-server` and `kernel-client`.
    Kernel,
}

/// The order of odd rounds; even rounds run it backwards.
const SYSTEMS: [System; 3] = [System::Raw, System::Wire, System::Kernel];

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Raw => "raw",
            System::Wire => "wire",
            System::Kernel => "kernel",
        }
    }

    /// The server role, the client role, and the flag naming what they share.
    fn roles(self) -> (&'static str, &'static str, &'static str) {
        match self {
            System::Raw => ("raw-server", "raw-client", "--queue"),
            System::Wire => ("wire-server", "wire-client", "--queue"),
            System::Kernel => ("kernel-server", "kernel-client", "--service"),
        }
    }
}

/// One measured run of a server and client pair.
#[derive(Debug, Clone)]
pub(super) struct Pair {
    pub(super) system: System,
    pub(super) measured: Measured,
    /// The server's and the broker's CPU time during the measured run, per call.
    pub(super) cpu: CpuPerCall,
}

impl Pair {
    pub(super) fn line(&self) -> String {
        summary::line(&self.measured, self.cpu)
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
    let broker = bench.broker;
    let before = (server.cpu_time(), broker.and_then(|b| b.cpu_time()));
    let measured = client.result()?;
    let after = (server.cpu_time(), broker.and_then(|b| b.cpu_time()));
    client.finish()?;
    let per_call = |before: Option<Duration>, after: Option<Duration>| {
        after
            .zip(before)
            .filter(|_| measured.calls > 0)
            .map(|(after, before)| {
                after.saturating_sub(before).as_secs_f64() * 1e6 / measured.calls as f64
            })
    };
    let cpu = CpuPerCall {
        server: per_call(before.0, after.0),
        broker: per_call(before.1, after.1),
    };
    Ok(Pair {
        system,
        measured,
        cpu,
    })
}

/// Runs the rounds, printing each measurement as it ends, then the summary.
pub(super) fn run(bench: &Bench, rounds: u32, pace: &PaceArgs) -> Result<()> {
    println!(
        "rpc: kernel against raw lapin over RabbitMQ (and lapin on the kernel's wire), {rounds} round(s), {} s per run after {} s of warm-up",
        pace.seconds, pace.warmup
    );
    println!("allocator: {} in every process of ours", bench.allocator);
    match bench.broker {
        Some(broker) => println!(
            "broker CPU: the process listening on the broker's port ({})",
            broker.describe()
        ),
        None => println!(
            "(the broker is not a process of this machine that /proc shows: no broker CPU)"
        ),
    }
    let mut runs: Vec<(u32, Pair)> = Vec::new();
    for round in 1..=rounds {
        let mut order = SYSTEMS;
        if round % 2 == 0 {
            order.reverse();
        }
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
                .map(|(round, pair)| (*round, pair))
        };
        for system in SYSTEMS {
            let spread = |figure: &dyn Fn(&Pair) -> Option<f64>| {
                Spread::of(of(system).filter_map(|(_, pair)| figure(pair)))
            };
            let (Some(rate), Some(p50), Some(p99)) = (
                spread(&|p| Some(p.measured.calls_per_s)),
                spread(&|p| Some(p.measured.p50_us)),
                spread(&|p| Some(p.measured.p99_us)),
            ) else {
                continue;
            };
            let mut line = format!(
                "  c{concurrency:<3} {:<7} calls/s {rate:.0}  p50 {p50:.0} µs  p99 {p99:.0} µs",
                system.name()
            );
            let cpu = [
                ("client", spread(&|p| p.measured.cpu_us_per_call)),
                ("server", spread(&|p| p.cpu.server)),
                ("broker", spread(&|p| p.cpu.broker)),
            ];
            let known: Vec<String> = cpu
                .iter()
                .filter_map(|(who, figure)| figure.map(|f| format!("{who} {:.0}", f.median)))
                .collect();
            if !known.is_empty() {
                line += &format!("  CPU per call (µs): {}", known.join(", "));
            }
            println!("{line}");
        }
        // Ratios within each round, where the systems ran minutes apart at most.
        let per_round = |of_system: System, to: System, figure: fn(&Measured) -> f64| {
            Spread::of(of(of_system).filter_map(|(round, this)| {
                of(to)
                    .find(|(other_round, _)| *other_round == round)
                    .map(|(_, other)| figure(&this.measured) / figure(&other.measured))
            }))
        };
        let rate = |m: &Measured| m.calls_per_s;
        let p99 = |m: &Measured| m.p99_us;
        if let Some(ratio) = per_round(System::Kernel, System::Raw, rate) {
            println!(
                "       kernel/raw calls/s  {ratio}  {}",
                THROUGHPUT.verdict(ratio.median)
            );
        }
        if let Some(ratio) = per_round(System::Kernel, System::Raw, p99) {
            println!(
                "       kernel/raw p99      {ratio}  {}",
                P99.verdict(ratio.median)
            );
        }
        // The split: what the wire contract costs lapin, and the kernel against lapin on it.
        if let (Some(wire), Some(code)) = (
            per_round(System::Wire, System::Raw, rate),
            per_round(System::Kernel, System::Wire, rate),
        ) {
            println!("       wire/raw calls/s    {wire}  (the wire contract's cost to lapin)");
            println!("       kernel/wire calls/s {code}  (the kernel against lapin on its wire)");
        }
    }
}
