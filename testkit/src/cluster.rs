//! Taking a node of the three-node clusters away and bringing it back, for the fault tests
//! that `cargo xtask test --cluster` runs (docs/services.md, "Cluster tests").
//!
//! A test kills a node with [`kill_node`] and gets a [`KilledNode`]; it brings the node back
//! with [`KilledNode::restart`], which waits until the node has rejoined its cluster. A
//! `KilledNode` dropped without a restart (a failed assertion, a panic) restarts its node
//! from `Drop`, so a failing test does not leave the cluster short of a node for the next.
//!
//! Both run `xtask services kill NODE` and `xtask services start NODE`, exactly as a person
//! would, through the `xtask` binary:
//! * `KERNEL_XTASK` if set (`cargo xtask test --cluster` sets it to itself);
//! * else `xtask` in the target directory the test binary was built in
//!   (`target/debug/deps/<test>` → `target/debug/xtask`), as `cargo xtask` leaves it.
//!
//! It runs in the checkout that owns `.services/cluster.env` (the file
//! [`cluster_address`](crate::cluster_address) reads), following a symlink: a second
//! `git worktree` can link its `.services/cluster.env` to the first's and drive that
//! checkout's cluster, since only one cluster fits on the fixed ports.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The longest `services start NODE` may take (a Cassandra node replays its commit log and
/// gossips back in: 10–20 s measured, more under load).
pub const RESTART_BOUND: Duration = Duration::from_secs(240);

/// A cluster node this test killed; restart it with [`restart`](KilledNode::restart).
///
/// Dropping it without a restart restarts the node in the foreground (blocking the thread),
/// and reports a failure on stderr rather than panicking inside a panic.
#[derive(Debug)]
#[must_use = "a killed node should be restarted at the end of the test"]
pub struct KilledNode {
    name: String,
    restarted: bool,
}

/// Kills `node` (`zk-2`, `cassandra-3`, …) with SIGKILL through `xtask services kill`, and
/// returns once it has gone.
///
/// # Panics
/// If `xtask` cannot be found or run, or fails (an unknown node name, no cluster).
pub async fn kill_node(node: &str) -> KilledNode {
    let name = node.to_owned();
    let args = ["services", "kill", node].map(str::to_owned);
    let outcome = tokio::task::spawn_blocking(move || services(&args))
        .await
        .expect("the xtask runner task");
    if let Err(error) = outcome {
        panic!("could not kill {name}: {error}");
    }
    KilledNode {
        name: node.to_owned(),
        restarted: false,
    }
}

impl KilledNode {
    /// The node's name, as given to [`kill_node`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Starts the node again through `xtask services start`, which returns once the node
    /// answers and its cluster has taken it back; returns how long that took.
    ///
    /// # Panics
    /// If `xtask` fails, or takes longer than [`RESTART_BOUND`].
    pub async fn restart(mut self) -> Duration {
        self.restarted = true;
        let args = ["services", "start", &self.name].map(str::to_owned);
        let started = Instant::now();
        let run = tokio::task::spawn_blocking(move || services(&args));
        match tokio::time::timeout(RESTART_BOUND, run).await {
            Ok(Ok(Ok(()))) => started.elapsed(),
            Ok(Ok(Err(error))) => panic!("could not restart {}: {error}", self.name),
            Ok(Err(join)) => panic!("restarting {}: {join}", self.name),
            Err(_) => panic!(
                "{} did not rejoin its cluster within {RESTART_BOUND:?}",
                self.name
            ),
        }
    }
}

impl Drop for KilledNode {
    fn drop(&mut self) {
        if self.restarted {
            return;
        }
        eprintln!(
            "restarting {} (its test ended without restarting it)",
            self.name
        );
        let args = ["services", "start", &self.name].map(str::to_owned);
        if let Err(error) = services(&args) {
            eprintln!("could not restart {}: {error}", self.name);
        }
    }
}

/// Runs `xtask <args>` in the checkout that owns the cluster; `Err` with its output if it
/// fails.
fn services(args: &[String]) -> Result<(), String> {
    let xtask = xtask_binary()?;
    let root = cluster_root()?;
    let output = Command::new(&xtask)
        .args(args)
        .current_dir(&root)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", xtask.display()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "`{} {}` in {} failed ({}):\n{}{}",
        xtask.display(),
        args.join(" "),
        root.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// `KERNEL_XTASK`, else `xtask` beside the test binary's `deps/` directory.
fn xtask_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("KERNEL_XTASK") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this test binary: {e}"))?;
    let beside = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(format!("xtask{}", std::env::consts::EXE_SUFFIX)));
    match beside {
        Some(path) if path.is_file() => Ok(path),
        _ => Err(format!(
            "no xtask binary next to {} and KERNEL_XTASK is not set: run the cluster tests \
             with `cargo xtask test --cluster`",
            exe.display()
        )),
    }
}

/// The checkout whose `.services/cluster.env` this test reads, symlinks followed.
fn cluster_root() -> Result<PathBuf, String> {
    let env_file = crate::services_dir().join("cluster.env");
    let real = std::fs::canonicalize(&env_file).map_err(|e| {
        format!(
            "{}: {e}: start the clusters with `cargo xtask services up --cluster` first",
            env_file.display()
        )
    })?;
    real.parent()
        .and_then(|services| services.parent())
        .map(PathBuf::from)
        .ok_or_else(|| format!("{} has no checkout above it", real.display()))
}
