//! `cargo xtask bench rpc | inproc | memory | criterion`: the kernel measured as a user runs
//! it, each side its own process, against baselines measured in the same run.
//!
//! | command | measures | against |
//! |---|---|---|
//! | `rpc` | kernel echo server and client over RabbitMQ, concurrency 1 and 64, in rounds | a raw lapin echo server and client, interleaved with it |
//! | `inproc` | the kernel's echo on the in-process broker: calls/s, p50, p99, CPU per call | the raw lapin echo over RabbitMQ, same run |
//! | `memory` | a kernel echo server's RSS: idle, after 100,000 calls, after the reply cache's window | 20 MB idle, 1.1 × idle after |
//! | `criterion` | the workspace's criterion benchmarks (engines up) | their own same-run baselines |
//!
//! The processes are the roles of one release binary, `kernel-bench` (`bench/`), built first,
//! with the system allocator in every role (`--allocator mimalloc`: mimalloc in every role).
//! Servers say they are ready by a line on stdout; clients print one result line each. Every
//! child is killed when the command ends, however it ends: a server also exits when the pipe
//! on its stdin closes. The method and the targets are in `docs/benchmarks.md`.

mod broker;
mod inproc;
mod memory;
mod process;
mod rpc;
mod summary;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::Result;

/// What `cargo xtask bench` can do.
#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// Kernel against raw lapin over RabbitMQ (and lapin on the kernel's wire): each side its
    /// own processes, interleaved rounds at concurrency 1 and 64; medians and ratios with
    /// their spread.
    Rpc(RpcArgs),
    /// The kernel's echo on the in-process broker (calls/s, p50, p99, CPU per call) against
    /// the raw lapin echo over RabbitMQ in the same run.
    Inproc(InprocArgs),
    /// Resident memory of a kernel echo server: idle, right after 100,000 calls, and once the
    /// reply cache's window has passed.
    Memory(MemoryArgs),
    /// The workspace's criterion benchmarks, engines up (arguments after `--` go to
    /// `cargo bench`, e.g. a name filter).
    Criterion {
        /// Extra arguments passed to `cargo bench` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
}

/// How long each client runs.
#[derive(Debug, Clone, Args)]
pub(crate) struct PaceArgs {
    /// Seconds each measured run should last (its call count is sized from the warm-up).
    #[arg(long, env = "KERNEL_BENCH_SECONDS", default_value_t = 10.0)]
    seconds: f64,
    /// Seconds of unrecorded calls before each measured run.
    #[arg(long, env = "KERNEL_BENCH_WARMUP", default_value_t = 2.0)]
    warmup: f64,
}

impl PaceArgs {
    /// The client's arguments.
    fn client_args(&self) -> Vec<String> {
        vec![
            "--seconds".into(),
            self.seconds.to_string(),
            "--warmup".into(),
            self.warmup.to_string(),
        ]
    }

    /// How long a client may take in all: warm-up, its run's own time limit (three times the
    /// run, plus 30 s), and a minute to connect and exit.
    fn client_bound(&self) -> Duration {
        Duration::from_secs_f64(self.warmup.max(0.2) + self.seconds * 3.0 + 90.0)
    }

    fn check(&self) -> Result<()> {
        for (name, value) in [("seconds", self.seconds), ("warmup", self.warmup)] {
            if !(0.0..=3600.0).contains(&value) {
                return Err(format!("--{name} must be between 0 and 3600 seconds").into());
            }
        }
        if self.seconds == 0.0 {
            return Err("--seconds must be more than 0".into());
        }
        Ok(())
    }
}

/// How the processes are built.
#[derive(Debug, Clone, Args)]
pub(crate) struct BuildArgs {
    /// The allocator of every process, baselines and kernel alike.
    #[arg(long, value_enum, default_value_t = Allocator::System)]
    allocator: Allocator,
}

/// A global allocator `kernel-bench` can be built with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Allocator {
    /// The system's (glibc's malloc on Linux): what a service gets unless it chooses.
    System,
    /// mimalloc (`kernel-bench`'s `mimalloc` feature).
    Mimalloc,
}

impl Allocator {
    /// Its name, as the reports print it.
    fn name(self) -> &'static str {
        match self {
            Allocator::System => "the system's",
            Allocator::Mimalloc => "mimalloc",
        }
    }
}

/// `cargo xtask bench rpc`.
#[derive(Debug, Args)]
pub(crate) struct RpcArgs {
    /// Rounds; each measures raw, wire and kernel at concurrency 1 and 64.
    #[arg(long, env = "KERNEL_BENCH_ROUNDS", default_value_t = 3)]
    rounds: u32,
    #[command(flatten)]
    pace: PaceArgs,
    #[command(flatten)]
    build: BuildArgs,
}

