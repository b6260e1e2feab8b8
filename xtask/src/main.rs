//! `cargo xtask`: the project's own automation.
//!
//! | command | does |
//! |---|---|
//! | `codegen [--check]` | regenerates `proto/src/generated` from `proto/proto` with protox (no `protoc`) |
//! | `services up / down / status` | real RabbitMQ, ZooKeeper and Cassandra on loopback for the tests |
//! | `services up --cluster / kill NODE / start NODE` | three-node clusters of each engine, and one node taken away and brought back, for fault tests |
//! | `test` | `services up`, then every test of the workspace with the engines' addresses |
//! | `test --cluster` | `services up --cluster`, the fault tests that kill cluster nodes ([`cluster_tests`]), then `services down --cluster` |
//! | `bench rpc / inproc / memory` | the kernel as separate processes over RabbitMQ against a raw lapin echo, in process, and its memory ([`mod@bench`]) |
//! | `bench criterion` | `services up`, then every criterion benchmark, printing ratios against same-run baselines |
//! | `ci` | the toolchain is the MSRV, fmt, clippy, a `--no-default-features` build, `codegen --check`, `cargo package`, docs, the cluster phase (`test --cluster`, single nodes stopped), the examples, then `test` |

#![allow(clippy::print_stdout)] // a command-line tool speaks on stdout

mod bench;
mod cluster_tests;
mod codegen;
mod examples;
mod services;
mod workspace;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The error every xtask step returns: a sentence saying what failed and what to look at.
pub(crate) type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Project automation for the kernel workspace"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Regenerate the checked-in protobuf code.
    Codegen {
        /// Fail if the checked-in code differs from what codegen would write; write nothing.
        #[arg(long)]
        check: bool,
    },
    /// Manage the real engines the tests talk to.
    Services {
        #[command(subcommand)]
        action: services::Action,
    },
    /// Bring the engines up, then run every test of the workspace against them.
    Test {
        /// Run the cluster tests instead: bring the three-node clusters up, run the tests that
        /// kill their nodes (one at a time), and bring the clusters down.
        #[arg(long)]
        cluster: bool,
        /// With `--cluster`: leave the clusters running afterwards.
        #[arg(long, requires = "cluster")]
        keep_cluster: bool,
        /// Extra arguments passed to `cargo test` (after `--`).
        #[arg(last = true)]
        cargo_args: Vec<String>,
    },
    /// Measure the kernel against same-run baselines: `rpc`, `inproc`, `memory`, or the
    /// criterion benchmarks.
    Bench {
        #[command(subcommand)]
        action: bench::Action,
    },
    /// Everything CI checks, in order: the toolchain is the MSRV, fmt, clippy,
    /// no-default-features build, codegen --check, cargo package, docs, the cluster tests,
    /// examples, test.
    Ci,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = workspace::root().and_then(|root| match cli.command {
        Command::Codegen { check } => codegen::run(&root, check),
        Command::Services { action } => services::run(&root, action),
        Command::Test {
            cluster: true,
            keep_cluster,
            cargo_args,
        } => cluster_tests::run(&root, &cargo_args, keep_cluster),
        Command::Test { cargo_args, .. } => test(&root, &cargo_args),
        Command::Bench { action } => bench::run(&root, action),
        Command::Ci => ci(&root),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `cargo <args>` in the workspace root and fails naming the step if it fails.
pub(crate) fn cargo(
    root: &std::path::Path,
    args: &[&str],
    envs: &[(String, String)],
) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask: cargo {}", args.join(" "));
    let status = std::process::Command::new(cargo)
        .args(args)
        .current_dir(root)
        .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed ({status})", args.join(" ")).into())
    }
}

