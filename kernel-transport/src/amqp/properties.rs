//! The mapping between an [`Envelope`] and AMQP basic properties plus headers (`docs/wire.md`).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::envelope::headers;
use crate::{ContentType, Envelope, MessageType};

/// AMQP delivery mode 1: transient. Requests are worthless after their deadline anyway.
const TRANSIENT: u8 = 1;

/// The properties and headers an envelope is published with.
pub(super) fn to_properties(envelope: &Envelope, now: SystemTime) -> BasicProperties {
    let mut table = FieldTable::default();
    let mut header = |name: &str, value: &str| {
        if !value.is_empty() {
            table.insert(name.into(), AMQPValue::LongString(value.into()));
        }
    };
    header(headers::MESSAGE_TYPE, envelope.message_type.as_str());
    header(headers::SERVICE, &envelope.service);
    header(headers::ENDPOINT, &envelope.endpoint);
    header(headers::TOPIC, &envelope.topic);
    header(headers::FROM, &envelope.from);
    header(headers::SESSION_ID, &envelope.session_id);
    header(headers::TRACE_ID, &envelope.trace_id);
    header(headers::PARENT_MESSAGE_ID, &envelope.parent_message_id);
    let deadline_ms = envelope.deadline.map(unix_millis);
    if let Some(ms) = deadline_ms {
        header(headers::DEADLINE, &ms.to_string());
    }
    for (name, value) in &envelope.headers {
        header(name, value);
    }

    let mut properties = BasicProperties::default()
        .with_content_type(envelope.content_type.as_str().into())
        .with_delivery_mode(TRANSIENT)
        .with_headers(table);
    if !envelope.message_id.is_empty() {
        properties = properties.with_message_id(envelope.message_id.as_str().into());
    }
    if !envelope.correlation_id.is_empty() {
        properties = properties.with_correlation_id(envelope.correlation_id.as_str().into());
    }
    if !envelope.reply_to.is_empty() {
        properties = properties.with_reply_to(envelope.reply_to.as_str().into());
    }
    if let Some(deadline) = envelope.deadline {
        // The broker drops the message once nobody can use the answer. At least 1 ms: an
        // expiration of 0 means "deliver now or never", which would drop a request that
        // arrives with its deadline just reached instead of letting the server count it.
        let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
        let ms = remaining.as_millis().max(1);
        properties = properties.with_expiration(ms.to_string().into());
    }
    properties
}

/// The envelope a delivery carries. Lenient: missing fields are empty, unknown header types
/// are skipped, an unparsable deadline is treated as absent.
pub(super) fn to_envelope(properties: &BasicProperties, payload: Vec<u8>) -> Envelope {
    let short = |value: &Option<ShortString>| {
        value
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default()
    };
    let mut fields: HashMap<String, String> = properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .filter_map(|(name, value)| Some((name.as_str().to_owned(), header_text(value)?)))
                .collect()
        })
        .unwrap_or_default();
    let mut take = |name: &str| fields.remove(name).unwrap_or_default();

    let message_type = take(headers::MESSAGE_TYPE);
    let service = take(headers::SERVICE);
    let endpoint = take(headers::ENDPOINT);
    let topic = take(headers::TOPIC);
    let from = take(headers::FROM);
    let session_id = take(headers::SESSION_ID);
    let trace_id = take(headers::TRACE_ID);
    let parent_message_id = take(headers::PARENT_MESSAGE_ID);
    let deadline = take(headers::DEADLINE)
        .parse::<u64>()
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
    let message_type = MessageType::parse(&message_type).unwrap_or(if topic.is_empty() {
        MessageType::Request
    } else {
        MessageType::Publication
    });

    Envelope {
        message_type,
        message_id: short(properties.message_id()),
        correlation_id: short(properties.correlation_id()),
        reply_to: short(properties.reply_to()),
        content_type: ContentType::parse(properties.content_type().as_ref().map(|c| c.as_str())),
        service,
        endpoint,
        topic,
        from,
        session_id,
        trace_id,
        parent_message_id,
        deadline,
        headers: fields,
        payload: Bytes::from(payload),
    }
}

/// A header value as text: strings as they are (H2 sent every header as a string), numbers and
/// booleans in decimal; anything else is skipped.
fn header_text(value: &AMQPValue) -> Option<String> {
    Some(match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => u8::from(*b).to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        _ => return None,
    })
}

fn unix_millis(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_round_trips_through_properties() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut request = Envelope::request(
            "com.example.greeter",
            "hello",
            ContentType::Json,
            "{}".into(),
        );
        request.reply_to = "instance-1".into();
        request.from = "com.example.caller".into();
        request.session_id = "s-1".into();
        request.trace_id = "t-1".into();
        request.parent_message_id = "p-1".into();
        request.deadline = Some(now + Duration::from_millis(1500));
        request.headers.insert("x-custom".into(), "yes".into());

        let properties = to_properties(&request, now);
        assert_eq!(
            properties.expiration().as_ref().map(|e| e.as_str()),
            Some("1500")
        );
        let received = to_envelope(&properties, b"{}".to_vec());
        assert_eq!(received, request);
    }

    #[test]
    fn a_deadline_already_passed_still_expires_in_one_millisecond() {
        let now = UNIX_EPOCH + Duration::from_secs(10);
        let mut request = Envelope::request("s", "e", ContentType::Protobuf, Bytes::new());
        request.deadline = Some(now - Duration::from_secs(1));
        let properties = to_properties(&request, now);
        assert_eq!(
            properties.expiration().as_ref().map(|e| e.as_str()),
            Some("1")
        );
    }

    #[test]
    fn foreign_messages_are_read_leniently() {
        let mut table = FieldTable::default();
        table.insert("service".into(), AMQPValue::ShortString("svc".into()));
        table.insert("authorised".into(), AMQPValue::Boolean(true));
        table.insert("deadline".into(), AMQPValue::LongString("soon".into()));
        let properties = BasicProperties::default()
            .with_content_type("application/octetstream".into())
            .with_headers(table);
        let envelope = to_envelope(&properties, vec![1, 2]);
        assert_eq!(envelope.message_type, MessageType::Request);
        assert_eq!(envelope.service, "svc");
        assert_eq!(envelope.content_type, ContentType::Protobuf);
        assert_eq!(envelope.deadline, None);
        assert_eq!(
            envelope.headers.get("authorised").map(String::as_str),
            Some("1")
        );
    }
}
