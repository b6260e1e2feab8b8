//! The mapping between an [`Envelope`] and AMQP basic properties plus headers ([`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md)).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kernel_amqp::{FieldTable, FieldValue, Properties, ShortString};

use crate::envelope::headers;
use crate::{ContentType, Envelope, MessageType};

/// AMQP delivery mode 1: transient. Requests are worthless after their deadline anyway.
const TRANSIENT: u8 = 1;

/// The properties and headers an envelope is published with, by a connection logged in as
/// `user`: its `user_id` is `user` (RabbitMQ refuses any other), never the envelope's own.
pub(super) fn to_properties(envelope: &Envelope, user: &str, now: SystemTime) -> Properties {
    let mut table = FieldTable::new();
    let mut header = |name: &str, value: &str| {
        if !value.is_empty() {
            table.insert(name, FieldValue::text(value));
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

    let short = |value: &str| (!value.is_empty()).then(|| ShortString::from(value));
    let mut properties = Properties::default();
    properties.content_type = Some(envelope.content_type.as_str().into());
    properties.delivery_mode = Some(TRANSIENT);
    properties.headers = Some(table);
    properties.message_id = short(&envelope.message_id);
    properties.correlation_id = short(&envelope.correlation_id);
    properties.reply_to = short(&envelope.reply_to);
    properties.user_id = short(user);
    if let Some(deadline) = envelope.deadline {
        // The broker drops the message once nobody can use the answer. At least 1 ms: an
        // expiration of 0 means "deliver now or never", which would drop a request that
        // arrives with its deadline just reached instead of letting the server count it.
        let remaining = deadline.duration_since(now).unwrap_or(Duration::ZERO);
        let ms = remaining.as_millis().max(1);
        properties.expiration = Some(ms.to_string().into());
    }
    properties
}

/// The envelope a delivery carries. Lenient where the contract allows it: missing fields are
/// empty, header names that are not UTF-8 and header types that are not text or numbers are
/// skipped, header values that are not UTF-8 are read lossily, an unparsable deadline is
/// treated as absent. The `user_id` (the publisher's broker user, as RabbitMQ verified it) is
/// empty when absent or when it cannot be a user name (not UTF-8, over 255 bytes); such a
/// delivery is read like any other, its sender unknown.
///
/// # Errors
/// The reason, when the message id, correlation id or reply-to is not UTF-8: those identify
/// the call, and a lossy copy would answer or match the wrong one. Such a delivery is
/// rejected without requeue.
pub(super) fn to_envelope(properties: &Properties, payload: Bytes) -> Result<Envelope, String> {
    let text = |value: &Option<ShortString>, what: &str| match value {
        None => Ok(String::new()),
        Some(value) => value
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("the {what} is not UTF-8")),
    };
    let message_id = text(&properties.message_id, "message id")?;
    let correlation_id = text(&properties.correlation_id, "correlation id")?;
    let reply_to = text(&properties.reply_to, "reply-to")?;
    let user_id = properties
        .user_id
        .as_ref()
        .and_then(ShortString::to_str)
        .filter(|user| user.len() <= crate::error::MAX_NAME_LEN)
        .unwrap_or_default()
        .to_owned();
    // The known headers straight into their fields (a repeated name: the last one counts);
    // the rest into the envelope's extra headers.
    let (mut message_type, mut deadline) = (Cow::Borrowed(""), Cow::Borrowed(""));
    let (mut service, mut endpoint, mut topic, mut from) = Default::default();
    let (mut session_id, mut trace_id, mut parent_message_id) = Default::default();
    let mut fields = HashMap::new();
    for (name, value) in properties.headers.iter().flat_map(FieldTable::iter) {
        let (Some(name), Some(value)) = (name.to_str(), header_text(value)) else {
            continue;
        };
        let field: &mut String = match name {
            headers::MESSAGE_TYPE => {
                message_type = value;
                continue;
            }
            headers::DEADLINE => {
                deadline = value;
                continue;
            }
            headers::SERVICE => &mut service,
            headers::ENDPOINT => &mut endpoint,
            headers::TOPIC => &mut topic,
            headers::FROM => &mut from,
            headers::SESSION_ID => &mut session_id,
            headers::TRACE_ID => &mut trace_id,
            headers::PARENT_MESSAGE_ID => &mut parent_message_id,
            _ => {
                fields.insert(name.to_owned(), value.into_owned());
                continue;
            }
        };
        *field = value.into_owned();
    }
    let deadline = deadline
        .parse::<u64>()
        .ok()
        .and_then(|ms| UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
    let message_type = MessageType::parse(&message_type).unwrap_or(if topic.is_empty() {
        MessageType::Request
    } else {
        MessageType::Publication
    });

    Ok(Envelope {
        message_type,
        message_id,
        correlation_id,
        reply_to,
        content_type: ContentType::parse(
            properties
                .content_type
                .as_ref()
                .and_then(ShortString::to_str),
        ),
        service,
        endpoint,
        topic,
        from,
        session_id,
        trace_id,
        parent_message_id,
        deadline,
        user_id,
        headers: fields,
        payload,
    })
}

/// A header value as text: strings as they are (H2 sent every header as a string), numbers and
/// booleans in decimal; anything else is skipped.
fn header_text(value: &FieldValue) -> Option<Cow<'_, str>> {
    Some(match value {
        FieldValue::LongString(s) => String::from_utf8_lossy(s),
        FieldValue::Bool(b) => Cow::Borrowed(if *b { "1" } else { "0" }),
        FieldValue::I8(n) => n.to_string().into(),
        FieldValue::U8(n) => n.to_string().into(),
        FieldValue::I16(n) => n.to_string().into(),
        FieldValue::U16(n) => n.to_string().into(),
        FieldValue::I32(n) => n.to_string().into(),
        FieldValue::U32(n) => n.to_string().into(),
        FieldValue::I64(n) => n.to_string().into(),
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

        let properties = to_properties(&request, "kernel.test.alpha", now);
        assert_eq!(properties.expiration, Some("1500".into()));
        let received = to_envelope(&properties, Bytes::from_static(b"{}")).unwrap();
        request.user_id = "kernel.test.alpha".into();
        assert_eq!(received, request);
    }

    #[test]
    fn a_repeated_header_counts_once_its_last_readable_value() {
        let mut table = FieldTable::new();
        table.insert("service", FieldValue::text("first"));
        table.insert("x-extra", FieldValue::text("one"));
        table.insert("service", FieldValue::text("second"));
        table.insert("x-extra", FieldValue::I32(2));
        // A later value of a type that is not text is skipped: it does not erase the last.
        table.insert("service", FieldValue::Table(FieldTable::new()));
        table.insert("heartbeat", FieldValue::Bool(true));
        let mut properties = Properties::default();
        properties.headers = Some(table);
        let envelope = to_envelope(&properties, Bytes::new()).unwrap();
        assert_eq!(envelope.service, "second");
        assert_eq!(
            envelope.headers.get("x-extra").map(String::as_str),
            Some("2")
        );
        assert_eq!(
            envelope.headers.get("heartbeat").map(String::as_str),
            Some("1")
        );
        assert!(!envelope.headers.contains_key("service"));
    }

    #[test]
    fn the_user_id_sent_is_the_connections_never_the_envelopes() {
        let mut reply = Envelope::request("s", "e", ContentType::Protobuf, Bytes::new())
            .reply(ContentType::Protobuf, Bytes::new());
        reply.user_id = "forged".into();
        let properties = to_properties(&reply, "guest", UNIX_EPOCH);
        assert_eq!(properties.user_id, Some("guest".into()));
        let properties = to_properties(&reply, "", UNIX_EPOCH);
        assert_eq!(properties.user_id, None, "no user, no property");
    }

    #[test]
    fn a_user_id_that_cannot_be_a_user_name_is_read_as_unknown() {
        let mut properties = Properties::default();
        assert_eq!(to_envelope(&properties, Bytes::new()).unwrap().user_id, "");
        properties.user_id = Some(ShortString::from(Bytes::from_static(&[0xc3, 0x28])));
        let envelope = to_envelope(&properties, Bytes::new()).expect("still read");
        assert_eq!(envelope.user_id, "");
        properties.user_id = Some(ShortString::from(Bytes::from("u".repeat(256))));
        assert_eq!(to_envelope(&properties, Bytes::new()).unwrap().user_id, "");
        properties.user_id = Some("u".repeat(255).as_str().into());
        assert_eq!(
            to_envelope(&properties, Bytes::new())
                .unwrap()
                .user_id
                .len(),
            255
        );
    }

    #[test]
    fn a_deadline_already_passed_still_expires_in_one_millisecond() {
        let now = UNIX_EPOCH + Duration::from_secs(10);
        let mut request = Envelope::request("s", "e", ContentType::Protobuf, Bytes::new());
        request.deadline = Some(now - Duration::from_secs(1));
        let properties = to_properties(&request, "guest", now);
        assert_eq!(properties.expiration, Some("1".into()));
    }

    #[test]
    fn foreign_messages_are_read_leniently() {
        let mut table = FieldTable::new();
        table.insert("service", FieldValue::text("svc"));
        table.insert("authorised", FieldValue::Bool(true));
        table.insert("deadline", FieldValue::text("soon"));
        table.insert(
            ShortString::from(Bytes::from_static(&[0xff])),
            FieldValue::text("a name that is not UTF-8 is skipped"),
        );
        table.insert(
            "lossy",
            FieldValue::LongString(Bytes::from_static(&[b'a', 0xff])),
        );
        let mut properties = Properties::default();
        properties.content_type = Some("application/octetstream".into());
        properties.headers = Some(table);
        let envelope = to_envelope(&properties, Bytes::from_static(&[1, 2])).unwrap();
        assert_eq!(envelope.message_type, MessageType::Request);
        assert_eq!(envelope.service, "svc");
        assert_eq!(envelope.content_type, ContentType::Protobuf);
        assert_eq!(envelope.deadline, None);
        assert_eq!(
            envelope.headers.get("authorised").map(String::as_str),
            Some("1")
        );
        assert_eq!(envelope.headers.len(), 2, "{:?}", envelope.headers);
        assert_eq!(
            envelope.headers.get("lossy").map(String::as_str),
            Some("a\u{fffd}")
        );
    }

    proptest::proptest! {
        /// Whatever properties a broker user publishes, reading them as an envelope ends in an
        /// envelope or a reason, never a panic.
        #[test]
        fn any_readable_properties_become_an_envelope_or_a_reason(
            flags in proptest::prelude::any::<u16>(),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
        ) {
            let mut header = vec![0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            header.extend_from_slice(&(flags & !1).to_be_bytes());
            header.extend_from_slice(&bytes);
            if let Some(properties) = kernel_amqp::fuzz::content_header(&header) {
                let _ = to_envelope(&properties, Bytes::new());
            }
        }

        /// Ids of any bytes, headers of any names and values: an envelope exactly when the
        /// ids are UTF-8, and then every UTF-8 header name is kept.
        #[test]
        fn ids_and_headers_of_any_bytes(
            ids in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 3),
            entries in proptest::collection::vec(
                (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20),
                 proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
                 proptest::prelude::any::<i64>()),
                0..8,
            ),
        ) {
            let short = |bytes: &Vec<u8>| Some(ShortString::from(Bytes::from(bytes.clone())));
            let mut properties = Properties::default();
            properties.message_id = short(&ids[0]);
            properties.correlation_id = short(&ids[1]);
            properties.reply_to = short(&ids[2]);
            let mut table = FieldTable::new();
            for (i, (name, text, number)) in entries.iter().enumerate() {
                let value = if i % 2 == 0 {
                    FieldValue::LongString(Bytes::from(text.clone()))
                } else {
                    FieldValue::I64(*number)
                };
                table.insert(ShortString::from(Bytes::from(name.clone())), value);
            }
            properties.headers = Some(table);
            let ids_are_text = ids.iter().all(|id| std::str::from_utf8(id).is_ok());
            let envelope = to_envelope(&properties, Bytes::new());
            proptest::prop_assert_eq!(envelope.is_ok(), ids_are_text);
        }
    }

    #[test]
    fn ids_that_are_not_utf8_make_the_delivery_unreadable() {
        for field in 0..3 {
            let mut properties = Properties::default();
            let bad = Some(ShortString::from(Bytes::from_static(&[0xc3, 0x28])));
            match field {
                0 => properties.message_id = bad,
                1 => properties.correlation_id = bad,
                _ => properties.reply_to = bad,
            }
            assert!(to_envelope(&properties, Bytes::new()).is_err());
        }
    }
}
