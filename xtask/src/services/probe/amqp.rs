//! AMQP 0-9-1 readiness: send the protocol header, expect `Connection.Start`.
//!
//! The client opens with the 8 bytes `AMQP\0\0\x09\x01`. A broker that is accepting clients
//! answers with a method frame on channel 0:
//!
//! ```text
//! frame:   type u8 (1 = method) | channel u16 | size u32 | payload[size] | 0xCE
//! payload: class u16 (10 = connection) | method u16 (10 = start) | version-major u8 |
//!          version-minor u8 | server-properties (field table) | mechanisms | locales
//! ```
//!
//! A broker that does not speak 0-9-1 answers with its own protocol header instead. The probe then
//! hangs up without finishing the handshake (RabbitMQ logs that as a closed connection, harmlessly).
//!
//! [`open_as`] goes further, to check that a user can log in and use the virtual host `/`:
//!
//! ```text
//! client: Start-Ok (PLAIN "\0user\0password")   broker: Tune      (else: login refused)
//! client: Tune-Ok, Open "/"                      broker: Open-Ok   (else: Close, 530 no access)
//! client: Close 200                              broker: Close-Ok
//! ```

use std::io::{Read, Write};

use super::{connect, read_error};
use crate::Result;

/// What a 0-9-1 client sends first.
pub(super) const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

const FRAME_METHOD: u8 = 1;
const FRAME_END: u8 = 0xCE;
const CLASS_CONNECTION: u16 = 10;
const METHOD_START: u16 = 10;
const METHOD_START_OK: u16 = 11;
const METHOD_TUNE: u16 = 30;
const METHOD_TUNE_OK: u16 = 31;
const METHOD_OPEN: u16 = 40;
const METHOD_OPEN_OK: u16 = 41;
const METHOD_CLOSE: u16 = 50;
/// Connection.Start is small; anything bigger is not the broker we expect.
const MAX_FRAME: u32 = 128 * 1024;

/// Performs the exchange on `127.0.0.1:port`; returns e.g. `RabbitMQ 3.10.8 (AMQP 0-9)`.
pub(in crate::services) fn connection_start(port: u16) -> Result<String> {
    let mut stream = connect(port)?;
    stream.write_all(PROTOCOL_HEADER)?;
    read_connection_start(&mut stream)
}

/// Reads the broker's answer to [`PROTOCOL_HEADER`] and describes its `Connection.Start`.
pub(super) fn read_connection_start(stream: &mut impl Read) -> Result<String> {
    describe_start(&read_method_frame(stream)?)
}

/// Logs in to `127.0.0.1:port` as `user` and opens the virtual host `/`, then closes: `Ok` when
/// the user exists with this password and may use `/`.
pub(in crate::services) fn open_as(port: u16, user: &str, password: &str) -> Result<()> {
    let mut stream = connect(port)?;
    stream.write_all(PROTOCOL_HEADER)?;
    read_connection_start(&mut stream)?;

    let mut start_ok = method(METHOD_START_OK);
    start_ok.extend_from_slice(&0_u32.to_be_bytes()); // client properties: an empty table
    short_string(&mut start_ok, "PLAIN")?;
    let response = format!("\0{user}\0{password}");
    start_ok.extend_from_slice(&u32::try_from(response.len())?.to_be_bytes());
    start_ok.extend_from_slice(response.as_bytes());
    short_string(&mut start_ok, "en_US")?;
    write_method_frame(&mut stream, &start_ok)?;

    let limits = read_method_frame(&mut stream)
        .and_then(|tune| Ok(expect_method(&tune, METHOD_TUNE)?.to_vec()))
        .map_err(|e| format!("{user} cannot log in (no such user, or another password): {e}"))?;
    let (channel_max, frame_max) = match limits.as_slice() {
        [c0, c1, f0, f1, f2, f3, ..] => ([*c0, *c1], [*f0, *f1, *f2, *f3]),
        _ => return Err("truncated Connection.Tune".into()),
    };
    let mut tune_ok = method(METHOD_TUNE_OK);
    tune_ok.extend_from_slice(&channel_max);
    tune_ok.extend_from_slice(&frame_max);
    tune_ok.extend_from_slice(&0_u16.to_be_bytes()); // no heartbeats
    write_method_frame(&mut stream, &tune_ok)?;

    let mut open = method(METHOD_OPEN);
    short_string(&mut open, "/")?;
    short_string(&mut open, "")?;
    open.push(0);
    write_method_frame(&mut stream, &open)?;
    let opened = read_method_frame(&mut stream)?;
    expect_method(&opened, METHOD_OPEN_OK)
        .map_err(|e| format!("{user} may not use the virtual host /: {e}"))?;

    let mut close = method(METHOD_CLOSE);
    close.extend_from_slice(&200_u16.to_be_bytes());
    short_string(&mut close, "")?;
    close.extend_from_slice(&[0, 0, 0, 0]);
    write_method_frame(&mut stream, &close)?;
    let _ = read_method_frame(&mut stream); // Close-Ok; the login is proven either way
    Ok(())
}

