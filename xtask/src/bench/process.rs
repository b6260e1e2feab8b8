//! The `kernel-bench` processes: servers waited on until they say they are ready, clients
//! until they print their results, every one killed when its handle is dropped.
//!
//! A role's stdout is read line by line by a thread of its own: lines that are JSON objects
//! with a `kernel_bench` field are for us, every line also goes to the process's log (with its
//! stderr), so that a failure can name a file that says why.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::Bench;
use crate::Result;

/// How long a server may take to connect and consume its queue.
const READY_BOUND: Duration = Duration::from_secs(90);
/// How long a client may take to exit after its last result line.
const EXIT_BOUND: Duration = Duration::from_secs(10);

/// A client's measured run, as `kernel-bench` prints it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Measured {
    /// `raw`, `wire`, `kernel` or `inproc`.
    pub(crate) system: String,
    pub(crate) concurrency: usize,
    pub(crate) calls: u64,
    pub(crate) errors: u64,
    pub(crate) complete: bool,
    pub(crate) elapsed_s: f64,
    pub(crate) calls_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) cpu_us_per_call: Option<f64>,
}

/// A running role, killed (with its stdin closed) when dropped.
#[derive(Debug)]
struct Role {
    child: Child,
    /// Held open: a server started with `--until-stdin-closes` exits when it closes.
    stdin: Option<ChildStdin>,
    lines: Receiver<serde_json::Value>,
    log: PathBuf,
    name: String,
}

impl Role {
    fn spawn(bench: &Bench, log_name: &str, args: &[String]) -> Result<Role> {
        let log = bench.logs.join(format!("{log_name}.log"));
        // Emptied, then written through two handles that both append: the child's stderr, and
        // the thread that copies its stdout.
        File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let append = || OpenOptions::new().append(true).open(&log);
        let stderr = append()?;
        let mut child = Command::new(&bench.binary)
            .args(args)
            .env("KERNEL_AMQP_URL", &bench.amqp_url)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bench.binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let mut copy = append()?;
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout)
                .lines()
                .map_while(std::io::Result::ok)
            {
                let _ = writeln!(copy, "{line}");
                let ours = serde_json::from_str::<serde_json::Value>(&line)
                    .ok()
                    .filter(|value| value.get("kernel_bench").is_some());
                if let Some(value) = ours
                    && sender.send(value).is_err()
                {
                    break;
                }
            }
        });
        Ok(Role {
            stdin: child.stdin.take(),
            child,
            lines,
            log,
            name: format!("kernel-bench {}", args.first().map_or("", String::as_str)),
        })
    }

    /// The next line for us of kind `kind`, within `bound`.
    fn next(&mut self, kind: &str, bound: Duration) -> Result<serde_json::Value> {
        let deadline = Instant::now() + bound;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line["kernel_bench"] == kind => return Ok(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(self.failed(&format!("printed no {kind} line within {bound:?}")));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.wait(EXIT_BOUND)?;
                    return Err(self.failed(&format!("exited ({status}) without a {kind} line")));
                }
            }
        }
    }

    /// Waits for the process to exit, at most `bound`.
    fn wait(&mut self, bound: Duration) -> Result<std::process::ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(self.failed(&format!("did not exit within {bound:?}")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn failed(&self, what: &str) -> Box<dyn std::error::Error + Send + Sync> {
        format!("{} {what}; log: {}", self.name, self.log.display()).into()
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that said it is ready; killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    role: Role,
    /// How long it keeps replies for retries (kernel servers only).
    pub(crate) reply_cache_window: Option<Duration>,
}

impl Server {
    /// Starts `kernel-bench <args> --until-stdin-closes` and waits for its ready line.
    pub(crate) fn start(bench: &Bench, log_name: &str, args: &[String]) -> Result<Server> {
        let mut args = args.to_vec();
        args.push("--until-stdin-closes".into());
        let mut role = Role::spawn(bench, log_name, &args)?;
        let ready = role.next("ready", READY_BOUND)?;
        let reply_cache_window = ready["reply_cache_window_ms"]
            .as_u64()
            .map(Duration::from_millis);
        Ok(Server {
            role,
            reply_cache_window,
        })
    }

    /// The server's resident memory (`VmRSS`), in bytes.
    pub(crate) fn rss(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.role.child.id());
        let status = fs::read_to_string(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
        vm_rss(&status).ok_or_else(|| format!("no VmRSS line in {path}").into())
    }

    /// The CPU time (user + system) the server has used so far, if `/proc` says.
    pub(crate) fn cpu_time(&self) -> Option<Duration> {
        cpu_time_of_pid(self.role.child.id())
    }

    /// Fails (naming its log) if the server has exited.
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        match self.role.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(self.role.failed(&format!("exited ({status})"))),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.role.child.id()
    }
}

/// A client process: it warms up, says `measuring`, then prints a result line per run.
#[derive(Debug)]
pub(crate) struct Client {
    role: Role,
    /// When the client must have finished.
    deadline: Instant,
}

impl Client {
    /// Starts `kernel-bench <args>`, which must be done within `bound`.
    pub(crate) fn start(
        bench: &Bench,
        log_name: &str,
        args: &[String],
        bound: Duration,
    ) -> Result<Client> {
        Ok(Client {
            role: Role::spawn(bench, log_name, args)?,
            deadline: Instant::now() + bound,
        })
    }

    /// Waits until the warm-up is over and the measured run starts.
    pub(crate) fn measuring(&mut self) -> Result<()> {
        self.role.next("measuring", self.left()).map(drop)
    }

    /// Waits for the next result line.
    pub(crate) fn result(&mut self) -> Result<Measured> {
        let line = self.role.next("result", self.left())?;
        serde_json::from_value(line).map_err(|e| {
            self.role
                .failed(&format!("printed a result line that does not parse: {e}"))
        })
    }

    /// Waits for the client to exit, and fails unless it succeeded.
    pub(crate) fn finish(mut self) -> Result<()> {
        let status = self.role.wait(EXIT_BOUND)?;
        if status.success() {
            Ok(())
        } else {
            Err(self.role.failed(&format!("failed ({status})")))
        }
    }

    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// `VmRSS:    13824 kB` → bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The CPU time (user + system) process `pid` has used so far, if `/proc` says.
pub(crate) fn cpu_time_of_pid(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_time_of(&stat)
}

/// utime + stime (fields 14 and 15 of `/proc/<pid>/stat`, after the parenthesised command
/// name), in `USER_HZ` ticks, which Linux fixes at 100 a second for this interface.
fn cpu_time_of(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_in_kib_and_given_in_bytes() {
        let status = "Name:\tkernel-bench\nVmPeak:\t  99 kB\nVmRSS:\t   13824 kB\nThreads:\t4\n";
        assert_eq!(vm_rss(status), Some(13824 * 1024));
        assert_eq!(vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_time_counts_ticks_of_ten_milliseconds() {
        let stat = "7 (kernel bench) S 1 7 7 0 -1 0 0 0 0 0 250 50 0 0 20 0 3 0";
        assert_eq!(cpu_time_of(stat), Some(Duration::from_secs(3)));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        let status = fs::read_to_string("/proc/self/status").unwrap();
        assert!(vm_rss(&status).unwrap() > 0);
    }
}
