//! Processes that outlive `xtask`: detached spawning, pid files, signals, logged helper commands.
//!
//! An engine is spawned in its own process group with stdin from `/dev/null` and stdout/stderr
//! appended to its log file, so it survives the `cargo xtask services up` that started it and
//! never holds the pipe of a `$(cargo xtask services up)` substitution open. A later `xtask` finds
//! it again through a pid file, and trusts the pid only if the process is alive (not a zombie) and
//! its command line names the engine's state directory (so a recycled pid is never signalled).

use std::fs::{self, File};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Result;

/// How often the wait loops look again.
pub(super) const POLL: Duration = Duration::from_millis(200);

/// Closes every descriptor above stderr, then becomes the engine (`$0 "$@"`).
///
/// An engine must not inherit what its starter had open: a `flock` lock taken around
/// `cargo xtask services up`, or make's jobserver pipe, would otherwise stay held for as long
/// as the engine runs (seen here: a cargo lock held by RabbitMQ, ZooKeeper and Cassandra).
/// Rust marks its own descriptors close-on-exec, but not those it inherited.
const CLOSE_INHERITED_FDS: &str = r#"for fd in /proc/$$/fd/*; do fd=${fd##*/}; [ "$fd" -gt 2 ] && exec {fd}>&-; done 2>/dev/null; exec "$0" "$@""#;

/// Starts `command` detached: own process group, stdin `/dev/null`, stdout and stderr to `log`
/// (truncated first, so the log shows this run only), no inherited descriptors.
pub(super) fn spawn_detached(command: &mut Command, log: &Path) -> Result<Child> {
    let out = File::create(log).map_err(|e| format!("cannot create log {}: {e}", log.display()))?;
    let err = out.try_clone()?;
    let program = command.get_program().to_string_lossy().into_owned();
    let mut wrapped = Command::new("bash");
    wrapped
        .arg("-c")
        .arg(CLOSE_INHERITED_FDS)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => wrapped.env(name, value),
            None => wrapped.env_remove(name),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e} (log: {})", log.display()).into())
}

/// Removes the variables through which the caller's shell could reconfigure a JVM we start.
pub(super) fn scrub_java_env(command: &mut Command) -> &mut Command {
    command
        .env_remove("JAVA_TOOL_OPTIONS")
        .env_remove("_JAVA_OPTIONS")
        .env_remove("JDK_JAVA_OPTIONS")
}

/// Records `pid` in `pid_file`.
pub(super) fn write_pid(pid_file: &Path, pid: u32) -> Result<()> {
    fs::write(pid_file, format!("{pid}\n"))
        .map_err(|e| format!("cannot write pid file {}: {e}", pid_file.display()).into())
}

/// The pid in `pid_file`, if that process is alive and its command line contains `marker`.
pub(super) fn live_pid(pid_file: &Path, marker: &Path) -> Option<u32> {
    let pid = fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse::<u32>()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline);
    (is_alive(pid) && cmdline.contains(&*marker.to_string_lossy())).then_some(pid)
}

/// Whether `pid` exists and is not a zombie waiting to be reaped.
pub(super) fn is_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: `pid (comm) state ...`; comm may contain spaces and parentheses, state follows the
    // last `)`.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// Waits until `pid` is gone; `false` if it still runs after `timeout`.
pub(super) fn wait_exit(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(POLL);
    }
    true
}

/// Sends SIGTERM, waits up to `grace`, then SIGKILL; returns once the process is gone.
pub(super) fn terminate(pid: u32, grace: Duration) -> Result<()> {
    signal(pid, "TERM")?;
    if wait_exit(pid, grace) {
        return Ok(());
    }
    eprintln!("services: pid {pid} still running after {grace:?}, sending SIGKILL");
    signal(pid, "KILL")?;
    if wait_exit(pid, Duration::from_secs(10)) {
        Ok(())
    } else {
        Err(format!("pid {pid} survived SIGKILL").into())
    }
}

/// Stops every process in `pids` at once: SIGTERM to all, up to `grace` for all of them to exit,
/// then SIGKILL to those left; returns once all are gone.
pub(super) fn terminate_all(pids: &[u32], grace: Duration) -> Result<()> {
    for &pid in pids {
        signal(pid, "TERM")?;
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
    for &pid in pids.iter().filter(|&&pid| is_alive(pid)) {
        eprintln!("services: pid {pid} still running after {grace:?}, sending SIGKILL");
        signal(pid, "KILL")?;
    }
    let survivors: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&pid| !wait_exit(pid, Duration::from_secs(10)))
        .collect();
    if survivors.is_empty() {
        Ok(())
    } else {
        Err(format!("pids {survivors:?} survived SIGKILL").into())
    }
}

/// Kills `pid` with SIGKILL (no shutdown hook runs, as when a machine dies) and waits until it
/// is gone.
pub(super) fn kill(pid: u32) -> Result<()> {
    signal(pid, "KILL")?;
    if wait_exit(pid, Duration::from_secs(10)) {
        Ok(())
    } else {
        Err(format!("pid {pid} survived SIGKILL").into())
    }
}

/// The resident set size of `pid` in MiB (`VmRSS` of `/proc/PID/status`), if it runs.
pub(super) fn rss_mib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse::<u64>()
        .ok()?;
    Some(kib / 1024)
}

/// `kill -<name> <pid>` (std can only signal its own children, and this crate has no `unsafe`).
fn signal(pid: u32, name: &str) -> Result<()> {
    let output = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .output()?;
    if output.status.success() || !is_alive(pid) {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(format!("kill -{name} {pid} failed: {}", stderr.trim()).into())
    }
}

/// Runs a helper command (apt-get, mvn) to completion with its output in `log` (appended); on
/// failure the error carries the log's last lines.
pub(super) fn run_logged(command: &mut Command, what: &str, log: &Path) -> Result<()> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| format!("cannot open log {}: {e}", log.display()))?;
    let err = out.try_clone()?;
    let status = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        let tail = tail(log, 25);
        Err(format!(
            "{what} failed ({status}); last lines of {}:\n{tail}",
            log.display()
        )
        .into())
    }
}

/// The last `lines` lines of a log file, or a note that it cannot be read.
pub(super) fn tail(log: &Path, lines: usize) -> String {
    match fs::read(log) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_a_made_up_pid_is_not() {
        assert!(is_alive(std::process::id()));
        assert!(!is_alive(u32::MAX - 1));
    }

    #[test]
    fn own_process_has_a_resident_set() {
        assert!(rss_mib(std::process::id()).is_some());
        assert_eq!(rss_mib(u32::MAX - 1), None);
    }

    #[test]
    fn live_pid_requires_the_marker_in_the_command_line() {
        let dir = std::env::temp_dir().join(format!("xtask-pid-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pid_file = dir.join("pid");
        write_pid(&pid_file, std::process::id()).unwrap();
        assert_eq!(
            live_pid(&pid_file, Path::new("no-such-marker-in-argv")),
            None
        );
        let own_exe = std::env::current_exe().unwrap();
        let exe_marker = Path::new(own_exe.file_name().unwrap());
        assert_eq!(live_pid(&pid_file, exe_marker), Some(std::process::id()));
        fs::remove_dir_all(&dir).unwrap();
    }
}
