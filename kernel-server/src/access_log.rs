//! The access log: one line per request answered, in H2's format, written to a file by a
//! thread of its own so that the request path never waits on the disk.
//!
//! ```text
//! com.example.frontend - - [02/Dec/2026:14:54:20 +0000] "GET hello HTTP/1.0" 200 12
//! ```
//!
//! `<caller> - <user id> [<time, UTC>] "GET <endpoint> HTTP/1.0" <status> <size>`: the caller
//! is the `from` header (`-` when empty), the user id that of the request's signed-in user
//! (empty when none), the status is 200 or the error's HTTP status, and the size is
//! the reply payload's length in bytes. The method and protocol are always `GET` and
//! `HTTP/1.0`, so that tools made for web logs (apachetop, logstash) parse it. Names from the
//! wire are clipped to 64 characters and anything but visible ASCII becomes `_`: a caller
//! cannot forge a line.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

/// Lines waiting for the writer thread at most; more are dropped and counted.
pub const ACCESS_LOG_BUFFER: usize = 4096;

/// An open access log.
#[derive(Debug)]
pub(crate) struct AccessLog {
    lines: Mutex<SyncSender<String>>,
}

impl AccessLog {
    /// Opens `path` for appending and starts its writer thread.
    pub(crate) fn open(path: &Path) -> std::io::Result<AccessLog> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let (lines, receiver) = sync_channel(ACCESS_LOG_BUFFER);
        std::thread::Builder::new()
            .name("kernel-access-log".into())
            .spawn(move || write_lines(receiver, BufWriter::new(file)))?;
        Ok(AccessLog {
            lines: Mutex::new(lines),
        })
    }

    /// Records one answered request; `false` if the line was dropped (the writer is
    /// [`ACCESS_LOG_BUFFER`] lines behind).
    pub(crate) fn record(
        &self,
        caller: &str,
        user: &str,
        endpoint: &str,
        status: u16,
        size: usize,
    ) -> bool {
        let line = format_line(caller, user, endpoint, status, size, SystemTime::now());
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_send(line)
            .is_ok()
    }
}

/// Writes lines as they come, flushing whenever none is waiting; ends when the log is dropped.
fn write_lines(lines: Receiver<String>, mut file: BufWriter<File>) {
    while let Ok(line) = lines.recv() {
        let mut written = file.write_all(line.as_bytes());
        while let (Ok(()), Ok(more)) = (&written, lines.try_recv()) {
            written = file.write_all(more.as_bytes());
        }
        if let Err(error) = written.and_then(|()| file.flush()) {
            tracing::warn!(%error, "access log: cannot write; lines are lost");
        }
    }
}

/// One line, newline included.
fn format_line(
    caller: &str,
    user: &str,
    endpoint: &str,
    status: u16,
    size: usize,
    at: SystemTime,
) -> String {
    let caller = if caller.is_empty() { "-" } else { caller };
    let mut line = String::with_capacity(128);
    let _ = writeln!(
        line,
        "{} - {} [{}] \"GET {} HTTP/1.0\" {status} {size}",
        Clean(caller),
        Clean(user),
        Timestamp(at),
        Clean(endpoint),
    );
    line
}

/// A name from the wire: at most 64 characters, visible ASCII only.
struct Clean<'a>(&'a str);

impl std::fmt::Display for Clean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars().take(64) {
            f.write_char(if c.is_ascii_graphic() && c != '"' {
                c
            } else {
                '_'
            })?;
        }
        Ok(())
    }
}

/// `dd/Mon/yyyy:HH:MM:SS +0000` in UTC (the common log format's time).
struct Timestamp(SystemTime);

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let secs = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let (days, rest) = (secs / 86_400, secs % 86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{day:02}/{}/{year:04}:{:02}:{:02}:{:02} +0000",
            MONTHS[usize::from(month - 1)],
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    }
}

/// The proleptic Gregorian (year, month 1–12, day 1–31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u8, u8) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    // day ≤ 31 and month ≤ 12 by construction.
    (year, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn lines_are_in_h2s_format() {
        // 2026-12-02T14:54:20Z
        let line = format_line(
            "com.example.frontend",
            "",
            "hello",
            200,
            12,
            at(1_796_223_260),
        );
        assert_eq!(
            line,
            "com.example.frontend -  [02/Dec/2026:14:54:20 +0000] \"GET hello HTTP/1.0\" 200 12\n"
        );
        let anonymous = format_line("", "", "health", 404, 0, at(0));
        assert_eq!(
            anonymous,
            "- -  [01/Jan/1970:00:00:00 +0000] \"GET health HTTP/1.0\" 404 0\n"
        );
    }

    #[test]
    fn a_caller_cannot_forge_a_line() {
        let line = format_line(
            "evil\n127.0.0.1 - admin [x] \"GET",
            "",
            &"e".repeat(1000),
            200,
            1,
            at(0),
        );
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(
            line.starts_with("evil_127.0.0.1_-_admin_[x]__GET - "),
            "{line}"
        );
        assert!(
            line.contains(&format!("GET {} HTTP", "e".repeat(64))),
            "{line}"
        );
    }

    #[test]
    fn dates_are_right_across_leap_years_and_month_ends() {
        for (secs, expected) in [
            (951_782_400, "29/Feb/2000:00:00:00"),
            (1_709_251_199, "29/Feb/2024:23:59:59"),
            (1_735_689_599, "31/Dec/2024:23:59:59"),
            (4_102_444_800, "01/Jan/2100:00:00:00"),
        ] {
            assert_eq!(
                Timestamp(at(secs)).to_string(),
                format!("{expected} +0000"),
                "{secs}"
            );
        }
    }
}
