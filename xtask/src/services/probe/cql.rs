//! Cassandra readiness over the CQL native protocol v4, with a frame codec of a few dozen lines.
//!
//! ```text
//! frame:  version u8 (0x04 request, 0x84 response) | flags u8 | stream i16 | opcode u8 |
//!         length i32 | body[length]
//! STARTUP (0x01) body: string map {"CQL_VERSION": "3.0.0"}          -> READY (0x02), empty
//! QUERY   (0x07) body: long string | consistency u16 | flags u8      -> RESULT (0x08)
//! RESULT  body: kind i32 (2 = Rows) | metadata | rows_count i32 | rows of [bytes] cells
//! ERROR   (0x00) body: code i32 | message string
//! ```
//!
//! `[string]` is a u16 length plus UTF-8, `[long string]` and `[bytes]` an i32 length plus bytes
//! (a negative `[bytes]` length is null). The probe asks for
//! `SELECT release_version FROM system.local` at consistency ONE, which only succeeds once the
//! node has finished starting and serves reads.
//!
//! The ring check of the cluster mode uses [`row_count`]: the rows of `system.peers`, and a
//! read at a consistency level that needs every live replica (`TWO`, `THREE`: a node that
//! thinks a replica is down answers `Unavailable` at once).

use std::io::{Read, Write};
use std::net::SocketAddr;

use super::{LOOPBACK, connect_to, read_error};
use crate::Result;

const VERSION_REQUEST: u8 = 0x04;
const VERSION_RESPONSE: u8 = 0x84;
const HEADER_LEN: usize = 9;
/// Responses bigger than this are not the answers we asked for.
const MAX_BODY: usize = 1 << 20;

const OP_ERROR: u8 = 0x00;
const OP_STARTUP: u8 = 0x01;
const OP_READY: u8 = 0x02;
const OP_QUERY: u8 = 0x07;
const OP_RESULT: u8 = 0x08;

const RESULT_ROWS: i32 = 0x0002;

/// A CQL consistency level, as the protocol numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::services) enum Consistency {
    One = 0x0001,
    Two = 0x0002,
    Three = 0x0003,
}

impl Consistency {
    /// The level that needs `replicas` replicas to answer (1 to 3).
    pub(in crate::services) fn of(replicas: usize) -> Option<Self> {
        match replicas {
            1 => Some(Self::One),
            2 => Some(Self::Two),
            3 => Some(Self::Three),
            _ => None,
        }
    }
}

const ROWS_GLOBAL_TABLES_SPEC: i32 = 0x0001;
const ROWS_HAS_MORE_PAGES: i32 = 0x0002;
const ROWS_NO_METADATA: i32 = 0x0004;

/// The query whose answer means "ready".
pub(super) const RELEASE_VERSION_QUERY: &str = "SELECT release_version FROM system.local";

/// One decoded response frame.
#[derive(Debug, PartialEq)]
struct Frame {
    opcode: u8,
    body: Vec<u8>,
}

/// STARTUP then QUERY on `127.0.0.1:port`; returns Cassandra's `release_version`, e.g. `5.0.8`.
pub(in crate::services) fn release_version(port: u16) -> Result<String> {
    release_version_at(SocketAddr::from((LOOPBACK, port)))
}

/// [`release_version`] of the node at `addr`.
pub(in crate::services) fn release_version_at(addr: SocketAddr) -> Result<String> {
    let result = query(addr, RELEASE_VERSION_QUERY, Consistency::One)?;
    first_text_cell(&result.body)
}

/// How many rows `cql` returns from the node at `addr`, read at `consistency` (first page).
pub(in crate::services) fn row_count(
    addr: SocketAddr,
    cql: &str,
    consistency: Consistency,
) -> Result<i32> {
    rows_count(&query(addr, cql, consistency)?.body)
}

/// STARTUP, then one QUERY; the RESULT frame (a server ERROR becomes an error).
fn query(addr: SocketAddr, cql: &str, consistency: Consistency) -> Result<Frame> {
    let mut stream = connect_to(addr)?;
    stream.write_all(&encode_frame(0, OP_STARTUP, &startup_body()))?;
    expect(&read_frame(&mut stream)?, OP_READY, "STARTUP")?;
    stream.write_all(&encode_frame(1, OP_QUERY, &query_body(cql, consistency)))?;
    let result = read_frame(&mut stream)?;
    expect(&result, OP_RESULT, "QUERY")?;
    Ok(result)
}

/// Fails unless `frame` has `opcode`; a server ERROR becomes its code and message.
fn expect(frame: &Frame, opcode: u8, request: &str) -> Result<()> {
    match frame.opcode {
        op if op == opcode => Ok(()),
        OP_ERROR => Err(format!("{request} failed: {}", describe_error(&frame.body)).into()),
        op => Err(format!("{request} answered opcode {op:#04x}, expected {opcode:#04x}").into()),
    }
}

