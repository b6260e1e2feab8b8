//! The lines the roles print on stdout for `cargo xtask bench`, and the process's CPU time.
//!
//! Each line is one JSON object whose `kernel_bench` field says what it is; anything else on
//! stdout (the kernel's log lines) is not for the driver.
//!
//! ```text
//! {"kernel_bench":"ready","role":"kernel-server","pid":4242,"reply_cache_window_ms":70000}
//! {"kernel_bench":"measuring","calls":98000}
//! {"kernel_bench":"result","system":"kernel","concurrency":64,"calls":98000,"errors":0,
//!  "complete":true,"elapsed_s":10.1,"calls_per_s":9702.9,"p50_us":6350.0,"p99_us":13100.0,
//!  "cpu_s":14.2,"cpu_us_per_call":144.9}
//! ```

use std::io::Write as _;
use std::time::Duration;

use serde::Serialize;

/// One line for the driver.
#[derive(Debug, Serialize)]
#[serde(tag = "kernel_bench", rename_all = "snake_case")]
pub(crate) enum Line<'a> {
    /// A server consumes its queue: clients may start.
    Ready {
        role: &'a str,
        pid: u32,
        /// The longest the server keeps a reply for retries (kernel servers only): the memory
        /// benchmark waits this long before its last reading.
        #[serde(skip_serializing_if = "Option::is_none")]
        reply_cache_window_ms: Option<u128>,
    },
    /// A client's warm-up is over: its measured run of `calls` calls starts now.
    Measuring { calls: u64 },
    /// A client's measured run.
    Result(Measured),
}

impl Line<'_> {
    /// Prints the line and flushes it at once: the driver waits for it.
    pub(crate) fn print(&self) -> crate::Result<()> {
        let mut stdout = std::io::stdout().lock();
        serde_json::to_writer(&mut stdout, self)?;
        stdout.write_all(b"\n")?;
        stdout.flush()?;
        Ok(())
    }
}

/// What a measured run did.
#[derive(Debug, Serialize)]
pub(crate) struct Measured {
    /// `raw`, `kernel` or `inproc`.
    pub(crate) system: &'static str,
    pub(crate) concurrency: usize,
    /// Calls answered.
    pub(crate) calls: u64,
    /// Calls that failed or timed out (not in the latencies).
    pub(crate) errors: u64,
    /// Whether every call of the fixed count ran before the time limit.
    pub(crate) complete: bool,
    pub(crate) elapsed_s: f64,
    pub(crate) calls_per_s: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) max_us: f64,
    /// The process's CPU time (user + system, every thread) during the run, if known.
    pub(crate) cpu_s: Option<f64>,
    pub(crate) cpu_us_per_call: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times: `USER_HZ`, which Linux fixes at 100
/// for this interface on every architecture it runs on.
const USER_HZ: f64 = 100.0;

/// The CPU time (user + system) this process has used so far, every thread counted, dead or
/// alive; `None` where `/proc/self/stat` does not exist. Resolution: 10 ms.
pub(crate) fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_time_of(&stat)
}

/// utime + stime of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn cpu_time_of(stat: &str) -> Option<Duration> {
    let (_, after_name) = stat.rsplit_once(')')?;
    let mut fields = after_name.split_whitespace().skip(11); // field 3 (state) is the first
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Duration::try_from_secs_f64((user + system) as f64 / USER_HZ).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_utime_plus_stime_after_the_command_name() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1 2 3";
        assert_eq!(cpu_time_of(stat), Some(Duration::from_secs(3)));
        assert_eq!(cpu_time_of("garbage"), None);
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(cpu_time().is_some());
    }

    #[test]
    fn lines_are_tagged_json() {
        let line = Line::Ready {
            role: "raw-server",
            pid: 7,
            reply_cache_window_ms: None,
        };
        assert_eq!(
            serde_json::to_string(&line).unwrap_or_default(),
            r#"{"kernel_bench":"ready","role":"raw-server","pid":7}"#
        );
    }
}