/// Fails unless the `rustc` that builds is the workspace's `rust-version` (the MSRV CI
/// promises to build with), so a newer toolchain cannot hide a use of a newer feature.
fn msrv(root: &std::path::Path) -> Result<()> {
    let manifest = std::fs::read_to_string(root.join("Cargo.toml"))?;
    let wanted = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .map(|value| value.trim_matches('"').to_owned())
        .ok_or("no `rust-version` in the workspace's Cargo.toml")?;
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = std::process::Command::new(rustc)
        .arg("--version")
        .current_dir(root)
        .output()?;
    let version = String::from_utf8_lossy(&output.stdout).into_owned();
    // `rustc 1.95.0 (59807616e 2026-04-14)`: compare major.minor with `rust-version`.
    let found = version.split_whitespace().nth(1).unwrap_or_default();
    if found == wanted || found.starts_with(&format!("{wanted}.")) {
        eprintln!("xtask: rustc {found} is the MSRV, {wanted}");
        Ok(())
    } else {
        Err(format!(
            "CI builds with the MSRV, rust-version {wanted}, but rustc is {:?}: \
             run `rustup default {wanted}` (or set RUSTUP_TOOLCHAIN)",
            version.trim()
        )
        .into())
    }
}

fn test(root: &std::path::Path, extra: &[String]) -> Result<()> {
    let engines = services::up(root)?;
    // Every feature: what only an optional feature enables (the Prometheus listener, the
    // OpenTelemetry exporter) is tested too.
    let mut args = vec!["test", "--workspace", "--all-targets", "--all-features"];
    args.extend(extra.iter().map(String::as_str));
    cargo(root, &args, &engines.env_vars())?;
    // Doc tests are not part of `--all-targets`.
    cargo(
        root,
        &["test", "--workspace", "--doc", "--all-features"],
        &engines.env_vars(),
    )
}

/// `cargo package --workspace` verifies each crate against the others through a local
/// registry that overlays crates.io, and cargo treats a registry's crate as never changing:
/// it extracts it into `$CARGO_HOME/registry/src/<registry>/<name>-<version>` once, and
/// rebuilds it only when its name, version or source change. Ours change at an unchanged
/// version, so a second run on this machine would verify each crate against the first run's
/// build of the others. Before packaging, the extractions of our crates (`kernel-*`) from
/// local registries (directories named `-<hash>`; crates.io's is `index.crates.io-<hash>`)
/// are removed, and so are the fingerprints of what was built from them in `target_dir`.
fn forget_packaged_sources(target_dir: &std::path::Path) -> Result<()> {
    forget_packaged_builds(target_dir)?;
    let cargo_home = match std::env::var_os("CARGO_HOME") {
        Some(home) => std::path::PathBuf::from(home),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::PathBuf::from(home).join(".cargo"),
            None => return Ok(()),
        },
    };
    let Ok(registries) = std::fs::read_dir(cargo_home.join("registry").join("src")) else {
        return Ok(()); // nothing extracted yet
    };
    for registry in registries.flatten() {
        if !registry.file_name().to_string_lossy().starts_with('-') {
            continue;
        }
        for source in std::fs::read_dir(registry.path())?.flatten() {
            if source.file_name().to_string_lossy().starts_with("kernel-") {
                std::fs::remove_dir_all(source.path())
                    .map_err(|e| format!("cannot remove {}: {e}", source.path().display()))?;
            }
        }
    }
    Ok(())
}

/// Removes the fingerprints of the `kernel-*` crates built from a local registry in
/// `target_dir`'s debug profile, so that cargo builds them again. Such a unit's dep-info file
/// (`deps/<crate>-<hash>.d`) names its sources under `registry/src/-<hash>/kernel-…`; its
/// fingerprint directory ends in the same `-<hash>`.
fn forget_packaged_builds(target_dir: &std::path::Path) -> Result<()> {
    let debug = target_dir.join("debug");
    let Ok(deps) = std::fs::read_dir(debug.join("deps")) else {
        return Ok(()); // nothing built yet
    };
    let mut stale = Vec::new();
    for dep_info in deps.flatten() {
        let name = dep_info.file_name().to_string_lossy().into_owned();
        let Some((_, unit)) = name.strip_suffix(".d").and_then(|n| n.rsplit_once('-')) else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(dep_info.path()) else {
            continue;
        };
        let from_local_registry = text.split("/registry/src/-").skip(1).any(|rest| {
            rest.split_once('/')
                .is_some_and(|(_, path)| path.starts_with("kernel-"))
        });
        if from_local_registry {
            stale.push(format!("-{unit}"));
        }
    }
    let Ok(fingerprints) = std::fs::read_dir(debug.join(".fingerprint")) else {
        return Ok(());
    };
    for fingerprint in fingerprints.flatten() {
        let name = fingerprint.file_name().to_string_lossy().into_owned();
        if stale.iter().any(|unit| name.ends_with(unit.as_str())) {
            std::fs::remove_dir_all(fingerprint.path())
                .map_err(|e| format!("cannot remove {}: {e}", fingerprint.path().display()))?;
        }
    }
    Ok(())
}