/// `cargo xtask bench inproc`.
#[derive(Debug, Args)]
pub(crate) struct InprocArgs {
    /// Rounds; each measures the in-process echo and the raw echo at concurrency 1 and 64.
    #[arg(long, env = "KERNEL_BENCH_ROUNDS", default_value_t = 1)]
    rounds: u32,
    #[command(flatten)]
    pace: PaceArgs,
    #[command(flatten)]
    build: BuildArgs,
}

/// `cargo xtask bench memory`.
#[derive(Debug, Args)]
pub(crate) struct MemoryArgs {
    /// Calls made between the idle reading and the next.
    #[arg(long, env = "KERNEL_BENCH_MEMORY_CALLS", default_value_t = 100_000)]
    calls: u64,
    /// Calls in flight at once.
    #[arg(long, env = "KERNEL_BENCH_MEMORY_CONCURRENCY", default_value_t = 64)]
    concurrency: usize,
    #[command(flatten)]
    build: BuildArgs,
}

/// Runs one `bench` action.
pub(crate) fn run(root: &Path, action: Action) -> Result<()> {
    match action {
        Action::Rpc(args) => {
            args.pace.check()?;
            rounds(args.rounds)?;
            rpc::run(&Bench::prepare(root, &args.build)?, args.rounds, &args.pace)
        }
        Action::Inproc(args) => {
            args.pace.check()?;
            rounds(args.rounds)?;
            inproc::run(&Bench::prepare(root, &args.build)?, args.rounds, &args.pace)
        }
        Action::Memory(args) => {
            if !(1..=10_000_000).contains(&args.calls) || !(1..=1024).contains(&args.concurrency) {
                return Err("--calls must be 1 to 10,000,000, --concurrency 1 to 1024".into());
            }
            memory::run(
                &Bench::prepare(root, &args.build)?,
                args.calls,
                args.concurrency,
            )
        }
        Action::Criterion { cargo_args } => criterion(root, &cargo_args),
    }
}

fn rounds(rounds: u32) -> Result<()> {
    if (1..=100).contains(&rounds) {
        Ok(())
    } else {
        Err("--rounds must be 1 to 100".into())
    }
}

/// What every measurement needs: the release binary, the broker, where logs go.
#[derive(Debug)]
pub(crate) struct Bench {
    /// `<target>/release/kernel-bench`.
    binary: PathBuf,
    /// The RabbitMQ URL the processes connect to (`KERNEL_AMQP_URL`).
    amqp_url: String,
    /// `<target>/kernel-bench/`: one log per process, overwritten by the next run.
    logs: PathBuf,
    /// Tells apart the queues of this run from those of any other on the same broker.
    run_id: String,
    /// The broker's process, when it runs on this machine (for its CPU time per call).
    broker: Option<broker::Broker>,
    /// The processes' allocator, for the reports.
    allocator: &'static str,
}

impl Bench {
    /// Builds `kernel-bench` in release and finds the broker: `KERNEL_AMQP_URL` if set, else
    /// the engines `cargo xtask services up` starts.
    fn prepare(root: &Path, build: &BuildArgs) -> Result<Self> {
        let mut cargo_args = vec!["build", "--release", "--locked", "-p", "kernel-bench"];
        if build.allocator == Allocator::Mimalloc {
            cargo_args.extend(["--features", "mimalloc"]);
        }
        crate::cargo(root, &cargo_args, &[])?;
        let target = crate::workspace::target_dir(root);
        let amqp_url = match std::env::var("KERNEL_AMQP_URL") {
            Ok(url) if !url.is_empty() => url,
            _ => crate::services::up(root)?.amqp_url,
        };
        let logs = target.join("kernel-bench");
        std::fs::create_dir_all(&logs)
            .map_err(|e| format!("cannot create {}: {e}", logs.display()))?;
        Ok(Bench {
            binary: target.join("release").join("kernel-bench"),
            broker: broker::Broker::find(&amqp_url),
            amqp_url,
            logs,
            run_id: std::process::id().to_string(),
            allocator: build.allocator.name(),
        })
    }

    /// A queue or service name for this run: `kernel-bench.<what>.<run id>`.
    fn queue(&self, what: &str) -> String {
        format!("kernel-bench.{what}.{}", self.run_id)
    }
}

/// The old `cargo xtask bench`: engines up, then `cargo bench --workspace`.
fn criterion(root: &Path, extra: &[String]) -> Result<()> {
    let engines = crate::services::up(root)?;
    let mut args = vec!["bench", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    crate::cargo(root, &args, &engines.env_vars())
}
