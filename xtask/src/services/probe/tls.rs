//! TLS readiness, through Debian's `openssl s_client` (so xtask links no TLS stack of its own).
//!
//! ```text
//! openssl s_client -connect 127.0.0.1:PORT -servername localhost -verify_hostname localhost \
//!     -CAfile .services/tls/ca.pem -verify_return_error -quiet
//! ```
//!
//! The handshake must verify the server's certificate against our CA, for the name `localhost`
//! (`-verify_return_error` makes any verification failure end the connection). Then the AMQP
//! protocol header goes through the tunnel and `Connection.Start` must come back, so the TLS
//! listener really is RabbitMQ's. `-quiet` keeps the certificate dump out of stdout, which then
//! carries the broker's bytes only. The probe kills `openssl` once it has its answer, or after
//! the usual I/O timeout.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;

use super::amqp::{PROTOCOL_HEADER, read_connection_start};
use super::{IO_TIMEOUT, LOOPBACK};
use crate::Result;

/// Debian's `openssl` (package `openssl`).
pub(in crate::services) const OPENSSL: &str = "/usr/bin/openssl";

/// The name the client asks for (SNI) and checks the certificate against.
const SERVER_NAME: &str = "localhost";

/// AMQP over TLS on `127.0.0.1:port`, the server verified with `ca`; returns e.g.
/// `RabbitMQ 3.10.8 (AMQP 0-9)`.
pub(in crate::services) fn amqp_connection_start(port: u16, ca: &Path) -> Result<String> {
    let mut child = Command::new(OPENSSL)
        .args(["s_client", "-connect", &format!("{LOOPBACK}:{port}")])
        .args(["-servername", SERVER_NAME, "-verify_hostname", SERVER_NAME])
        .arg("-CAfile")
        .arg(ca)
        .args(["-verify_return_error", "-quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {OPENSSL}: {e}"))?;
    let answer = exchange(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    answer.map_err(|e| {
        let mut said = String::new();
        if let Some(mut stderr) = child.stderr.take() {
            let _ = stderr.read_to_string(&mut said);
        }
        let said: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        let last = said[said.len().saturating_sub(3)..].join("; ");
        format!("AMQP over TLS on {LOOPBACK}:{port}: {e} (openssl s_client: {last})").into()
    })
}

/// Sends the protocol header through `openssl` and reads `Connection.Start` back, for at most
/// the I/O timeout (a reader thread, since a pipe has no read timeout).
fn exchange(child: &mut Child) -> std::result::Result<String, String> {
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(read_connection_start(&mut stdout).map_err(|e| e.to_string()));
    });
    if let Some(stdin) = child.stdin.as_mut() {
        // If openssl has already given up, the read below says so; its stderr says why.
        let _ = stdin
            .write_all(PROTOCOL_HEADER)
            .and_then(|()| stdin.flush());
    }
    receiver
        .recv_timeout(IO_TIMEOUT)
        .unwrap_or_else(|_| Err(format!("no answer within {IO_TIMEOUT:?}")))
}
