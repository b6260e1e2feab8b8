//! Every role of `kernel-bench` against the real RabbitMQ (`cargo xtask services up`): each
//! server gets ready, each client makes its calls without an error and prints a result line
//! that `cargo xtask bench` can read. The figures themselves are for the benchmarks.
#![allow(clippy::unwrap_used)] // a test fails loudly on an unexpected error

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kernel_testkit::{engine_address, unique};

const BINARY: &str = env!("CARGO_BIN_EXE_kernel-bench");
/// How long a role may take to get ready or to finish its calls.
const BOUND: Duration = Duration::from_secs(60);
const CALLS: u64 = 300;

/// A server role, killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The JSON lines with a `kernel_bench` field a process prints, as they come.
fn lines(child: &mut Child) -> mpsc::Receiver<serde_json::Value> {
    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value.get("kernel_bench").is_some()
                && sender.send(value).is_err()
            {
                break;
            }
        }
    });
    receiver
}

fn next(lines: &mpsc::Receiver<serde_json::Value>, kind: &str, who: &str) -> serde_json::Value {
    loop {
        let line = lines
            .recv_timeout(BOUND)
            .unwrap_or_else(|e| panic!("{who} printed no {kind} line within {BOUND:?}: {e}"));
        if line["kernel_bench"] == kind {
            return line;
        }
    }
}

fn start_server(role: &str, flag: &str, name: &str) -> Server {
    let mut child = Command::new(BINARY)
        .args([role, flag, name])
        .env("KERNEL_AMQP_URL", engine_address("KERNEL_AMQP_URL"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let ready = next(&lines(&mut child), "ready", role);
    assert_eq!(ready["role"], role);
    Server(child)
}

/// Runs a client role to the end; its result lines.
fn run_client(args: &[&str]) -> Vec<serde_json::Value> {
    let calls = CALLS.to_string();
    let mut child = Command::new(BINARY)
        .args(args)
        .args(["--calls", &calls, "--warmup", "0.2"])
        .env("KERNEL_AMQP_URL", engine_address("KERNEL_AMQP_URL"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines(&mut child);
    let mut results = Vec::new();
    loop {
        match lines.recv_timeout(BOUND) {
            Ok(line) if line["kernel_bench"] == "result" => results.push(line),
            Ok(_) => {}
            // Its stdout closed: it has exited, or is about to.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                panic!("{} printed nothing for {BOUND:?}", args[0]);
            }
        }
    }
    let deadline = std::time::Instant::now() + BOUND;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            panic!(
                "{} did not exit within {BOUND:?} of closing its output",
                args[0]
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{} failed", args[0]);
    results
}

fn assert_complete(result: &serde_json::Value, system: &str, concurrency: u64) {
    assert_eq!(result["system"], system, "{result}");
    assert_eq!(result["concurrency"], concurrency, "{result}");
    assert_eq!(result["calls"], CALLS, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert_eq!(result["complete"], true, "{result}");
    assert!(result["p99_us"].as_f64().unwrap() > 0.0, "{result}");
}

#[test]
fn each_pair_of_roles_over_rabbitmq_completes_its_calls() {
    for (system, server, client, flag) in [
        ("raw", "raw-server", "raw-client", "--queue"),
        ("wire", "wire-server", "wire-client", "--queue"),
        ("kernel", "kernel-server", "kernel-client", "--service"),
    ] {
        let name = unique(&format!("kernel-bench-test.{system}"));
        let _server = start_server(server, flag, &name);
        let results = run_client(&[client, flag, &name, "--concurrency", "8"]);
        assert_eq!(results.len(), 1, "{system}: {results:?}");
        assert_complete(&results[0], system, 8);
    }
}

#[test]
fn the_in_process_role_prints_a_line_per_concurrency() {
    let results = run_client(&["inproc", "--concurrency", "1,16"]);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_complete(&results[0], "inproc", 1);
    assert_complete(&results[1], "inproc", 16);
}
