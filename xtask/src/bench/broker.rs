//! The broker's own CPU time, when it runs on this machine: the process listening on the
//! broker URL's port, found through `/proc`.
//!
//! Broker, server and client share the cores, so what the broker spends per call weighs on
//! every system's speed; printing it says how much of a difference between two systems is the
//! broker's (the headers, acks and flags a wire asks it to handle) rather than theirs.

use std::fs;
use std::time::Duration;

use super::process::cpu_time_of_pid;

/// A local broker process.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Broker {
    pid: u32,
}

impl Broker {
    /// The process listening on `amqp_url`'s port, if one on this machine is, and `/proc`
    /// lets us see it (another user's processes may not be readable: then `None`).
    pub(crate) fn find(amqp_url: &str) -> Option<Broker> {
        let port = url_port(amqp_url)?;
        let mut inodes = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(text) = fs::read_to_string(table) {
                inodes.extend(listening_inodes(&text, port));
            }
        }
        if inodes.is_empty() {
            return None;
        }
        let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
        for entry in fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
                continue;
            };
            for fd in fds.flatten() {
                if let Ok(target) = fs::read_link(fd.path())
                    && wanted.iter().any(|w| target.as_os_str() == w.as_str())
                {
                    return Some(Broker { pid });
                }
            }
        }
        None
    }

    /// What the process is, as `/proc/<pid>/comm` names it (`beam.smp` for RabbitMQ), and
    /// its pid: printed with the figures, since a proxy can hold the listening socket.
    pub(crate) fn describe(self) -> String {
        let name = fs::read_to_string(format!("/proc/{}/comm", self.pid))
            .map(|comm| comm.trim().to_owned())
            .unwrap_or_else(|_| "?".to_owned());
        format!("{name}, pid {}", self.pid)
    }

    /// The CPU time (user + system) the broker has used so far.
    pub(crate) fn cpu_time(self) -> Option<Duration> {
        cpu_time_of_pid(self.pid)
    }
}

/// The port of an `amqp://` or `amqps://` URL (5672 or 5671 when it names none).
fn url_port(url: &str) -> Option<u16> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.rsplit_once(']') {
        Some((_, after)) => after.strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, port)| port),
    };
    match port {
        Some(port) => port.parse().ok(),
        None if scheme == "amqps" => Some(5671),
        None => Some(5672),
    }
}

/// The socket inodes of a `/proc/net/tcp` table's listening sockets (state `0A`) on `port`.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit_once(':')?.1;
            let listening = *fields.get(3)? == "0A";
            (listening && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_url_or_the_scheme() {
        assert_eq!(url_port("amqp://u:p@127.0.0.1:5682/%2f"), Some(5682));
        assert_eq!(url_port("amqp://127.0.0.1"), Some(5672));
        assert_eq!(url_port("amqps://u:p@[::1]:5999/vh"), Some(5999));
        assert_eq!(url_port("amqps://[::1]/vh"), Some(5671));
        assert_eq!(url_port("not a url"), None);
    }

    #[test]
    fn only_listening_sockets_on_the_port_count() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1636 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1636 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   0        0 4343 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000   0        0 4444 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listening_inodes(table, 0x1636), vec![4242]);
        assert_eq!(listening_inodes(table, 81), Vec::<u64>::new());
    }

    #[test]
    fn this_machine_s_listening_sockets_are_found_if_any() {
        // No broker is needed: a listener of our own is found the same way.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = Broker::find(&format!("amqp://127.0.0.1:{port}")).expect("our own listener");
        assert_eq!(broker.pid, std::process::id());
        assert!(broker.cpu_time().is_some());
    }
}
