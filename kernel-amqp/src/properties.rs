//! [`Properties`]: the basic class's content properties, and their content-header encoding.

use bytes::{Bytes, BytesMut};

use crate::Error;
use crate::types::{DecodeError, FieldTable, Reader, ShortString, Writer};

/// The class id of `basic`, the only class with content that this client uses.
pub(crate) const BASIC_CLASS: u16 = 60;

/// A message's properties. Every string is a [`ShortString`]: received ones may be any bytes.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Properties {
    /// MIME content type.
    pub content_type: Option<ShortString>,
    /// MIME content encoding.
    pub content_encoding: Option<ShortString>,
    /// Application headers.
    pub headers: Option<FieldTable>,
    /// 1 (transient) or 2 (persistent).
    pub delivery_mode: Option<u8>,
    /// 0 to 9.
    pub priority: Option<u8>,
    /// Application correlation identifier.
    pub correlation_id: Option<ShortString>,
    /// Where to reply.
    pub reply_to: Option<ShortString>,
    /// Per-message TTL, in milliseconds, as decimal digits.
    pub expiration: Option<ShortString>,
    /// Application message identifier.
    pub message_id: Option<ShortString>,
    /// Seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// Message type name.
    pub kind: Option<ShortString>,
    /// Creating user id (checked by RabbitMQ against the publisher's login).
    pub user_id: Option<ShortString>,
    /// Creating application id.
    pub app_id: Option<ShortString>,
    /// Reserved.
    pub cluster_id: Option<ShortString>,
}

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const KIND: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
const CONTINUATION: u16 = 1;

impl Properties {
    /// Encodes a content header payload: class, weight, body size, flags, properties.
    pub(crate) fn encode_header(&self, body_size: u64, buf: &mut BytesMut) -> Result<(), Error> {
        let mut w = Writer(buf);
        w.u16(BASIC_CLASS);
        w.u16(0);
        w.u64(body_size);
        let flag = |present: bool, bit: u16| if present { bit } else { 0 };
        let flags = flag(self.content_type.is_some(), CONTENT_TYPE)
            | flag(self.content_encoding.is_some(), CONTENT_ENCODING)
            | flag(self.headers.is_some(), HEADERS)
            | flag(self.delivery_mode.is_some(), DELIVERY_MODE)
            | flag(self.priority.is_some(), PRIORITY)
            | flag(self.correlation_id.is_some(), CORRELATION_ID)
            | flag(self.reply_to.is_some(), REPLY_TO)
            | flag(self.expiration.is_some(), EXPIRATION)
            | flag(self.message_id.is_some(), MESSAGE_ID)
            | flag(self.timestamp.is_some(), TIMESTAMP)
            | flag(self.kind.is_some(), KIND)
            | flag(self.user_id.is_some(), USER_ID)
            | flag(self.app_id.is_some(), APP_ID)
            | flag(self.cluster_id.is_some(), CLUSTER_ID);
        w.u16(flags);
        let short = |w: &mut Writer<'_>, value: &Option<ShortString>| match value {
            Some(s) => w.short_bytes(s.as_bytes()),
            None => Ok(()),
        };
        short(&mut w, &self.content_type)?;
        short(&mut w, &self.content_encoding)?;
        if let Some(headers) = &self.headers {
            w.table(headers)?;
        }
        if let Some(mode) = self.delivery_mode {
            w.u8(mode);
        }
        if let Some(priority) = self.priority {
            w.u8(priority);
        }
        short(&mut w, &self.correlation_id)?;
        short(&mut w, &self.reply_to)?;
        short(&mut w, &self.expiration)?;
        short(&mut w, &self.message_id)?;
        if let Some(timestamp) = self.timestamp {
            w.u64(timestamp);
        }
        short(&mut w, &self.kind)?;
        short(&mut w, &self.user_id)?;
        short(&mut w, &self.app_id)?;
        short(&mut w, &self.cluster_id)?;
        Ok(())
    }
}

