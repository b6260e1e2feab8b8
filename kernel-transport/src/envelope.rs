//! [`Envelope`]: one message between processes, with the wire contract's properties and headers.

use std::collections::HashMap;
use std::fmt;
use std::time::SystemTime;

use bytes::Bytes;

/// Header names of the wire contract ([`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md)). Every header value is an AMQP long
/// string.
pub mod headers {
    /// What the message is: `request`, `reply`, `error`, `heartbeat` or `publication`.
    pub const MESSAGE_TYPE: &str = "messageType";
    /// The service a request is for.
    pub const SERVICE: &str = "service";
    /// The endpoint a request is for.
    pub const ENDPOINT: &str = "endpoint";
    /// The topic of a publication.
    pub const TOPIC: &str = "topic";
    /// The calling service's name.
    pub const FROM: &str = "from";
    /// The caller's session id, if any.
    pub const SESSION_ID: &str = "sessionID";
    /// The trace the request belongs to, if any.
    pub const TRACE_ID: &str = "traceID";
    /// The message id of the request being handled when this one was sent, if any.
    pub const PARENT_MESSAGE_ID: &str = "parentMessageID";
    /// The absolute deadline, in milliseconds since the Unix epoch, as decimal digits.
    pub const DEADLINE: &str = "deadline";
    /// `ping` on a heartbeat (H2 compatibility).
    pub const HEARTBEAT: &str = "heartbeat";
}

/// What a message is; the `messageType` header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// A call to a service's endpoint; expects a reply or an error.
    #[default]
    Request,
    /// A successful answer to a request.
    Reply,
    /// A failed answer to a request: the payload is a `PlatformError`.
    Error,
    /// A liveness probe (`ping`) or its answer (`pong`).
    Heartbeat,
    /// A message to every subscriber of a topic; expects nothing back.
    Publication,
}

impl MessageType {
    /// The header value: `request`, `reply`, `error`, `heartbeat` or `publication`.
    pub const fn as_str(self) -> &'static str {
        match self {
            MessageType::Request => "request",
            MessageType::Reply => "reply",
            MessageType::Error => "error",
            MessageType::Heartbeat => "heartbeat",
            MessageType::Publication => "publication",
        }
    }

    /// Parses a header value; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        [
            MessageType::Request,
            MessageType::Reply,
            MessageType::Error,
            MessageType::Heartbeat,
            MessageType::Publication,
        ]
        .into_iter()
        .find(|t| t.as_str() == value)
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a payload is encoded; the `content_type` property.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// Protobuf binary encoding: `application/protobuf`.
    #[default]
    Protobuf,
    /// The standard protobuf JSON mapping: `application/json`.
    Json,
    /// A content type this kernel cannot decode. A server answers such a request with a
    /// `BadRequest` error encoded as protobuf.
    Unsupported,
}

impl ContentType {
    /// The content type a kernel peer sends for protobuf payloads.
    pub const PROTOBUF: &'static str = "application/protobuf";
    /// The content type a kernel peer sends for JSON payloads.
    pub const JSON: &'static str = "application/json";

    /// The property value sent on the wire (`Unsupported` is never sent: replies to such
    /// requests use protobuf).
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentType::Protobuf | ContentType::Unsupported => Self::PROTOBUF,
            ContentType::Json => Self::JSON,
        }
    }

    /// Parses a received property. A missing one means protobuf; H2's
    /// `application/octetstream` and the common `application/x-protobuf` are read as protobuf.
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            None | Some("") => ContentType::Protobuf,
            Some(Self::PROTOBUF | "application/x-protobuf" | "application/octetstream") => {
                ContentType::Protobuf
            }
            Some(Self::JSON) => ContentType::Json,
            Some(_) => ContentType::Unsupported,
        }
    }

    /// The content type to answer with: the request's own, or protobuf if unsupported.
    pub const fn for_reply(self) -> Self {
        match self {
            ContentType::Json => ContentType::Json,
            ContentType::Protobuf | ContentType::Unsupported => ContentType::Protobuf,
        }
    }
}

