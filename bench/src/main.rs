//! The processes `cargo xtask bench` measures: one binary, its role chosen by the first
//! argument.
//!
//! | role | is |
//! |---|---|
//! | `raw-server` | a lapin echo, no kernel code: a consumer that publishes each body back to its `reply_to` |
//! | `raw-client` | lapin callers: one shared exclusive reply queue, correlation by message id |
//! | `wire-server` | a lapin echo speaking the kernel's wire: its exchanges, manual acks and prefetch, its properties and headers |
//! | `wire-client` | lapin callers speaking the kernel's wire (mandatory, expiration, headers) |
//! | `kernel-server` | an echo service built with the kernel, its default middleware on |
//! | `kernel-client` | kernel `Client::call`s to it: breaker, retry budget, metrics, tracing |
//! | `inproc` | the kernel's echo service and client in one process, on the in-process broker |
//!
//! Servers print one `{"kernel_bench":"ready",…}` line on stdout once they consume their
//! queue, then serve until killed (or, with `--until-stdin-closes`, until their parent goes).
//! Clients warm up, print `{"kernel_bench":"measuring",…}`, make a fixed number of calls at a
//! fixed concurrency and print one `{"kernel_bench":"result",…}` line: calls, elapsed seconds,
//! calls per second, p50 and p99 in microseconds, and the process's CPU time
//! (`src/report.rs` shows the lines). The method is in `docs/benchmarks.md`.
//!
//! Every address must be on loopback: the benchmark floods what it connects to.
//!
//! Every role allocates with the system allocator, or, built with the `mimalloc` feature, with
//! mimalloc: the raw baselines as much as the kernel.

#![allow(clippy::print_stdout)] // the results are lines on stdout, for `cargo xtask bench`

mod echo;
mod load;
mod raw;
mod report;
mod wire;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kernel::transport::WorkQueueType;

use crate::load::Pace;

/// One allocator for every role, so that a ratio compares code, not allocators.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// What every role's `main` returns on failure: a sentence saying what failed.
type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(
    name = "kernel-bench",
    about = "The processes of `cargo xtask bench`: raw and kernel echo servers and clients"
)]
struct Cli {
    #[command(subcommand)]
    role: Role,
}