/// A decoded content header: the body size and the properties, or why they are unreadable.
#[derive(Debug)]
pub(crate) struct ContentHeader {
    pub(crate) body_size: u64,
    pub(crate) properties: Result<Properties, DecodeError>,
}

/// Decodes a content header payload. Only a header too short to hold the body size is an
/// error (the frame is then not a content header at all); unreadable properties are kept as
/// the message's own error, so that the one message is refused and the connection carries on.
pub(crate) fn decode_header(
    payload: Bytes,
    max_depth: usize,
) -> Result<ContentHeader, DecodeError> {
    let mut r = Reader::new(payload, max_depth);
    let class = r.u16()?;
    let _weight = r.u16()?;
    let body_size = r.u64()?;
    if class != BASIC_CLASS {
        return Ok(ContentHeader {
            body_size,
            properties: Err(DecodeError::Unexpected("content class")),
        });
    }
    Ok(ContentHeader {
        body_size,
        properties: decode_properties(&mut r),
    })
}

fn decode_properties(r: &mut Reader) -> Result<Properties, DecodeError> {
    let flags = r.u16()?;
    if flags & CONTINUATION != 0 {
        return Err(DecodeError::Unexpected("property flags"));
    }
    let short = |r: &mut Reader, bit: u16| -> Result<Option<ShortString>, DecodeError> {
        if flags & bit != 0 {
            r.short_string().map(Some)
        } else {
            Ok(None)
        }
    };
    let content_type = short(r, CONTENT_TYPE)?;
    let content_encoding = short(r, CONTENT_ENCODING)?;
    let headers = if flags & HEADERS != 0 {
        Some(r.table()?)
    } else {
        None
    };
    let delivery_mode = if flags & DELIVERY_MODE != 0 {
        Some(r.u8()?)
    } else {
        None
    };
    let priority = if flags & PRIORITY != 0 {
        Some(r.u8()?)
    } else {
        None
    };
    let correlation_id = short(r, CORRELATION_ID)?;
    let reply_to = short(r, REPLY_TO)?;
    let expiration = short(r, EXPIRATION)?;
    let message_id = short(r, MESSAGE_ID)?;
    let timestamp = if flags & TIMESTAMP != 0 {
        Some(r.u64()?)
    } else {
        None
    };
    Ok(Properties {
        content_type,
        content_encoding,
        headers,
        delivery_mode,
        priority,
        correlation_id,
        reply_to,
        expiration,
        message_id,
        timestamp,
        kind: short(r, KIND)?,
        user_id: short(r, USER_ID)?,
        app_id: short(r, APP_ID)?,
        cluster_id: short(r, CLUSTER_ID)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FieldValue;

    #[test]
    fn properties_round_trip() {
        let mut headers = FieldTable::new();
        headers.insert("service", FieldValue::text("greeter"));
        let properties = Properties {
            content_type: Some("application/json".into()),
            content_encoding: Some("identity".into()),
            headers: Some(headers),
            delivery_mode: Some(1),
            priority: Some(3),
            correlation_id: Some("c".into()),
            reply_to: Some(Bytes::from_static(&[0xff, 0xfe]).into()),
            expiration: Some("1500".into()),
            message_id: Some("m".into()),
            timestamp: Some(7),
            kind: Some("t".into()),
            user_id: Some("guest".into()),
            app_id: Some("a".into()),
            cluster_id: Some("x".into()),
        };
        let mut buf = BytesMut::new();
        properties.encode_header(42, &mut buf).expect("encodes");
        let header = decode_header(buf.freeze(), 8).expect("a header");
        assert_eq!(header.body_size, 42);
        assert_eq!(header.properties, Ok(properties));
    }

    #[test]
    fn an_unreadable_property_list_is_the_message_s_error() {
        // class, weight, size 5, flags: message id present, then a short string cut short.
        let payload = Bytes::from_static(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0x80, 9, b'a']);
        let header = decode_header(payload, 8).expect("a header");
        assert_eq!(header.body_size, 5);
        assert!(matches!(header.properties, Err(DecodeError::Truncated(_))));
    }
}