/// One message between processes: the wire contract's properties and headers, and the payload.
///
/// Which fields matter depends on the [`MessageType`]; empty strings mean "not set" and are not
/// sent. `payload` is shared [`Bytes`], so cloning an envelope (to retry a request, say) never
/// copies it.
///
/// ```
/// use kernel_transport::{ContentType, Envelope};
///
/// let request = Envelope::request("com.example.greeter", "hello", ContentType::Json, "{}".into());
/// let reply = request.reply(ContentType::Json, r#"{"greeting":"hi"}"#.into());
/// assert_eq!(reply.correlation_id, request.message_id);
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Envelope {
    /// What the message is.
    pub message_type: MessageType,
    /// A unique id (UUID v4) for requests and publications; retries reuse it.
    pub message_id: String,
    /// On replies, errors and pongs: the `message_id` of the message answered.
    pub correlation_id: String,
    /// On requests and pings: the sender's instance queue, where the answer goes.
    pub reply_to: String,
    /// How the payload is encoded.
    pub content_type: ContentType,
    /// On requests: the service called.
    pub service: String,
    /// On requests: the endpoint called.
    pub endpoint: String,
    /// On publications: the topic.
    pub topic: String,
    /// The calling service's name, if it has one, as the sender wrote it: any publisher can
    /// write any name here, so it serves fairness and logs, never authorisation (that is
    /// [`user_id`](Self::user_id)).
    pub from: String,
    /// The caller's session id, if any.
    pub session_id: String,
    /// The trace id, if any.
    pub trace_id: String,
    /// The id of the request being handled when this one was sent, if any.
    pub parent_message_id: String,
    /// On requests: when the caller stops waiting. Servers drop requests past it.
    pub deadline: Option<SystemTime>,
    /// Who sent it, as the broker verified: on a received envelope, the sender's broker user
    /// (RabbitMQ's `user_id` property, which the broker checks against the publisher's login;
    /// the in-process broker stamps the user its transport connected as). Empty means
    /// unknown: a peer that does not set it (an H2 or early v1 process), or a value that
    /// cannot be a user name (not UTF-8, over 255 bytes).
    ///
    /// On an envelope to send it is ignored: the transport always sends its own identity
    /// ([`Transport::user`](crate::Transport::user)), so a value from the input is never
    /// forwarded. Unlike [`from`](Self::from), which any publisher can write, authorisation
    /// may rely on it ([`docs/security.md`](https://github.com/kernel-platform/kernel/blob/main/docs/security.md)).
    pub user_id: String,
    /// Headers the contract does not name, passed through as they are.
    pub headers: HashMap<String, String>,
    /// The encoded message.
    pub payload: Bytes,
}

/// The body of a heartbeat ping.
pub const PING: &[u8] = b"PING";
/// The body of a heartbeat answer.
pub const PONG: &[u8] = b"PONG";

impl Envelope {
    /// A request to `service`'s `endpoint` with a fresh message id.
    pub fn request(
        service: impl Into<String>,
        endpoint: impl Into<String>,
        content_type: ContentType,
        payload: Bytes,
    ) -> Self {
        Envelope {
            message_type: MessageType::Request,
            message_id: new_message_id(),
            content_type,
            service: service.into(),
            endpoint: endpoint.into(),
            payload,
            ..Envelope::default()
        }
    }

    /// A publication on `topic` with a fresh message id.
    pub fn publication(
        topic: impl Into<String>,
        content_type: ContentType,
        payload: Bytes,
    ) -> Self {
        Envelope {
            message_type: MessageType::Publication,
            message_id: new_message_id(),
            content_type,
            topic: topic.into(),
            payload,
            ..Envelope::default()
        }
    }

    /// A heartbeat ping with a fresh message id; the pong comes back to `reply_to`. It also
    /// carries H2's `heartbeat: ping` header, so that H2 services answer it too.
    pub fn ping(reply_to: impl Into<String>) -> Self {
        Envelope {
            message_type: MessageType::Heartbeat,
            message_id: new_message_id(),
            reply_to: reply_to.into(),
            headers: HashMap::from([(headers::HEARTBEAT.to_owned(), "ping".to_owned())]),
            payload: Bytes::from_static(PING),
            ..Envelope::default()
        }
    }

    /// A successful answer to this request.
    pub fn reply(&self, content_type: ContentType, payload: Bytes) -> Self {
        self.answer(MessageType::Reply, content_type, payload)
    }

    /// A failed answer to this request; `payload` is an encoded `PlatformError`.
    pub fn error_reply(&self, content_type: ContentType, payload: Bytes) -> Self {
        self.answer(MessageType::Error, content_type, payload)
    }

