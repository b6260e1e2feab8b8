//! Debian packages through `apt-get`, without letting a package start its default daemon.
//!
//! `rabbitmq-server`'s postinst starts a system broker on 5672 through `invoke-rc.d`. While we
//! install, `/usr/sbin/policy-rc.d` exits 101 ("action forbidden"), so no daemon is started; we
//! write that file only if none exists and remove it afterwards. An existing one is left alone.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use super::process;
use crate::Result;

/// Debian's OpenJDK 17 runtime, for engines that need Java and for Maven.
pub(super) const JDK17_PACKAGE: &str = "openjdk-17-jre-headless";

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_DENY_ALL: &str = "#!/bin/sh\n\
    # Written by `cargo xtask services up` for the duration of one apt-get install: packages must\n\
    # not start their default daemons. Removed when the install ends.\n\
    exit 101\n";

/// Installs `packages` (none: does nothing) with `apt-get update` and a non-interactive
/// `apt-get install`; output goes to `log`.
pub(super) fn apt_install(packages: &[&str], log: &Path) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    if !is_root() {
        return Err(
            format!("`apt-get install {list}` needs root; install them once, then retry").into(),
        );
    }
    eprintln!(
        "services: installing {list} with apt-get (log: {})",
        log.display()
    );
    let begun = Instant::now();
    let _no_daemons = DaemonStartBlock::engage()?;
    process::run_logged(apt_get().args(["update", "-q"]), "apt-get update", log)?;
    let mut install = apt_get();
    install
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(packages);
    process::run_logged(&mut install, &format!("apt-get install {list}"), log)?;
    eprintln!("services: apt-get done in {:.1?}", begun.elapsed());
    Ok(())
}

fn apt_get() -> Command {
    let mut command = Command::new("apt-get");
    command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "l")
        // Wait for another apt/dpkg (e.g. unattended-upgrades) instead of failing at once.
        .args(["-o", "DPkg::Lock::Timeout=300"])
        .args([
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
        ]);
    command
}

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// While alive, makes `invoke-rc.d` refuse to start services (if we created the policy file).
#[derive(Debug)]
struct DaemonStartBlock {
    created: bool,
}

impl DaemonStartBlock {
    fn engage() -> Result<Self> {
        let path = Path::new(POLICY_RC_D);
        if path.exists() {
            return Ok(Self { created: false });
        }
        fs::write(path, POLICY_DENY_ALL).map_err(|e| format!("cannot write {POLICY_RC_D}: {e}"))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
        Ok(Self { created: true })
    }
}

impl Drop for DaemonStartBlock {
    fn drop(&mut self) {
        if self.created
            && let Err(e) = fs::remove_file(POLICY_RC_D)
        {
            eprintln!("services: could not remove {POLICY_RC_D}: {e}; remove it by hand");
        }
    }
}

/// The `java` of Debian's OpenJDK 17 (`/usr/lib/jvm/java-17-openjdk-<arch>/bin/java`), never
/// whatever `JAVA_HOME` or `PATH` point at: Cassandra 5.0 cannot run on JDK 24+.
pub(super) fn java17() -> Option<PathBuf> {
    let mut homes: Vec<PathBuf> = fs::read_dir("/usr/lib/jvm")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|home| {
            home.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("java-17-openjdk"))
        })
        .collect();
    homes.sort();
    homes
        .into_iter()
        .map(|home| home.join("bin/java"))
        .find(|java| java.is_file())
}

/// `program` found on `PATH`.
pub(super) fn on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// `package` if `file` (which the package provides) is missing.
pub(super) fn unless_present(file: &str, package: &'static str) -> Option<&'static str> {
    (!Path::new(file).exists()).then_some(package)
}