/// The start of a connection-class method payload.
fn method(method: u16) -> Vec<u8> {
    let mut payload = CLASS_CONNECTION.to_be_bytes().to_vec();
    payload.extend_from_slice(&method.to_be_bytes());
    payload
}

fn short_string(out: &mut Vec<u8>, value: &str) -> Result<()> {
    out.push(u8::try_from(value.len()).map_err(|_| format!("{value:?} is over 255 bytes"))?);
    out.extend_from_slice(value.as_bytes());
    Ok(())
}

/// The arguments of `payload` if it is the connection method `want`; a `Connection.Close`
/// becomes an error with the broker's reply code and text.
fn expect_method(payload: &[u8], want: u16) -> Result<&[u8]> {
    let (head, args) = payload.split_at_checked(4).ok_or("truncated AMQP method")?;
    let (class, got) = (
        u16::from_be_bytes([head[0], head[1]]),
        u16::from_be_bytes([head[2], head[3]]),
    );
    match (class, got) {
        (CLASS_CONNECTION, m) if m == want => Ok(args),
        (CLASS_CONNECTION, METHOD_CLOSE) => {
            let code = args
                .get(..2)
                .map_or(0, |c| u16::from_be_bytes([c[0], c[1]]));
            let text = args
                .get(2)
                .and_then(|&len| args.get(3..3 + usize::from(len)))
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            Err(format!("the broker closed the connection: {code} {text}").into())
        }
        _ => Err(format!("expected AMQP method (10,{want}), got ({class},{got})").into()),
    }
}

fn write_method_frame(stream: &mut impl Write, payload: &[u8]) -> Result<()> {
    let mut frame = vec![FRAME_METHOD, 0, 0];
    frame.extend_from_slice(&u32::try_from(payload.len())?.to_be_bytes());
    frame.extend_from_slice(payload);
    frame.push(FRAME_END);
    stream.write_all(&frame)?;
    Ok(())
}

/// Reads one method frame on any channel and returns its payload.
fn read_method_frame(stream: &mut impl Read) -> Result<Vec<u8>> {
    let mut header = [0_u8; 7];
    stream
        .read_exact(&mut header)
        .map_err(|e| read_error("reading AMQP frame header", &e))?;
    if header.starts_with(b"AMQP") {
        return Err(format!("the server rejected AMQP 0-9-1 and offered {header:?}").into());
    }
    let size = frame_size(&header)?;
    let mut rest = vec![0_u8; size as usize + 1];
    stream
        .read_exact(&mut rest)
        .map_err(|e| read_error("reading AMQP frame payload", &e))?;
    if rest.pop() != Some(FRAME_END) {
        return Err("AMQP frame does not end with 0xCE".into());
    }
    Ok(rest)
}

/// Checks a frame header is a method frame and returns its payload size.
fn frame_size(header: &[u8; 7]) -> Result<u32> {
    if header[0] != FRAME_METHOD {
        return Err(format!(
            "expected an AMQP method frame (type 1), got type {}",
            header[0]
        )
        .into());
    }
    let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]);
    if size > MAX_FRAME {
        return Err(format!("AMQP frame of {size} bytes is too big for Connection.Start").into());
    }
    Ok(size)
}

/// Decodes a `Connection.Start` payload into `<product> <version> (AMQP <major>-<minor>)`.
pub(super) fn describe_start(payload: &[u8]) -> Result<String> {
    let truncated = || "truncated Connection.Start";
    let head = payload.get(..6).ok_or_else(truncated)?;
    let class = u16::from_be_bytes([head[0], head[1]]);
    let method = u16::from_be_bytes([head[2], head[3]]);
    if (class, method) != (CLASS_CONNECTION, METHOD_START) {
        return Err(format!("expected Connection.Start (10,10), got ({class},{method})").into());
    }
    let (major, minor) = (head[4], head[5]);
    let table_len = u32::from_be_bytes(payload.get(6..10).ok_or_else(truncated)?.try_into()?);
    let table = payload
        .get(10..10 + table_len as usize)
        .ok_or_else(truncated)?;
    let product = table_string(table, "product").unwrap_or_else(|| "AMQP broker".to_owned());
    let version = table_string(table, "version").unwrap_or_default();
    Ok(format!("{product} {version} (AMQP {major}-{minor})").replace("  ", " "))
}