    /// The answer to this heartbeat ping.
    pub fn pong(&self) -> Self {
        self.answer(
            MessageType::Heartbeat,
            self.content_type,
            Bytes::from_static(PONG),
        )
    }

    /// Whether this is a heartbeat ping: `messageType = heartbeat` (and not a pong), or the
    /// H2 header `heartbeat: ping`. (H2 also took a bare `PING` body as a ping; we do not,
    /// since a real request's protobuf payload can be those four bytes.)
    pub fn is_ping(&self) -> bool {
        (self.message_type == MessageType::Heartbeat && self.payload.as_ref() != PONG)
            || self
                .headers
                .get(headers::HEARTBEAT)
                .is_some_and(|v| v == "ping")
    }

    /// An answer repeats the request's service and endpoint (as H2 did) only when each is a
    /// possible name (at most 255 bytes): a request cannot make its answer larger than a
    /// frame by sending huge ones.
    fn answer(&self, message_type: MessageType, content_type: ContentType, payload: Bytes) -> Self {
        let name = |value: &str| {
            if value.len() <= crate::error::MAX_NAME_LEN {
                value.to_owned()
            } else {
                String::new()
            }
        };
        Envelope {
            message_type,
            correlation_id: self.message_id.clone(),
            content_type,
            service: name(&self.service),
            endpoint: name(&self.endpoint),
            payload,
            ..Envelope::default()
        }
    }
}

/// At most the first 64 characters of `text`, a name or id from the wire, for log lines and
/// error descriptions: nothing a sender writes is reflected unbounded.
///
/// ```
/// let long = "x".repeat(100);
/// assert_eq!(kernel_transport::clip(&long).len(), 64);
/// assert_eq!(kernel_transport::clip("hello"), "hello");
/// ```
pub fn clip(text: &str) -> &str {
    if text.len() <= 64 {
        // No more bytes than characters to keep: nothing to count.
        return text;
    }
    match text.char_indices().nth(64) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

/// A fresh message id: a random UUID v4 in its hyphenated form.
pub fn new_message_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_64_characters_however_many_bytes() {
        assert_eq!(clip("hello"), "hello");
        let ascii = "a".repeat(80);
        assert_eq!(clip(&ascii), &ascii[..64]);
        // 40 characters of two bytes each: 80 bytes, all kept.
        let wide = "é".repeat(40);
        assert_eq!(clip(&wide), wide);
        let wider = "é".repeat(70);
        assert_eq!(clip(&wider).chars().count(), 64);
    }

    #[test]
    fn message_types_round_trip_through_their_header_values() {
        for t in [
            MessageType::Request,
            MessageType::Reply,
            MessageType::Error,
            MessageType::Heartbeat,
            MessageType::Publication,
        ] {
            assert_eq!(MessageType::parse(t.as_str()), Some(t));
        }
        assert_eq!(MessageType::parse("bogus"), None);
    }

    #[test]
    fn content_types_accept_h2_aliases_and_flag_the_rest() {
        assert_eq!(ContentType::parse(None), ContentType::Protobuf);
        assert_eq!(
            ContentType::parse(Some("application/octetstream")),
            ContentType::Protobuf
        );
        assert_eq!(
            ContentType::parse(Some("application/json")),
            ContentType::Json
        );
        assert_eq!(
            ContentType::parse(Some("text/xml")),
            ContentType::Unsupported
        );
        assert_eq!(ContentType::Unsupported.for_reply(), ContentType::Protobuf);
    }

    #[test]
    fn answers_correlate_with_the_request_and_pongs_are_not_pings() {
        let ping = Envelope::ping("instance-1");
        assert!(ping.is_ping());
        let pong = ping.pong();
        assert_eq!(pong.correlation_id, ping.message_id);
        assert!(!pong.is_ping());
        let request = Envelope::request("svc", "ep", ContentType::Protobuf, Bytes::new());
        assert!(!request.is_ping());
        let looks_like_ping =
            Envelope::request("svc", "ep", ContentType::Protobuf, Bytes::from_static(PING));
        assert!(
            !looks_like_ping.is_ping(),
            "a request whose payload is PING is still a request"
        );
        assert_ne!(request.message_id, ping.message_id);
    }
}
