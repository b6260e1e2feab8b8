//! Shared by the benchmarks: the engine's address, a runtime, which benchmarks this run
//! selects and measures, and criterion's estimates.
#![allow(dead_code, unused_imports)] // each benchmark uses a subset

use std::path::{Path, PathBuf};
use std::time::Duration;

pub(crate) use kernel_testkit::bench::{listing, measuring, selected};
pub(crate) use kernel_testkit::engine_address;

/// A name no other run uses (underscores, as the tests use for ZooKeeper namespaces).
pub(crate) fn unique_name(prefix: &str) -> String {
    kernel_testkit::unique(prefix).replace('.', "_")
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`,
/// else `target/criterion` in the workspace the benchmark runs in (criterion's own order,
/// minus `cargo metadata`). The workspace is found at run time: a benchmark built from another
/// checkout sharing the target directory must not read that checkout's results.
pub(crate) fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| kernel_testkit::workspace_root().map(|root| root.join("target")))
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("criterion")
}

/// Criterion's estimate of one iteration's time for `group/id` in this run: the slope of
/// its linear regression when it sampled linearly (what it prints as `time:`), else the mean.
///
/// # Errors
/// A sentence naming the file, if criterion wrote no readable estimate for `group/id`.
pub(crate) fn typical_estimate(home: &Path, group: &str, id: &str) -> Result<Duration, String> {
    let path = home.join(group).join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|error| format!("parsing {}: {error}", path.display()))?;
    let nanos = json["slope"]["point_estimate"]
        .as_f64()
        .or_else(|| json["mean"]["point_estimate"].as_f64())
        .ok_or_else(|| format!("{} has no slope or mean estimate", path.display()))?;
    Ok(Duration::from_secs_f64(nanos / 1e9))
}

/// The `q` quantile (0..=1) of `samples` by the nearest-rank method.
pub(crate) fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}
