//! `cargo xtask test --cluster`: the fault tests that kill nodes of the three-node clusters.
//!
//! A cluster test is an integration test target declared with `test = false` in its
//! package's `Cargo.toml`, so that neither `cargo test` nor `cargo xtask test`
//! (`--all-targets`) runs it, and listed in [`CLUSTER_TESTS`]. This phase brings the clusters
//! up, runs every listed target by name, one test at a time, and brings the clusters down.
//! docs/services.md ("Cluster tests") says how to add one.

use std::path::Path;
use std::time::Instant;

use crate::{Result, cargo, services};

/// Every cluster test target, as (package, `[[test]]` name). To add one: declare the target
/// with `test = false` (and the `required-features` its engine needs) in the package's
/// `Cargo.toml`, read addresses with `kernel_testkit::cluster_address`, kill and restart
/// nodes with `kernel_testkit::kill_node`, and add a line here.
pub(crate) const CLUSTER_TESTS: &[(&str, &str)] = &[
    // A region lock, and an election, while the ZooKeeper ensemble's leader dies.
    ("kernel-sync", "zk_cluster"),
    // The global lock with one, then two, of three Cassandra nodes down.
    ("kernel-sync", "cassandra_cluster"),
    // A service's work queue node killed under 20 callers, classic and quorum work queues.
    ("kernel-server", "amqp_cluster"),
];

/// `--test <name>` for every cluster test target: with `--workspace`, cargo builds each in its
/// own package, with the same features as the rest of the workspace's tests.
pub(crate) fn target_args() -> Vec<&'static str> {
    CLUSTER_TESTS
        .iter()
        .flat_map(|&(_, name)| ["--test", name])
        .collect()
}

/// Brings the clusters up, runs every cluster test target, and brings the clusters down
/// again unless `keep` (also when a test failed). `extra` goes to `cargo test`, as for
/// `cargo xtask test` (test binaries' options after a `--`).
pub(crate) fn run(root: &Path, extra: &[String], keep: bool) -> Result<()> {
    let begun = Instant::now();
    services::up_cluster(root)?;
    let up = begun.elapsed();
    let tests = Instant::now();
    let outcome = run_tests(root, extra);
    let tests = tests.elapsed();
    let down = Instant::now();
    let stopped = if keep {
        eprintln!("xtask: leaving the clusters up (--keep-cluster)");
        Ok(())
    } else {
        services::down_cluster(root)
    };
    eprintln!(
        "xtask: cluster phase took {:.1?}: up {up:.1?}, tests {tests:.1?}, down {:.1?}",
        begun.elapsed(),
        down.elapsed()
    );
    outcome.and(stopped)
}

fn run_tests(root: &Path, extra: &[String]) -> Result<()> {
    let mut args = vec!["test", "--workspace", "--all-features"];
    args.extend(target_args());
    args.extend(extra.iter().map(String::as_str));
    // The tests kill nodes: never two at once.
    if !extra.iter().any(|arg| arg == "--") {
        args.push("--");
    }
    args.push("--test-threads=1");
    // The tests run `xtask services kill/start` through this very binary.
    let xtask = std::env::current_exe()?.display().to_string();
    cargo(root, &args, &[("KERNEL_XTASK".to_owned(), xtask)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cluster_test_is_kept_out_of_the_ordinary_test_run() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for &(package, name) in CLUSTER_TESTS {
            // Directory name = package name (DESIGN.md §2) for every crate with engine tests.
            let dir = package;
            let manifest = std::fs::read_to_string(root.join(dir).join("Cargo.toml")).unwrap();
            let target = manifest
                .split("[[test]]")
                .find(|block| block.contains(&format!("name = \"{name}\"")))
                .unwrap_or_else(|| panic!("{package} declares no [[test]] {name}"));
            assert!(
                target.contains("test = false"),
                "{package}'s [[test]] {name} needs `test = false`, or `cargo xtask test` runs it \
                 without the clusters"
            );
            assert!(
                root.join(dir)
                    .join("tests")
                    .join(format!("{name}.rs"))
                    .is_file(),
                "{package}/tests/{name}.rs"
            );
        }
        assert_eq!(
            target_args()[..2],
            ["--test", "zk_cluster"],
            "one --test per target"
        );
    }
}
