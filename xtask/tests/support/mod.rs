//! Where the engine smoke tests find the engines `cargo xtask services up` started.

use std::time::{SystemTime, UNIX_EPOCH};

/// The address of one engine: the environment variable if set (as `cargo xtask test` does),
/// else the line `services up` wrote to `.services/env`. Fails, naming the command to run,
/// if neither is there: these tests never skip silently.
pub(crate) fn engine_address(var: &str) -> String {
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

/// A name no other test run uses, for queues, znodes and keyspaces.
pub(crate) fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}_{}_{nanos}", std::process::id())
}
