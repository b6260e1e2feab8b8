//! The examples, run as a user would: the quick start with nothing running, and the two
//! greeter processes talking over the real RabbitMQ.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;
use crate::services::Engines;

/// How long the greeter server may take to start serving, and to stop after SIGTERM.
const BOUND: Duration = Duration::from_secs(60);

/// Runs the quick start on embedded defaults, then the greeter pair over RabbitMQ.
pub(crate) fn run(root: &Path, engines: &Engines) -> Result<()> {
    // The quick start must work with no engine configured.
    let status = Command::new(cargo_bin())
        .args([
            "run",
            "--quiet",
            "-p",
            "kernel-platform",
            "--example",
            "quickstart",
        ])
        .current_dir(root)
        .env_remove("KERNEL_AMQP_URL")
        .env_remove("KERNEL_STATSD_ADDR")
        .status()?;
    if !status.success() {
        return Err(format!("`cargo run --example quickstart` failed ({status})").into());
    }

    crate::cargo(
        root,
        &["build", "--quiet", "-p", "kernel-platform", "--examples"],
        &[],
    )?;
    let examples = crate::workspace::target_dir(root)
        .join("debug")
        .join("examples");
    let log = root.join(".services").join("greeter_server.log");
    fs::create_dir_all(root.join(".services"))?;
    let mut server = Command::new(examples.join("greeter_server"))
        .envs(engines.env_vars())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log)?)
        .stderr(fs::File::create(&log)?)
        .spawn()?;
    let outcome = talk_to(&server_ready(&log, &mut server), &examples, engines);
    let stopped = stop(&mut server);
    outcome?;
    stopped.map_err(|e| format!("{e} (log: {})", log.display()).into())
}

/// Waits until the server logs that it serves; fails naming its log otherwise.
fn server_ready(log: &Path, server: &mut std::process::Child) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if fs::read_to_string(log)
            .unwrap_or_default()
            .contains("serving")
        {
            return Ok(());
        }
        if let Some(status) = server.try_wait()? {
            return Err(format!(
                "greeter_server exited early ({status}); log: {}",
                log.display()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "greeter_server did not start serving within {BOUND:?}; log: {}",
        log.display()
    )
    .into())
}

fn talk_to(ready: &Result<()>, examples: &Path, engines: &Engines) -> Result<()> {
    if let Err(e) = ready {
        return Err(e.to_string().into());
    }
    let status = Command::new(examples.join("greeter_client"))
        .args(["Ada", "Grace"])
        .envs(engines.env_vars())
        .status()?;
    if status.success() {
        eprintln!("xtask: examples: greeter_client and greeter_server talked over RabbitMQ");
        Ok(())
    } else {
        Err(format!("greeter_client failed ({status})").into())
    }
}

/// SIGTERM, then a bounded wait for a clean exit.
fn stop(server: &mut std::process::Child) -> Result<()> {
    Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()?;
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if let Some(status) = server.try_wait()? {
            return if status.success() {
                Ok(())
            } else {
                Err(format!("greeter_server exited with {status} after SIGTERM").into())
            };
        }
        thread::sleep(Duration::from_millis(100));
    }
    server.kill()?;
    Err(format!("greeter_server did not stop within {BOUND:?} of SIGTERM").into())
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}
