//! What the workspace's own tests share: where the real engines are, names no other test
//! uses, and waits that fail with a message instead of hanging.
//!
//! A dev-dependency of the crates whose tests talk to RabbitMQ, ZooKeeper or Cassandra; not
//! published.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let queue = kernel_testkit::unique("orders");
//! assert!(queue.starts_with("test.orders."));
//! let answer = kernel_testkit::bounded("the answer", async { 42 }).await;
//! assert_eq!(answer, 42);
//! # }
//! ```

#![doc(test(attr(deny(warnings))))]

use std::future::IntoFuture;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest a single wait in a test may take before it fails the test.
pub const BOUND: Duration = Duration::from_secs(20);

/// The address of a real engine: the environment variable `var` if set (as `cargo xtask test`
/// does), else the line `var=…` that `cargo xtask services up` wrote to `.services/env` at the
/// workspace root.
///
/// # Panics
/// If neither is there, naming the command to run: engine tests never skip silently.
pub fn engine_address(var: &str) -> String {
    if let Ok(value) = std::env::var(var) {
        return value;
    }
    let env_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../.services/env");
    let from_file = std::fs::read_to_string(env_file).ok().and_then(|contents| {
        contents.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            (name.trim() == var).then(|| value.trim().to_owned())
        })
    });
    from_file.unwrap_or_else(|| {
        panic!(
            "{var} is not set and {env_file} has no such line: run the tests with \
             `cargo xtask test`, or run `cargo xtask services up` first"
        )
    })
}

/// A name no other test, and no other run of the tests on the same engine, uses:
/// `test.<prefix>.<pid>.<nanoseconds>`.
pub fn unique(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("test.{prefix}.{}.{nanos}", std::process::id())
}

/// Awaits `future` for at most [`BOUND`].
///
/// # Panics
/// If it takes longer, saying that `what` did not happen.
pub async fn bounded<T>(what: &str, future: impl IntoFuture<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {BOUND:?}"))
}
