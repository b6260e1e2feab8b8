//! One file per subcommand; [`run`] dispatches.

mod bench;
mod call;
mod login;
pub(crate) mod monitor;
mod registry;
mod watch;

use std::io::Write;

use crate::cli::{Cli, Command};
use crate::context::Context;
use crate::failure::Failure;

/// Runs the command the line asks for.
pub(crate) async fn run(cli: Cli) -> Result<(), Failure> {
    let context = Context { global: cli.global };
    match cli.command {
        Command::Call {
            service,
            endpoint,
            request,
            check,
        } => call::run(&context, &service, &endpoint, &request, check).await,
        Command::Health { service, run_now } => monitor::health(&context, &service, run_now).await,
        Command::Stats { service } => monitor::stats(&context, &service).await,
        Command::Services { wait } => registry::services(&context, wait).await,
        Command::Instances { service, wait } => {
            registry::instances(&context, service.as_deref(), wait).await
        }
        Command::Login {
            username,
            password_stdin,
            device,
            login_service,
        } => login::login(&context, &username, password_stdin, &device, &login_service).await,
        Command::Logout => login::logout(&context).await,
        Command::Watch {
            topic,
            count,
            duration,
            type_name,
            descriptor_set,
            wait,
        } => {
            let watch = watch::Watch {
                topic,
                count,
                duration,
                type_name,
                descriptor_sets: descriptor_set,
                wait,
            };
            watch::run(&context, watch).await
        }
        Command::Bench {
            service,
            endpoint,
            request,
            count,
            concurrency,
            duration,
        } => {
            let bench = bench::Bench {
                service,
                endpoint,
                request,
                count,
                concurrency,
                duration,
            };
            bench::run(&context, bench).await
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "kernel", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error worth reporting.
pub(crate) fn out(text: impl std::fmt::Display) {
    let _ = write!(std::io::stdout().lock(), "{text}");
}

/// Writes `kernel: <text>` and a newline to stderr: a warning that does not fail the command.
pub(crate) fn warn(text: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr().lock(), "kernel: {text}");
}

/// Writes `value` as pretty JSON and a newline to stdout.
pub(crate) fn out_json(value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).map_err(Failure::other)?;
    out(format_args!("{text}\n"));
    Ok(())
}
