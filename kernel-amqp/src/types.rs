//! AMQP field types: [`ShortString`], [`FieldTable`], [`FieldValue`], and the lenient decoder.
//!
//! Everything a broker user can publish is kept as bytes: a short string that is not UTF-8 is a
//! [`ShortString`] like any other, and its reader decides what to do with it. Field tables are
//! decoded with a depth limit; a table that cannot be decoded is reported as a
//! [`DecodeError`] for that one message, never as a broken connection, because every table
//! carries its own length.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::Error;

/// How deeply tables and arrays may nest in a received message before it is called malformed.
pub const DEFAULT_MAX_TABLE_DEPTH: usize = 8;
/// The most entries a received table or array may hold: a header of empty names and `void`
/// values would otherwise decode into some 40 times its size in memory.
pub const MAX_TABLE_ENTRIES: usize = 4096;

/// An AMQP short string: at most 255 bytes, not necessarily UTF-8.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct ShortString(Bytes);

impl ShortString {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text, if it is UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The text, with invalid sequences replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl From<&str> for ShortString {
    fn from(value: &str) -> Self {
        ShortString(Bytes::copy_from_slice(value.as_bytes()))
    }
}

impl From<String> for ShortString {
    fn from(value: String) -> Self {
        ShortString(Bytes::from(value))
    }
}

impl From<Bytes> for ShortString {
    fn from(value: Bytes) -> Self {
        ShortString(value)
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(text) => fmt::Debug::fmt(text, f),
            None => write!(f, "b{:?}", self.0),
        }
    }
}

/// A value in a [`FieldTable`], with RabbitMQ's type tags (the 0-9-1 errata).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue {
    /// `t`
    Bool(bool),
    /// `b`
    I8(i8),
    /// `B`
    U8(u8),
    /// `s`
    I16(i16),
    /// `u`
    U16(u16),
    /// `I`
    I32(i32),
    /// `i`
    U32(u32),
    /// `l`
    I64(i64),
    /// `f`
    F32(f32),
    /// `d`
    F64(f64),
    /// `D`: scale, unscaled value.
    Decimal(u8, u32),
    /// `S`: bytes, not necessarily UTF-8.
    LongString(Bytes),
    /// `A`
    Array(Vec<FieldValue>),
    /// `T`: seconds since the Unix epoch.
    Timestamp(u64),
    /// `F`
    Table(FieldTable),
    /// `V`
    Void,
    /// `x`
    ByteArray(Bytes),
}

impl FieldValue {
    /// A long string holding `text`.
    pub fn text(text: &str) -> Self {
        FieldValue::LongString(Bytes::copy_from_slice(text.as_bytes()))
    }
}

/// An AMQP field table, in the order received (names may repeat in what a broker user sends).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldTable(Vec<(ShortString, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// Appends an entry.
    pub fn insert(&mut self, name: impl Into<ShortString>, value: FieldValue) {
        self.0.push((name.into(), value));
    }

    /// The first value under `name`.
    pub fn get(&self, name: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(key, _)| key.as_bytes() == name.as_bytes())
            .map(|(_, value)| value)
    }

    /// The entries, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ShortString, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(ShortString, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (ShortString, FieldValue)>>(iter: I) -> Self {
        FieldTable(iter.into_iter().collect())
    }
}

/// Why one received message (or one method) could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The data ended before the value did.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A field table holds a value of a type this client does not know.
    #[error("unknown field type {0:#04x}")]
    UnknownFieldType(u8),
    /// Tables or arrays nest deeper than the limit.
    #[error("field tables nested deeper than {0}")]
    TooDeep(usize),
    /// The message is larger than the limit set for received messages.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// What was too large: `body`, `headers`.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A content header for another class than `basic`, or a property flag this client does
    /// not know.
    #[error("unexpected {0}")]
    Unexpected(&'static str),
}

/// Reads AMQP values from a buffer, never panicking on short or hostile input.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
    max_depth: usize,
}

impl Reader {
    pub(crate) fn new(buf: Bytes, max_depth: usize) -> Self {
        Reader { buf, max_depth }
    }

