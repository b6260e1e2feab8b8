//! `cargo xtask bench memory`: the resident memory of a kernel echo server, a greeter-like
//! service with the default middleware on, read from `/proc/<pid>/status` (`VmRSS`) three
//! times: idle after start-up, right after the calls, and once the reply cache's window has
//! passed (the server says how long that is in its ready line; it is not configurable, so a
//! quick run cannot shorten it).

use std::time::Duration;

use super::Bench;
use super::process::{Client, Server};
use super::summary::{self, Target};
use crate::Result;

/// Time the server is left alone after it is ready, before the idle reading.
const SETTLE: Duration = Duration::from_secs(2);
/// Time waited beyond the reply cache's window, for its expiry to run.
const MARGIN: Duration = Duration::from_secs(5);
/// How long the calls may take in all.
const CALLS_BOUND: Duration = Duration::from_secs(900);
/// Idle RSS, in MB.
const IDLE: Target = Target::AtMost(20.0);
/// RSS after the calls and the window ÷ idle RSS.
const AFTER: Target = Target::AtMost(1.1);

/// Starts the server, reads its RSS, runs `calls` calls at `concurrency` from a client
/// process, reads it again right after and once the reply cache's window has passed.
pub(super) fn run(bench: &Bench, calls: u64, concurrency: usize) -> Result<()> {
    let service = bench.queue("memory");
    let mut server = Server::start(
        bench,
        "memory-server",
        &["kernel-server".into(), "--service".into(), service.clone()],
    )?;
    let window = server
        .reply_cache_window
        .ok_or("kernel-server's ready line did not give its reply cache's window")?;
    println!(
        "memory: resident size (VmRSS) of a kernel echo server (pid {}), {calls} calls at concurrency {concurrency}; allocator: {}",
        server.pid(),
        bench.allocator
    );
    std::thread::sleep(SETTLE);
    let idle = server.rss()?;
    println!(
        "  idle after start-up:            {:>6.1} MB  {}",
        mb(idle),
        IDLE.verdict_in(mb(idle), " MB")
    );

    let args = [
        "kernel-client".to_owned(),
        "--service".into(),
        service,
        "--concurrency".into(),
        concurrency.to_string(),
        "--calls".into(),
        calls.to_string(),
        "--warmup".into(),
        "0".into(),
        "--time-limit".into(),
        CALLS_BOUND.as_secs().to_string(),
    ];
    let mut client = Client::start(
        bench,
        "memory-client",
        &args,
        CALLS_BOUND + Duration::from_secs(60),
    )?;
    let measured = client.result()?;
    client.finish()?;
    println!(
        "  the calls: {}",
        summary::line(&measured, summary::CpuPerCall::default())
    );
    let after_calls = server.rss()?;
    println!(
        "  right after {calls} calls:        {:>6.1} MB  {:.2} × idle",
        mb(after_calls),
        after_calls as f64 / idle as f64
    );

    let wait = window + MARGIN;
    println!("  (waiting {wait:?}: the reply cache's window, {window:?}, and {MARGIN:?} more)");
    std::thread::sleep(wait);
    server.check_alive()?;
    let after_window = server.rss()?;
    let ratio = after_window as f64 / idle as f64;
    println!(
        "  after the reply cache's window: {:>6.1} MB  {ratio:.2} × idle  {}",
        mb(after_window),
        AFTER.verdict(ratio)
    );
    Ok(())
}

/// Bytes as decimal megabytes (10⁶ bytes), as the targets are written.
fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
