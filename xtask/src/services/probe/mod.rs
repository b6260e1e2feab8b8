//! Readiness probes: one real protocol exchange per engine, each with short socket timeouts.
//!
//! | engine | exchange | ready when |
//! |---|---|---|
//! | RabbitMQ | AMQP 0-9-1 protocol header | the broker answers with `Connection.Start` ([`amqp`]) |
//! | RabbitMQ, TLS port | `openssl s_client` with our CA, then the protocol header | the certificate verifies for `localhost`, and `Connection.Start` comes back ([`tls`]) |
//! | ZooKeeper | four-letter words `ruok`, then `srvr` | `imok`, and `srvr` reports a `Mode:` |
//! | Cassandra | CQL v4 `STARTUP`, then `QUERY` of `system.local` | `READY`, then a `Rows` result ([`cql`]) |
//!
//! The cluster mode (`services up --cluster`) adds checks across nodes: `srvr`'s mode of each
//! ZooKeeper server, and CQL queries that count rows at a chosen consistency ([`cql::row_count`]).
//!
//! A probe that fails returns the reason; the caller polls until its deadline.

pub(super) mod amqp;
pub(super) mod cql;
pub(super) mod tls;

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use crate::Result;

/// Every engine listens here only.
pub(super) const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a TCP connection to `127.0.0.1:port` with read and write timeouts set.
pub(super) fn connect(port: u16) -> Result<TcpStream> {
    connect_to(SocketAddr::from((LOOPBACK, port)))
}

/// Opens a TCP connection to `addr` (a loopback address) with read and write timeouts set.
pub(super) fn connect_to(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// `<what>: <error>`, where a read that ran out of time says so (the OS calls it "resource
/// temporarily unavailable").
pub(super) fn read_error(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            format!("{what}: no answer within {IO_TIMEOUT:?}")
        }
        _ => format!("{what}: {e}"),
    }
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub(super) fn port_is_open(port: u16) -> bool {
    connect(port).is_ok()
}

/// Whether something accepts TCP connections on `host:port`.
pub(super) fn port_is_open_at(host: Ipv4Addr, port: u16) -> bool {
    connect_to(SocketAddr::from((host, port))).is_ok()
}

/// Sends a ZooKeeper four-letter word and returns the whole answer (the server closes after it).
pub(super) fn four_letter_word(port: u16, word: &str) -> Result<String> {
    let mut stream = connect(port)?;
    stream.write_all(word.as_bytes())?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| read_error(&format!("reading `{word}` answer"), &e))?;
    Ok(answer)
}

/// Whether an Erlang port mapper (epmd) answers on `127.0.0.1:port`: a `NAMES_REQ` (`n`, length
/// prefixed) is answered with the port number it listens on, then the registered nodes.
pub(super) fn epmd(port: u16) -> Result<()> {
    const NAMES_REQ: u8 = b'n';
    let mut stream = connect(port)?;
    stream.write_all(&[0, 1, NAMES_REQ])?;
    let mut own_port = [0_u8; 4];
    stream
        .read_exact(&mut own_port)
        .map_err(|e| read_error("reading epmd NAMES answer", &e))?;
    if u32::from_be_bytes(own_port) == u32::from(port) {
        Ok(())
    } else {
        Err(format!("127.0.0.1:{port} answered NAMES_REQ with {own_port:?}, not an epmd").into())
    }
}

/// ZooKeeper is ready when `ruok` gets `imok` and `srvr` reports the server's mode; returns e.g.
/// `ZooKeeper 3.8.0 (standalone)`.
pub(super) fn zookeeper(port: u16) -> Result<String> {
    let ruok = four_letter_word(port, "ruok")?;
    if ruok != "imok" {
        return Err(format!("`ruok` answered {ruok:?}, expected \"imok\"").into());
    }
    describe_srvr(&four_letter_word(port, "srvr")?)
}

/// The mode `srvr` reports on `127.0.0.1:port` (`leader`, `follower`, `standalone`), or why
/// the server is not serving.
pub(super) fn zookeeper_mode(port: u16) -> Result<String> {
    srvr_mode(&four_letter_word(port, "srvr")?)
}

/// The `Mode:` of a `srvr` answer; an error if there is none (the server is not serving).
fn srvr_mode(srvr: &str) -> Result<String> {
    srvr.lines()
        .find_map(|line| line.strip_prefix("Mode:"))
        .map(|mode| mode.trim().to_owned())
        .filter(|mode| !mode.is_empty())
        .ok_or_else(|| format!("`srvr` shows no mode (not serving yet): {:?}", srvr.trim()).into())
}

/// Turns a `srvr` answer into `ZooKeeper <version> (<mode>)`, or fails if it is not serving.
fn describe_srvr(srvr: &str) -> Result<String> {
    let field = |name: &str| {
        srvr.lines()
            .find_map(|line| line.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_default()
    };
    let mode = srvr_mode(srvr)?;
    let version = field("Zookeeper version:");
    let version = version.split(['-', ',']).next().unwrap_or(version);
    Ok(format!("ZooKeeper {version} ({mode})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_runs_out_of_time_says_so() {
        let timed_out = io::Error::from(io::ErrorKind::WouldBlock);
        assert_eq!(
            read_error("reading X", &timed_out),
            "reading X: no answer within 5s"
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(read_error("reading X", &reset).starts_with("reading X: "));
    }

    #[test]
    fn srvr_answer_names_version_and_mode() {
        let srvr = "Zookeeper version: 3.8.0-${mvngit.commit.id}, built on 2024-12-29 17:54 UTC\n\
                    Latency min/avg/max: 0/0.0/0\nMode: standalone\nNode count: 5\n";
        assert_eq!(describe_srvr(srvr).unwrap(), "ZooKeeper 3.8.0 (standalone)");
    }

    #[test]
    fn srvr_answer_without_mode_is_not_ready() {
        let srvr = "This ZooKeeper instance is not currently serving requests\n";
        assert!(describe_srvr(srvr).is_err());
        assert!(srvr_mode(srvr).is_err());
    }

    #[test]
    fn srvr_mode_of_an_ensemble_member() {
        let srvr = "Zookeeper version: 3.8.0\nMode: follower\nNode count: 5\n";
        assert_eq!(srvr_mode(srvr).unwrap(), "follower");
    }
}
