//! A private standalone ZooKeeper from Debian's `zookeeper` jars, started with `java -cp`.
//!
//! Debian's `zkServer.sh` always sources `/etc/zookeeper/conf/environment`, which fixes the
//! config dir and log dir, so we skip it and run `QuorumPeerMain` on JDK 17 with our own
//! `zoo.cfg` (a config without `server.N` lines runs standalone). Logging goes through
//! `slf4j-simple` to `.services/zookeeper/zookeeper.log`.
//!
//! Ready when `ruok` answers `imok` and `srvr` reports `Mode: standalone`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::engine::Engine;
use super::{install, probe, process};
use crate::Result;

/// The client port the tests connect to.
pub(super) const CLIENT_PORT: u16 = 2191;

const JAR: &str = "/usr/share/java/zookeeper.jar";
/// Debian's `libslf4j-java` (a dependency of `libzookeeper-java`); without a binding ZooKeeper
/// logs nothing at all.
const SLF4J_SIMPLE: &str = "/usr/share/java/slf4j-simple.jar";
const MAIN: &str = "org.apache.zookeeper.server.quorum.QuorumPeerMain";

/// The private ZooKeeper server.
#[derive(Debug)]
pub(super) struct ZooKeeper {
    dir: PathBuf,
}

impl ZooKeeper {
    /// The server whose state lives in `dir`.
    pub(super) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn config_file(&self) -> PathBuf {
        self.dir.join("zoo.cfg")
    }
}

/// `zoo.cfg` for a standalone test server on `127.0.0.1:port`; an ensemble member's config is
/// this plus its `server.N` lines.
///
/// Short `tickTime` and `minSessionTimeout` let session-expiry tests use 1-2 s sessions (expiry is
/// checked once per tick); `extendedTypesEnabled` allows TTL nodes.
pub(super) fn zoo_cfg(data_dir: &Path, port: u16) -> String {
    format!(
        "# Written by `cargo xtask services up`: a private test server (docs/services.md).\n\
         tickTime=1000\n\
         minSessionTimeout=1000\n\
         maxSessionTimeout=60000\n\
         dataDir={data}\n\
         clientPort={port}\n\
         clientPortAddress=127.0.0.1\n\
         maxClientCnxns=0\n\
         4lw.commands.whitelist=ruok,stat,srvr\n\
         admin.enableServer=false\n\
         extendedTypesEnabled=true\n",
        data = data_dir.display(),
    )
}

/// `java … QuorumPeerMain <config>` on JDK 17 with the `heap` flags (`-Xms…`, `-Xmx…`), its
/// temporary files in `dir`.
pub(super) fn server_command(dir: &Path, config: &Path, heap: [&str; 2]) -> Result<Command> {
    let java = install::java17().ok_or("JDK 17 not found under /usr/lib/jvm")?;
    let classpath = if Path::new(SLF4J_SIMPLE).exists() {
        format!("{JAR}:{SLF4J_SIMPLE}")
    } else {
        JAR.to_owned()
    };
    let mut command = Command::new(java);
    process::scrub_java_env(&mut command)
        .args(heap)
        .args(["-XX:+UseSerialGC", "-cp", &classpath])
        .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
        // TTL and container nodes are reaped by a sweep that runs every 60 s by default.
        .arg("-Dznode.container.checkIntervalMs=1000")
        .arg(format!("-Djava.io.tmpdir={}", dir.display()))
        .arg(MAIN)
        .arg(config)
        .current_dir(dir);
    Ok(command)
}

/// Debian packages a ZooKeeper server needs that are missing.
pub(super) fn missing_packages() -> Vec<&'static str> {
    let jdk = install::java17()
        .is_none()
        .then_some(install::JDK17_PACKAGE);
    install::unless_present(JAR, "zookeeper")
        .into_iter()
        .chain(jdk)
        .collect()
}

impl Engine for ZooKeeper {
    fn name(&self) -> &'static str {
        "zookeeper"
    }

    fn dir(&self) -> &Path {
        &self.dir
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("zookeeper.pid")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("zookeeper.log")
    }

    fn address(&self) -> String {
        format!("{}:{CLIENT_PORT}", probe::LOOPBACK)
    }

    fn ports(&self) -> &'static [u16] {
        &[CLIENT_PORT]
    }

    fn missing_packages(&self) -> Vec<&'static str> {
        missing_packages()
    }

    fn start(&self) -> Result<Child> {
        let data = self.data_dir();
        if data.exists() {
            fs::remove_dir_all(&data)
                .map_err(|e| format!("cannot remove {}: {e}", data.display()))?;
        }
        fs::create_dir_all(&data)?;
        fs::write(self.config_file(), zoo_cfg(&data, CLIENT_PORT))?;
        let mut command = server_command(&self.dir, &self.config_file(), ["-Xms64m", "-Xmx256m"])?;
        let child = process::spawn_detached(&mut command, &self.log_file())?;
        process::write_pid(&self.pid_file(), child.id())?;
        Ok(child)
    }

    fn probe(&self) -> Result<String> {
        probe::zookeeper(CLIENT_PORT)
    }

    fn start_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn stop(&self, pid: u32) -> Result<()> {
        process::terminate(pid, Duration::from_secs(10))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoo_cfg_is_private_and_allows_short_sessions_and_ttl_nodes() {
        let cfg = zoo_cfg(Path::new("/x/.services/zookeeper/data"), 2191);
        for line in [
            "dataDir=/x/.services/zookeeper/data",
            "clientPort=2191",
            "clientPortAddress=127.0.0.1",
            "minSessionTimeout=1000",
            "4lw.commands.whitelist=ruok,stat,srvr",
            "admin.enableServer=false",
            "extendedTypesEnabled=true",
        ] {
            assert!(cfg.lines().any(|l| l == line), "missing {line:?} in\n{cfg}");
        }
        assert!(
            !cfg.contains("server."),
            "a server.N line would make it a quorum member"
        );
    }
}