fn ci(root: &std::path::Path) -> Result<()> {
    msrv(root)?;
    cargo(root, &["fmt", "--all", "--check"], &[])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The cluster tests are kept out of `--all-targets` (`test = false`): lint them by name.
    let mut cluster_clippy = vec!["clippy", "--workspace", "--all-features"];
    cluster_clippy.extend(cluster_tests::target_args());
    cluster_clippy.extend(["--", "-D", "warnings"]);
    cargo(root, &cluster_clippy, &[])?;
    // The embedded defaults must build without any engine feature.
    cargo(
        root,
        &[
            "check",
            "--workspace",
            "--all-targets",
            "--no-default-features",
        ],
        &[],
    )?;
    codegen::run(root, true)?;
    // Every publishable crate packages, and builds from its package alone (the test kit,
    // xtask, the benchmarks' processes and the code generator's fixture are not published).
    forget_packaged_sources(&workspace::target_dir(root))?;
    cargo(
        root,
        &[
            "package",
            "--workspace",
            "--locked",
            "--exclude",
            "kernel-testkit",
            "--exclude",
            "xtask",
            "--exclude",
            "kernel-bench",
            "--exclude",
            "kernel-build-fixture",
        ],
        &[],
    )?;
    let deny = [("RUSTDOCFLAGS".to_owned(), "-D warnings".to_owned())];
    cargo(
        root,
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &deny,
    )?;
    // The cluster phase, once per run and alone: three nodes of each engine fill this 2-core
    // machine, so the single nodes are stopped first, and the clusters are down again before
    // anything else (the examples, the tests, benchmarks) runs.
    services::down_single(root)?;
    cluster_tests::run(root, &[], false)?;
    // The examples as a user runs them (this brings the engines up), then the README's test
    // command, last.
    examples::run(root, &services::up(root)?)?;
    test(root, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_builds_of_our_crates_from_a_local_registry_are_forgotten() {
        let target = std::env::temp_dir().join(format!("xtask-forget-{}", std::process::id()));
        let (deps, fingerprints) = (target.join("debug/deps"), target.join("debug/.fingerprint"));
        std::fs::create_dir_all(&deps).unwrap();
        for (unit, source) in [
            (
                "kernel_transport-aa11",
                "/home/u/.cargo/registry/src/-14cd/kernel-transport-0.1.0/src/lib.rs",
            ),
            (
                "kernel_transport-bb22",
                "/work/main/kernel-transport/src/lib.rs",
            ),
            (
                "serde-cc33",
                "/home/u/.cargo/registry/src/index.crates.io-19/serde-1.0.0/src/lib.rs",
            ),
        ] {
            std::fs::write(
                deps.join(format!("{unit}.d")),
                format!("out.rlib: {source}\n"),
            )
            .unwrap();
        }
        for fingerprint in [
            "kernel-transport-aa11",
            "kernel-transport-bb22",
            "serde-cc33",
        ] {
            std::fs::create_dir_all(fingerprints.join(fingerprint)).unwrap();
        }
        forget_packaged_builds(&target).unwrap();
        assert!(!fingerprints.join("kernel-transport-aa11").exists());
        assert!(fingerprints.join("kernel-transport-bb22").exists());
        assert!(fingerprints.join("serde-cc33").exists());
        std::fs::remove_dir_all(&target).unwrap();
    }
}
