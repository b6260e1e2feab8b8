//! A single-node Apache Cassandra from Maven Central jars, run as `CassandraDaemon` on JDK 17.
//!
//! Debian has no Cassandra package and the Apache tarball host is out of reach, so
//! `xtask/services/cassandra/pom.xml` names `org.apache.cassandra:cassandra-all` and
//! `maven-dependency-plugin:3.8.1:copy-dependencies` copies it and its runtime dependencies into
//! `.services/cassandra/lib/` (kept between runs; `~/.m2` is the second cache).
//!
//! | what | where |
//! |---|---|
//! | CQL (native protocol) | `127.0.0.1:19042` |
//! | internode (storage) | `127.0.0.1:17000` (JMX off) |
//! | jars / generated config / data | `.services/cassandra/{lib,conf,run}/` (`run/` wiped per start) |
//! | log | `.services/cassandra/cassandra.log` |
//!
//! Ready when a CQL v4 client gets `READY` and then rows for
//! `SELECT release_version FROM system.local`.

pub(super) mod config;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use super::engine::Engine;
use super::{install, probe, process};
use crate::Result;

/// The CQL port the tests connect to.
pub(super) const NATIVE_PORT: u16 = 19042;
const STORAGE_PORT: u16 = 17000;
const CLUSTER: &str = "kernel-test";

/// The `cassandra-all` version fetched; overrides the pom's default property.
const VERSION: &str = "5.0.8";
const POM: &str = include_str!("../../../services/cassandra/pom.xml");
const DEPENDENCY_PLUGIN: &str =
    "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies";

/// Commitlog segments alone are 32 MiB each; below this, startup or the first tests fail.
pub(super) const MIN_FREE_MIB: u64 = 2048;

/// The single test node.
#[derive(Debug)]
pub(super) struct Cassandra {
    dir: PathBuf,
}

impl Cassandra {
    /// The node whose jars, config and data live in `dir`.
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The jars of `cassandra-all` and its dependencies (the ring's nodes use them too).
    pub(super) fn lib(&self) -> PathBuf {
        self.dir.join("lib")
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    /// Whether `lib/` holds the jars of [`VERSION`] (it is renamed into place only when complete).
    pub(super) fn fetched(&self) -> bool {
        self.lib()
            .join(format!("cassandra-all-{VERSION}.jar"))
            .is_file()
    }

    /// Runs `maven-dependency-plugin:copy-dependencies` on our pom, on JDK 17, into `into`.
    fn copy_dependencies(&self, into: &Path, log: &Path) -> Result<()> {
        let java = install::java17().ok_or("JDK 17 not found under /usr/lib/jvm")?;
        let java_home = java
            .parent()
            .and_then(Path::parent)
            .ok_or("JDK 17 has no home")?;
        let pom = self.dir.join("pom.xml");
        fs::write(&pom, POM)?;
        let mut mvn = Command::new("mvn");
        mvn.env("JAVA_HOME", java_home)
            .args(["-B", "-ntp", "-f"])
            .arg(&pom)
            .arg(DEPENDENCY_PLUGIN)
            .arg("-DincludeScope=runtime")
            .arg(format!("-Dcassandra.version={VERSION}"))
            .arg(format!("-DoutputDirectory={}", into.display()))
            .current_dir(&self.dir);
        process::run_logged(&mut mvn, "mvn copy-dependencies (cassandra-all)", log)
    }

    /// A fresh `run/` and the generated `conf/` files.
    fn prepare(&self) -> Result<()> {
        let run = self.run_dir();
        if run.exists() {
            fs::remove_dir_all(&run)
                .map_err(|e| format!("cannot remove {}: {e}", run.display()))?;
        }
        for sub in ["run/logs", "run/tmp", "run/triggers", "conf"] {
            fs::create_dir_all(self.dir.join(sub))?;
        }
        let yaml = config::cassandra_yaml(&config::NodeYaml {
            cluster: CLUSTER,
            address: probe::LOOPBACK,
            native_port: NATIVE_PORT,
            storage_port: STORAGE_PORT,
            seeds: &[probe::LOOPBACK],
            initial_token: "0",
        });
        fs::write(self.dir.join("conf/cassandra.yaml"), yaml)?;
        fs::write(self.dir.join("conf/logback.xml"), config::LOGBACK_XML)?;
        Ok(())
    }
}

/// The jamm memory-meter jar in `lib`, passed as `-javaagent`.
pub(super) fn jamm(lib: &Path) -> Result<PathBuf> {
    let entries = fs::read_dir(lib).map_err(|e| format!("cannot list {}: {e}", lib.display()))?;
    entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("jamm-"))
        })
        .ok_or_else(|| {
            format!(
                "no jamm-*.jar in {}; delete it to fetch again",
                lib.display()
            )
            .into()
        })
}