/// The long-string value of `key` in an AMQP field table, if present.
fn table_string(mut table: &[u8], key: &str) -> Option<String> {
    while let Some((&name_len, rest)) = table.split_first() {
        let (name, rest) = rest.split_at_checked(usize::from(name_len))?;
        let (&kind, rest) = rest.split_first()?;
        let value_len = field_value_len(kind, rest)?;
        let (value, rest) = rest.split_at_checked(value_len)?;
        if name == key.as_bytes() && kind == b'S' {
            return Some(String::from_utf8_lossy(&value[4..]).into_owned());
        }
        table = rest;
    }
    None
}

/// Encoded length of a field value of type `kind` at the start of `value`.
fn field_value_len(kind: u8, value: &[u8]) -> Option<usize> {
    let prefixed = || Some(4 + u32::from_be_bytes(value.get(..4)?.try_into().ok()?) as usize);
    match kind {
        b'V' => Some(0),
        b't' | b'b' | b'B' => Some(1),
        b's' | b'u' => Some(2),
        b'I' | b'i' | b'f' => Some(4),
        b'D' => Some(5),
        b'l' | b'd' | b'T' => Some(8),
        b'S' | b'F' | b'A' | b'x' => prefixed(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_string(key: &str, value: &str) -> Vec<u8> {
        let mut out = vec![key.len() as u8];
        out.extend_from_slice(key.as_bytes());
        out.push(b'S');
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
        out
    }

    fn start_payload(table: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 10, 0, 10, 0, 9];
        out.extend_from_slice(&(table.len() as u32).to_be_bytes());
        out.extend_from_slice(table);
        out.extend_from_slice(&[0, 0, 0, 5]);
        out.extend_from_slice(b"PLAIN");
        out.extend_from_slice(&[0, 0, 0, 5]);
        out.extend_from_slice(b"en_US");
        out
    }

    #[test]
    fn protocol_header_is_amqp_0_9_1() {
        assert_eq!(PROTOCOL_HEADER, &[b'A', b'M', b'Q', b'P', 0, 0, 9, 1]);
    }

    #[test]
    fn start_names_product_and_version_behind_other_fields() {
        let mut table = vec![12];
        table.extend_from_slice(b"capabilities");
        table.push(b'F');
        let nested = [
            9, b'p', b'u', b'b', b'l', b'i', b's', b'h', b'e', b'r', b't', 1,
        ];
        table.extend_from_slice(&(nested.len() as u32).to_be_bytes());
        table.extend_from_slice(&nested);
        table.extend(long_string("product", "RabbitMQ"));
        table.extend(long_string("version", "3.10.8"));
        let described = describe_start(&start_payload(&table)).unwrap();
        assert_eq!(described, "RabbitMQ 3.10.8 (AMQP 0-9)");
    }

    #[test]
    fn start_without_properties_still_counts() {
        assert_eq!(
            describe_start(&start_payload(&[])).unwrap(),
            "AMQP broker (AMQP 0-9)"
        );
    }

    #[test]
    fn other_methods_and_frames_are_refused() {
        let mut payload = start_payload(&[]);
        payload[3] = 30; // Connection.Tune
        assert!(describe_start(&payload).is_err());
        assert!(frame_size(&[8, 0, 0, 0, 0, 0, 0]).is_err()); // heartbeat frame
        assert!(frame_size(&[1, 0, 0, 0x10, 0, 0, 0]).is_err()); // 1 MiB
        assert_eq!(frame_size(&[1, 0, 0, 0, 0, 1, 0]).unwrap(), 256);
    }

    #[test]
    fn a_close_instead_of_the_expected_method_names_the_brokers_reason() {
        let mut close = method(METHOD_CLOSE);
        close.extend_from_slice(&403_u16.to_be_bytes());
        short_string(&mut close, "ACCESS_REFUSED").unwrap();
        close.extend_from_slice(&[0, 0, 0, 0]);
        let error = expect_method(&close, METHOD_TUNE).unwrap_err().to_string();
        assert!(error.contains("403 ACCESS_REFUSED"), "{error}");
        let tune = [0, 10, 0, 30, 7, 255];
        assert_eq!(expect_method(&tune, METHOD_TUNE).unwrap(), [7, 255]);
        assert!(expect_method(&tune[..3], METHOD_TUNE).is_err());
        for len in 0..close.len() {
            let _ = expect_method(&close[..len], METHOD_TUNE);
        }
    }

    #[test]
    fn frames_written_are_frames_read() {
        let mut buffer = Vec::new();
        write_method_frame(&mut buffer, &method(METHOD_OPEN)).unwrap();
        assert_eq!(buffer[..3], [FRAME_METHOD, 0, 0]);
        let read = read_method_frame(&mut buffer.as_slice()).unwrap();
        assert_eq!(read, method(METHOD_OPEN));
    }

    #[test]
    fn truncated_start_is_an_error_not_a_panic() {
        let payload = start_payload(&long_string("product", "RabbitMQ"));
        for len in 0..payload.len() {
            let _ = describe_start(&payload[..len]);
        }
    }
}
