//! `kernel`: call, inspect, watch and load-test the services of a running platform from a
//! shell, with no generated code (H2's hshell, `micro call`, `dapr invoke`).
//!
//! ```text
//! kernel call com.example.greeter hello '{"name":"ada"}'
//! ```
//!
//! Layout: `cli.rs` holds the flags and subcommands (clap), `context.rs` the connection and
//! the session a command runs with, `cmd/` one file per subcommand, `check.rs` the schema
//! check of `call --check`, `raw.rs` the JSON value a call carries, `session.rs` the saved
//! session, `table.rs` and `colour.rs` the human output, `types.rs` protobuf messages by
//! name (for `watch`: `--type`, the platform's topics, subscribers' announcements) and
//! `failure.rs` the exit codes. Documented in
//! [`docs/cli.md`](https://github.com/kernel-platform/kernel/blob/main/docs/cli.md).

mod check;
mod cli;
mod cmd;
mod colour;
mod context;
mod duration;
mod failure;
mod raw;
mod session;
mod table;
mod types;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "kernel: cannot start a runtime: {e}");
            return ExitCode::from(failure::EXIT_ERROR);
        }
    };
    let json = cli.global.json;
    let paint = colour::Paint::stderr(&cli.global);
    let outcome = runtime.block_on(cmd::run(cli));
    // Background tasks (the reply router, AMQP heartbeats) must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if let (true, Some(value)) = (json, failure.json()) {
                let _ = writeln!(std::io::stdout(), "{value:#}");
            }
            let _ = writeln!(std::io::stderr(), "kernel: {}", failure.render(paint));
            ExitCode::from(failure.exit_code())
        }
    }
}