/// Fails unless the disk of `dir` has [`MIN_FREE_MIB`] free, saying what needs the space.
pub(super) fn ensure_free_space(dir: &Path) -> Result<()> {
    let free = free_mib(dir)?;
    if free < MIN_FREE_MIB {
        return Err(format!(
            "cassandra: only {free} MiB free on the disk of {}; it needs at least {MIN_FREE_MIB} MiB \
             (32 MiB commitlog segments, data, logs). Free some space and retry",
            dir.display()
        )
        .into());
    }
    Ok(())
}

/// Free space on the filesystem holding `path`, in MiB, from `df -Pk`.
fn free_mib(path: &Path) -> Result<u64> {
    let output = Command::new("df").arg("-Pk").arg(path).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let available_kib = text
        .lines()
        .nth(1)
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|field| field.parse::<u64>().ok())
        .ok_or_else(|| {
            format!(
                "cannot read free space of {} from `df -Pk`: {text:?}",
                path.display()
            )
        })?;
    Ok(available_kib / 1024)
}

impl Engine for Cassandra {
    fn name(&self) -> &'static str {
        "cassandra"
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("cassandra.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("cassandra.log")
    }

    fn address(&self) -> String {
        format!("{}:{NATIVE_PORT}", probe::LOOPBACK)
    }

    fn ports(&self) -> &'static [u16] {
        &[NATIVE_PORT, STORAGE_PORT]
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        let jdk = install::java17()
            .is_none()
            .then_some(install::JDK17_PACKAGE);
        let maven = (!self.fetched() && install::on_path("mvn").is_none()).then_some("maven");
        jdk.into_iter().chain(maven).collect()
    }

    fn fetch(&self) -> Result<()> {
        if self.fetched() {
            return Ok(());
        }
        let (partial, log) = (self.dir.join("lib.partial"), self.dir.join("mvn.log"));
        eprintln!(
            "services: fetching cassandra-all {VERSION} and its dependencies (log: {})",
            log.display()
        );
        let begun = Instant::now();
        fs::create_dir_all(&self.dir)?;
        let _ = fs::remove_dir_all(&partial);
        let _ = fs::remove_file(&log);
        self.copy_dependencies(&partial, &log)?;
        let lib = self.lib();
        if lib.exists() {
            fs::remove_dir_all(&lib)?;
        }
        fs::rename(&partial, &lib)?;
        if !self.fetched() {
            let (lib, log) = (lib.display(), log.display());
            return Err(
                format!("mvn left no cassandra-all-{VERSION}.jar in {lib}; read {log}").into(),
            );
        }
        let jars = fs::read_dir(&lib)?.count();
        eprintln!("services: fetched {jars} jars in {:.1?}", begun.elapsed());
        Ok(())
    }

    fn start(&self) -> Result<Child> {
        let java = install::java17().ok_or("JDK 17 not found under /usr/lib/jvm")?;
        ensure_free_space(&self.dir)?;
        self.prepare()?;
        let mut command = Command::new(java);
        process::scrub_java_env(&mut command)
            .args(config::jvm_args(
                &self.dir,
                &self.lib(),
                &jamm(&self.lib())?,
                ["-Xms512m", "-Xmx1g"],
            ))
            .arg(config::MAIN)
            .current_dir(&self.dir);
        let child = process::spawn_detached(&mut command, &self.log_file())?;
        process::write_pid(&self.pid_file(), child.id())?;
        Ok(child)
    }

    fn probe(&self) -> Result<String> {
        probe::cql::release_version(NATIVE_PORT).map(|version| format!("Cassandra {version}"))
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(240)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        // SIGTERM runs the shutdown hook, which drains the node; the data is thrown away anyway.
        process::terminate(pid, Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pom_defaults_to_the_version_xtask_asks_for() {
        assert!(POM.contains(&format!("<cassandra.version>{VERSION}</cassandra.version>")));
    }

    #[test]
    fn free_space_of_the_temp_dir_is_readable() {
        assert!(free_mib(&std::env::temp_dir()).unwrap() > 0);
    }
}