/// A request frame: 9-byte header and `body`.
fn encode_frame(stream: i16, opcode: u8, body: &[u8]) -> Vec<u8> {
    let length = i32::try_from(body.len()).expect("probe request bodies are a few bytes");
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&[VERSION_REQUEST, 0]);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.push(opcode);
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// STARTUP's `[string map]` with the one mandatory option.
fn startup_body() -> Vec<u8> {
    let mut body = 1_u16.to_be_bytes().to_vec();
    put_string(&mut body, "CQL_VERSION");
    put_string(&mut body, "3.0.0");
    body
}

/// QUERY's body: the statement, the consistency, no flags (no values, default paging).
fn query_body(cql: &str, consistency: Consistency) -> Vec<u8> {
    let length = i32::try_from(cql.len()).expect("probe queries are short");
    let mut body = length.to_be_bytes().to_vec();
    body.extend_from_slice(cql.as_bytes());
    body.extend_from_slice(&(consistency as u16).to_be_bytes());
    body.push(0);
    body
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let length = u16::try_from(s.len()).expect("protocol option names are short");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads one response frame, checking the protocol version and a sane length.
fn read_frame(input: &mut impl Read) -> Result<Frame> {
    let mut header = [0_u8; HEADER_LEN];
    input
        .read_exact(&mut header)
        .map_err(|e| read_error("reading CQL frame header", &e))?;
    if header[0] != VERSION_RESPONSE {
        return Err(format!("CQL response version {:#04x}, expected 0x84", header[0]).into());
    }
    let length = i32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let length = usize::try_from(length).ok().filter(|&l| l <= MAX_BODY);
    let length = length.ok_or("CQL frame length is negative or too big")?;
    let mut body = vec![0_u8; length];
    input
        .read_exact(&mut body)
        .map_err(|e| read_error("reading CQL frame body", &e))?;
    Ok(Frame {
        opcode: header[4],
        body,
    })
}

/// ERROR body as `code 0x1000: message`.
fn describe_error(body: &[u8]) -> String {
    let mut cursor = Cursor(body);
    match (cursor.i32(), cursor.string()) {
        (Ok(code), Ok(message)) => format!("code {code:#06x}: {message}"),
        _ => "unreadable ERROR body".to_owned(),
    }
}

/// The first cell of the first row of a `Rows` RESULT, as text.
fn first_text_cell(body: &[u8]) -> Result<String> {
    let mut cursor = Cursor(body);
    let (columns, rows) = rows_header(&mut cursor)?;
    if rows < 1 || columns < 1 {
        return Err("system.local returned no rows".into());
    }
    let cell = cursor.bytes()?.ok_or("release_version is null")?;
    Ok(String::from_utf8_lossy(cell).into_owned())
}

/// The number of rows of a `Rows` RESULT.
fn rows_count(body: &[u8]) -> Result<i32> {
    rows_header(&mut Cursor(body)).map(|(_, rows)| rows)
}

/// Reads a `Rows` RESULT up to its first row; returns (columns, rows).
fn rows_header(cursor: &mut Cursor<'_>) -> Result<(i32, i32)> {
    let kind = cursor.i32()?;
    if kind != RESULT_ROWS {
        return Err(format!("RESULT kind {kind:#06x}, expected Rows (0x0002)").into());
    }
    let flags = cursor.i32()?;
    let columns = cursor.i32()?;
    if flags & ROWS_HAS_MORE_PAGES != 0 {
        cursor.bytes()?;
    }
    if flags & ROWS_NO_METADATA == 0 {
        skip_column_specs(cursor, flags & ROWS_GLOBAL_TABLES_SPEC != 0, columns)?;
    }
    Ok((columns, cursor.i32()?))
}

fn skip_column_specs(cursor: &mut Cursor<'_>, global: bool, columns: i32) -> Result<()> {
    if global {
        cursor.string()?;
        cursor.string()?;
    }
    for _ in 0..columns {
        if !global {
            cursor.string()?;
            cursor.string()?;
        }
        cursor.string()?;
        skip_type(cursor)?;
    }
    Ok(())
}

/// Skips an `[option]` type: custom (0x0000) carries a class name, list/set one element type, map
/// two; UDTs and tuples never appear in `system.local`'s `release_version`.
fn skip_type(cursor: &mut Cursor<'_>) -> Result<()> {
    match cursor.u16()? {
        0x0000 => cursor.string().map(drop),
        0x0020 | 0x0022 => skip_type(cursor),
        0x0021 => skip_type(cursor).and_then(|()| skip_type(cursor)),
        id @ 0x0030.. => Err(format!("unexpected column type {id:#06x} in probe result").into()),
        _ => Ok(()),
    }
}

/// Reads big-endian protocol values off the front of a body.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("truncated CQL body")?;
        self.0 = rest;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }

    fn i32(&mut self) -> Result<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into()?))
    }

    fn string(&mut self) -> Result<String> {
        let length = usize::from(self.u16()?);
        Ok(String::from_utf8_lossy(self.take(length)?).into_owned())
    }

    /// `[bytes]`: `None` for a negative length (null).
    fn bytes(&mut self) -> Result<Option<&'a [u8]>> {
        match usize::try_from(self.i32()?) {
            Ok(length) => self.take(length).map(Some),
            Err(_) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A RESULT Rows body as Cassandra 5.0 sends it for the probe query.
    fn rows_body(cell: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&RESULT_ROWS.to_be_bytes());
        body.extend_from_slice(&ROWS_GLOBAL_TABLES_SPEC.to_be_bytes());
        body.extend_from_slice(&1_i32.to_be_bytes());
        put_string(&mut body, "system");
        put_string(&mut body, "local");
        put_string(&mut body, "release_version");
        body.extend_from_slice(&0x000D_u16.to_be_bytes()); // varchar
        body.extend_from_slice(&1_i32.to_be_bytes());
        match cell {
            Some(text) => {
                body.extend_from_slice(&(text.len() as i32).to_be_bytes());
                body.extend_from_slice(text.as_bytes());
            }
            None => body.extend_from_slice(&(-1_i32).to_be_bytes()),
        }
        body
    }

    #[test]
    fn startup_frame_matches_the_spec_bytes() {
        let frame = encode_frame(0, OP_STARTUP, &startup_body());
        let mut expected = vec![0x04, 0, 0, 0, 0x01, 0, 0, 0, 22, 0, 1, 0, 11];
        expected.extend_from_slice(b"CQL_VERSION");
        expected.extend_from_slice(&[0, 5]);
        expected.extend_from_slice(b"3.0.0");
        assert_eq!(frame, expected);
    }

    #[test]
    fn query_body_ends_with_the_consistency_and_no_flags() {
        let body = query_body("SELECT 1", Consistency::One);
        assert_eq!(&body[..4], &8_i32.to_be_bytes());
        assert_eq!(&body[4..12], b"SELECT 1");
        assert_eq!(&body[12..], &[0, 1, 0]);
        assert_eq!(
            &query_body("SELECT 1", Consistency::Three)[12..],
            &[0, 3, 0]
        );
    }

    #[test]
    fn consistency_needs_as_many_replicas_as_asked() {
        assert_eq!(Consistency::of(1), Some(Consistency::One));
        assert_eq!(Consistency::of(3), Some(Consistency::Three));
        assert_eq!(Consistency::of(0), None);
        assert_eq!(Consistency::of(4), None);
    }

    #[test]
    fn rows_result_counts_its_rows() {
        assert_eq!(rows_count(&rows_body(Some("5.0.8"))).unwrap(), 1);
        let mut empty = rows_body(None);
        empty.truncate(empty.len() - 8); // drop rows_count and the null cell
        empty.extend_from_slice(&0_i32.to_be_bytes());
        assert_eq!(rows_count(&empty).unwrap(), 0);
        assert!(first_text_cell(&empty).is_err());
    }

    #[test]
    fn response_frames_decode_and_requests_are_refused() {
        let mut ready: &[u8] = &[0x84, 0, 0, 0, OP_READY, 0, 0, 0, 0];
        assert_eq!(
            read_frame(&mut ready).unwrap(),
            Frame {
                opcode: OP_READY,
                body: vec![]
            }
        );
        let mut request: &[u8] = &[0x04, 0, 0, 0, OP_READY, 0, 0, 0, 0];
        assert!(read_frame(&mut request).is_err());
        let mut negative: &[u8] = &[0x84, 0, 0, 0, OP_RESULT, 0xFF, 0xFF, 0xFF, 0xFF];
        assert!(read_frame(&mut negative).is_err());
    }

    #[test]
    fn rows_result_yields_release_version() {
        assert_eq!(first_text_cell(&rows_body(Some("5.0.8"))).unwrap(), "5.0.8");
        assert!(first_text_cell(&rows_body(None)).is_err());
    }

    #[test]
    fn truncated_rows_are_errors_not_panics() {
        let body = rows_body(Some("5.0.8"));
        for len in 0..body.len() {
            assert!(
                first_text_cell(&body[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn server_error_is_reported_with_code_and_message() {
        let mut body = 0x1001_i32.to_be_bytes().to_vec();
        put_string(&mut body, "Cannot achieve consistency");
        let frame = Frame {
            opcode: OP_ERROR,
            body,
        };
        let error = expect(&frame, OP_RESULT, "QUERY").unwrap_err().to_string();
        assert_eq!(
            error,
            "QUERY failed: code 0x1001: Cannot achieve consistency"
        );
    }
}