    fn need(&self, n: usize, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.remaining() < n {
            Err(DecodeError::Truncated(what))
        } else {
            Ok(())
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        self.need(1, "octet")?;
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        self.need(2, "short")?;
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        self.need(4, "long")?;
        Ok(self.buf.get_u32())
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        self.need(8, "longlong")?;
        Ok(self.buf.get_u64())
    }

    pub(crate) fn bytes(&mut self, n: usize, what: &'static str) -> Result<Bytes, DecodeError> {
        self.need(n, what)?;
        Ok(self.buf.split_to(n))
    }

    pub(crate) fn short_string(&mut self) -> Result<ShortString, DecodeError> {
        let n = self.u8()?;
        Ok(ShortString(self.bytes(usize::from(n), "short string")?))
    }

    pub(crate) fn long_string(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u32()?;
        self.bytes(n as usize, "long string")
    }

    pub(crate) fn table(&mut self) -> Result<FieldTable, DecodeError> {
        self.table_at(0)
    }

    fn table_at(&mut self, depth: usize) -> Result<FieldTable, DecodeError> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep(self.max_depth));
        }
        let n = self.u32()?;
        let mut inner = Reader::new(self.bytes(n as usize, "field table")?, self.max_depth);
        // Room for a kernel message's headers up front, but never more than the bytes could
        // hold (an entry takes at least two): an empty table allocates nothing.
        let mut table = Vec::with_capacity((n as usize / 2).min(12));
        while inner.buf.has_remaining() {
            if table.len() == MAX_TABLE_ENTRIES {
                return Err(too_many());
            }
            let name = inner.short_string()?;
            let value = inner.value(depth)?;
            table.push((name, value));
        }
        Ok(FieldTable(table))
    }

    fn array(&mut self, depth: usize) -> Result<Vec<FieldValue>, DecodeError> {
        if depth >= self.max_depth {
            return Err(DecodeError::TooDeep(self.max_depth));
        }
        let n = self.u32()?;
        let mut inner = Reader::new(self.bytes(n as usize, "field array")?, self.max_depth);
        let mut values = Vec::new();
        while inner.buf.has_remaining() {
            if values.len() == MAX_TABLE_ENTRIES {
                return Err(too_many());
            }
            values.push(inner.value(depth)?);
        }
        Ok(values)
    }

    fn value(&mut self, depth: usize) -> Result<FieldValue, DecodeError> {
        Ok(match self.u8()? {
            b't' => FieldValue::Bool(self.u8()? != 0),
            b'b' => FieldValue::I8(self.u8()? as i8),
            b'B' => FieldValue::U8(self.u8()?),
            b's' => FieldValue::I16(self.u16()? as i16),
            b'u' => FieldValue::U16(self.u16()?),
            b'I' => FieldValue::I32(self.u32()? as i32),
            b'i' => FieldValue::U32(self.u32()?),
            b'l' => FieldValue::I64(self.u64()? as i64),
            b'f' => FieldValue::F32(f32::from_bits(self.u32()?)),
            b'd' => FieldValue::F64(f64::from_bits(self.u64()?)),
            b'D' => FieldValue::Decimal(self.u8()?, self.u32()?),
            b'S' => FieldValue::LongString(self.long_string()?),
            b'x' => FieldValue::ByteArray(self.long_string()?),
            b'A' => FieldValue::Array(self.array(depth + 1)?),
            b'T' => FieldValue::Timestamp(self.u64()?),
            b'F' => FieldValue::Table(self.table_at(depth + 1)?),
            b'V' => FieldValue::Void,
            other => return Err(DecodeError::UnknownFieldType(other)),
        })
    }
}

fn too_many() -> DecodeError {
    DecodeError::TooLarge {
        what: "field table entries",
        size: MAX_TABLE_ENTRIES as u64 + 1,
        limit: MAX_TABLE_ENTRIES as u64,
    }
}