#[derive(Debug, Subcommand)]
enum Role {
    /// A raw lapin echo server (no kernel code).
    RawServer {
        #[command(flatten)]
        broker: Broker,
        /// The queue to consume (declared auto-delete).
        #[arg(long)]
        queue: String,
        /// How deliveries are acknowledged.
        #[arg(long, value_enum, default_value_t = raw::Ack::Auto)]
        ack: raw::Ack,
        /// The consumer's prefetch, with `--ack manual` (auto-acked deliveries are not limited).
        #[arg(long, default_value_t = raw::PREFETCH)]
        prefetch: u16,
        #[command(flatten)]
        lifetime: Lifetime,
    },
    /// Raw lapin callers of `raw-server`.
    RawClient {
        #[command(flatten)]
        broker: Broker,
        /// The queue `raw-server` consumes.
        #[arg(long)]
        queue: String,
        /// Calls in flight at once, each from its own task.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// A raw lapin echo server speaking the kernel's wire (`docs/wire.md`): what the wire
    /// costs without kernel code.
    WireServer {
        #[command(flatten)]
        broker: Broker,
        /// The work queue to consume (declared auto-delete, bound to `h2o`).
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        lifetime: Lifetime,
    },
    /// Raw lapin callers of `wire-server`, speaking the kernel's wire.
    WireClient {
        #[command(flatten)]
        broker: Broker,
        /// The queue `wire-server` consumes.
        #[arg(long)]
        queue: String,
        /// Calls in flight at once, each from its own task.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// An echo service built with the kernel, default middleware on.
    KernelServer {
        #[command(flatten)]
        broker: Broker,
        /// The service's name (its work queue).
        #[arg(long)]
        service: String,
        /// Requests the service runs at once.
        #[arg(long, default_value_t = echo::CAPACITY)]
        capacity: u16,
        /// The work queue's type: `classic` (the default) or `quorum` (replicated on a
        /// cluster), to measure what quorum queues cost.
        #[arg(long, env = "KERNEL_BENCH_WORK_QUEUES", default_value = "classic", value_parser = work_queues)]
        work_queues: WorkQueueType,
        #[command(flatten)]
        lifetime: Lifetime,
    },
    /// Kernel callers of `kernel-server`.
    KernelClient {
        #[command(flatten)]
        broker: Broker,
        /// The service `kernel-server` serves.
        #[arg(long)]
        service: String,
        /// Calls in flight at once, each from its own task.
        #[arg(long, default_value_t = 1)]
        concurrency: usize,
        #[command(flatten)]
        pace: PaceArgs,
    },
    /// The kernel's echo service and its callers in one process, on the in-process broker:
    /// one result line per concurrency, each against a fresh service.
    Inproc {
        /// The concurrencies to measure, in order.
        #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
        concurrency: Vec<usize>,
        #[command(flatten)]
        pace: PaceArgs,
    },
}

/// The broker to connect to.
#[derive(Debug, Args)]
struct Broker {
    /// The RabbitMQ URL; on loopback only.
    #[arg(long, env = "KERNEL_AMQP_URL")]
    url: String,
}

impl Broker {
    /// The URL, if its host is a loopback address.
    fn loopback_url(&self) -> Result<&str> {
        let host = url_host(&self.url);
        if is_loopback(host) {
            Ok(&self.url)
        } else {
            Err(
                format!("the broker must be on loopback (127.0.0.1, ::1, localhost), not {host:?}")
                    .into(),
            )
        }
    }
}

/// How long a server lives.
#[derive(Debug, Args)]
struct Lifetime {
    /// Exit when stdin closes: a parent that holds the pipe's other end takes its servers with
    /// it, however it ends.
    #[arg(long)]
    until_stdin_closes: bool,
}

impl Lifetime {
    fn start(&self) {
        if self.until_stdin_closes {
            std::thread::spawn(|| {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                std::process::exit(0);
            });
        }
    }
}

/// How long a client runs.
#[derive(Debug, Args)]
struct PaceArgs {
    /// Seconds of calls before measuring (they also size the measured run).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds the measured run should last: its call count is the warm-up's rate times this.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// A fixed call count instead (no pilot run is needed to size it).
    #[arg(long)]
    calls: Option<u64>,
    /// The measured run stops after this many seconds whatever its count (default: three
    /// times `--seconds`, plus 30); its line then says `"complete":false`.
    #[arg(long)]
    time_limit: Option<f64>,
}

impl PaceArgs {
    fn pace(&self) -> Result<Pace> {
        let seconds = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .map_err(|_| format!("--{name} must be a number of seconds, not {value}"))
        };
        let measured = seconds("seconds", self.seconds)?;
        Ok(Pace {
            warmup: seconds("warmup", self.warmup)?,
            seconds: measured,
            calls: self.calls,
            time_limit: match self.time_limit {
                Some(limit) => seconds("time-limit", limit)?,
                None => measured * 3 + Duration::from_secs(30),
            },
        })
    }
}

/// The host of an `amqp://` URL: between the user info (if any) and the port or path.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if let Some(bracketed) = host_port.strip_prefix('[') {
        return bracketed.split(']').next().unwrap_or_default();
    }
    host_port.split(':').next().unwrap_or_default()
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kernel-bench: cannot start the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.role)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kernel-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(role: Role) -> Result<()> {
    match role {
        Role::RawServer {
            broker,
            queue,
            ack,
            prefetch,
            lifetime,
        } => {
            lifetime.start();
            raw::serve(broker.loopback_url()?, &queue, ack, prefetch).await
        }
        Role::RawClient {
            broker,
            queue,
            concurrency,
            pace,
        } => raw::call(broker.loopback_url()?, &queue, concurrency, &pace.pace()?).await,
        Role::WireServer {
            broker,
            queue,
            lifetime,
        } => {
            lifetime.start();
            wire::serve(broker.loopback_url()?, &queue).await
        }
        Role::WireClient {
            broker,
            queue,
            concurrency,
            pace,
        } => wire::call(broker.loopback_url()?, &queue, concurrency, &pace.pace()?).await,
        Role::KernelServer {
            broker,
            service,
            capacity,
            work_queues,
            lifetime,
        } => {
            lifetime.start();
            echo::serve(broker.loopback_url()?, &service, capacity, work_queues).await
        }
        Role::KernelClient {
            broker,
            service,
            concurrency,
            pace,
        } => echo::call(broker.loopback_url()?, &service, concurrency, &pace.pace()?).await,
        Role::Inproc { concurrency, pace } => echo::in_process(&concurrency, &pace.pace()?).await,
    }
}

/// `classic` or `quorum`.
fn work_queues(text: &str) -> Result<WorkQueueType, String> {
    match text {
        "classic" => Ok(WorkQueueType::Classic),
        "quorum" => Ok(WorkQueueType::Quorum),
        other => Err(format!("{other:?}: expected classic or quorum")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_found_behind_user_info_and_before_port_and_path() {
        assert_eq!(
            url_host("amqp://guest:guest@127.0.0.1:5682/%2f"),
            "127.0.0.1"
        );
        assert_eq!(url_host("amqp://localhost"), "localhost");
        assert_eq!(url_host("amqps://u:p@[::1]:5671/vh"), "::1");
        assert_eq!(
            url_host("amqp://u:p@rabbit.example.com/%2f"),
            "rabbit.example.com"
        );
    }

    #[test]
    fn only_loopback_hosts_are_accepted() {
        for host in ["127.0.0.1", "127.0.1.1", "::1", "localhost", "LOCALHOST"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "rabbit.example.com", "", "0.0.0.0"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