/// Writes AMQP values; fails (before anything is sent) on a value the protocol cannot carry.
pub(crate) struct Writer<'a>(pub(crate) &'a mut BytesMut);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.put_u8(v);
    }

    pub(crate) fn u16(&mut self, v: u16) {
        self.0.put_u16(v);
    }

    pub(crate) fn u32(&mut self, v: u32) {
        self.0.put_u32(v);
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.0.put_u64(v);
    }

    pub(crate) fn short_bytes(&mut self, v: &[u8]) -> Result<(), Error> {
        let n = u8::try_from(v.len()).map_err(|_| Error::ShortStringTooLong { len: v.len() })?;
        self.0.put_u8(n);
        self.0.put_slice(v);
        Ok(())
    }

    pub(crate) fn short_str(&mut self, v: &str) -> Result<(), Error> {
        self.short_bytes(v.as_bytes())
    }

    pub(crate) fn long_bytes(&mut self, v: &[u8]) -> Result<(), Error> {
        let n = u32::try_from(v.len()).map_err(|_| Error::TooLarge {
            what: "long string",
            size: v.len() as u64,
            limit: u64::from(u32::MAX),
        })?;
        self.0.put_u32(n);
        self.0.put_slice(v);
        Ok(())
    }

    /// Writes a u32 length placeholder, runs `body`, then patches the length.
    fn sized(&mut self, body: impl FnOnce(&mut Self) -> Result<(), Error>) -> Result<(), Error> {
        let at = self.0.len();
        self.0.put_u32(0);
        body(self)?;
        let len = self.0.len() - at - 4;
        let len = u32::try_from(len).map_err(|_| Error::TooLarge {
            what: "field table",
            size: len as u64,
            limit: u64::from(u32::MAX),
        })?;
        self.0[at..at + 4].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    pub(crate) fn table(&mut self, table: &FieldTable) -> Result<(), Error> {
        self.sized(|w| {
            for (name, value) in &table.0 {
                w.short_bytes(name.as_bytes())?;
                w.value(value)?;
            }
            Ok(())
        })
    }

    fn value(&mut self, value: &FieldValue) -> Result<(), Error> {
        match value {
            FieldValue::Bool(v) => {
                self.u8(b't');
                self.u8(u8::from(*v));
            }
            FieldValue::I8(v) => {
                self.u8(b'b');
                self.0.put_i8(*v);
            }
            FieldValue::U8(v) => {
                self.u8(b'B');
                self.u8(*v);
            }
            FieldValue::I16(v) => {
                self.u8(b's');
                self.0.put_i16(*v);
            }
            FieldValue::U16(v) => {
                self.u8(b'u');
                self.u16(*v);
            }
            FieldValue::I32(v) => {
                self.u8(b'I');
                self.0.put_i32(*v);
            }
            FieldValue::U32(v) => {
                self.u8(b'i');
                self.u32(*v);
            }
            FieldValue::I64(v) => {
                self.u8(b'l');
                self.0.put_i64(*v);
            }
            FieldValue::F32(v) => {
                self.u8(b'f');
                self.0.put_f32(*v);
            }
            FieldValue::F64(v) => {
                self.u8(b'd');
                self.0.put_f64(*v);
            }
            FieldValue::Decimal(scale, v) => {
                self.u8(b'D');
                self.u8(*scale);
                self.u32(*v);
            }
            FieldValue::LongString(v) => {
                self.u8(b'S');
                self.long_bytes(v)?;
            }
            FieldValue::ByteArray(v) => {
                self.u8(b'x');
                self.long_bytes(v)?;
            }
            FieldValue::Array(values) => {
                self.u8(b'A');
                self.sized(|w| values.iter().try_for_each(|v| w.value(v)))?;
            }
            FieldValue::Timestamp(v) => {
                self.u8(b'T');
                self.u64(*v);
            }
            FieldValue::Table(table) => {
                self.u8(b'F');
                self.table(table)?;
            }
            FieldValue::Void => self.u8(b'V'),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(table: &FieldTable) -> Bytes {
        let mut buf = BytesMut::new();
        Writer(&mut buf).table(table).expect("encodable");
        buf.freeze()
    }

    #[test]
    fn every_field_type_round_trips() {
        let mut inner = FieldTable::new();
        inner.insert("n", FieldValue::I64(-5));
        let mut table = FieldTable::new();
        for value in [
            FieldValue::Bool(true),
            FieldValue::I8(-1),
            FieldValue::U8(200),
            FieldValue::I16(-300),
            FieldValue::U16(60000),
            FieldValue::I32(-70000),
            FieldValue::U32(4_000_000_000),
            FieldValue::I64(i64::MIN),
            FieldValue::F32(1.5),
            FieldValue::F64(-2.25),
            FieldValue::Decimal(2, 12345),
            FieldValue::text("text"),
            FieldValue::ByteArray(Bytes::from_static(&[0xff, 0])),
            FieldValue::Array(vec![FieldValue::Void, FieldValue::U8(1)]),
            FieldValue::Timestamp(1_700_000_000),
            FieldValue::Table(inner),
            FieldValue::Void,
        ] {
            table.insert("k", value);
        }
        let decoded = Reader::new(encode(&table), 8).table().expect("decodes");
        assert_eq!(decoded, table);
    }

    #[test]
    fn names_that_are_not_utf8_are_kept_as_bytes() {
        let mut table = FieldTable::new();
        table.insert(
            ShortString::from(Bytes::from_static(&[0xc3, 0x28])),
            FieldValue::Void,
        );
        let decoded = Reader::new(encode(&table), 8).table().expect("decodes");
        let (name, _) = decoded.iter().next().expect("one entry");
        assert_eq!(name.as_bytes(), &[0xc3, 0x28]);
        assert_eq!(name.to_str(), None);
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_not_a_stack_overflow() {
        let mut table = FieldTable::new();
        for _ in 0..100 {
            let mut outer = FieldTable::new();
            outer.insert("t", FieldValue::Table(table));
            table = outer;
        }
        let decoded = Reader::new(encode(&table), 8).table();
        assert_eq!(decoded, Err(DecodeError::TooDeep(8)));
    }

    #[test]
    fn a_table_of_too_many_entries_is_an_error() {
        let mut table = FieldTable::new();
        for _ in 0..=MAX_TABLE_ENTRIES {
            table.insert("", FieldValue::Void);
        }
        assert!(matches!(
            Reader::new(encode(&table), 8).table(),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    #[test]
    fn an_unknown_type_or_a_short_table_is_an_error() {
        let bytes = Bytes::from_static(&[0, 0, 0, 3, 1, b'k', b'?']);
        assert_eq!(
            Reader::new(bytes, 8).table(),
            Err(DecodeError::UnknownFieldType(b'?'))
        );
        let bytes = Bytes::from_static(&[0, 0, 0, 9, 1, b'k']);
        assert!(matches!(
            Reader::new(bytes, 8).table(),
            Err(DecodeError::Truncated(_))
        ));
    }

    #[test]
    fn a_short_string_over_255_bytes_is_refused() {
        let mut buf = BytesMut::new();
        let long = "x".repeat(256);
        assert!(matches!(
            Writer(&mut buf).short_str(&long),
            Err(Error::ShortStringTooLong { len: 256 })
        ));
    }
}
