//! [`Decoder`]: which message type a publication is, and the publication as JSON.
//!
//! The type comes, in this order, from `--type`, from the platform's table of its own topics
//! (`kernel_server::platform_topics`), or from the registry: the type announced subscribers
//! expect on the publication's topic. With none, the bytes are shown raw.

use std::time::Instant;

use base64::Engine;
use kernel_transport::{ContentType, Envelope};
use prost_reflect::MessageDescriptor;
use serde::Serialize;

use super::announced::Subscribers;
use crate::types::{self, Types};

/// Where the type a publication was decoded as came from (`type_from` in `--json`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum TypeFrom {
    /// `--type NAME`.
    Flag,
    /// The platform's own topics (`kernel_server::platform_topics`).
    Platform,
    /// A live subscriber's announcement: the type it expects on the topic.
    Registry,
}

/// What names a publication's type.
#[derive(Debug)]
pub(super) enum Resolution {
    /// A type the descriptor sets have.
    Typed(MessageDescriptor, TypeFrom),
    /// A subscriber announced a type no descriptor set has.
    Unknown(String),
    /// Nothing names a type, or none is needed (a JSON payload).
    Untyped,
}

/// A publication as JSON, and the protobuf type it was decoded as, if any.
#[derive(Debug)]
pub(super) struct Decoded {
    pub(super) message: serde_json::Value,
    pub(super) type_name: Option<String>,
    pub(super) type_from: Option<TypeFrom>,
}

/// How publications are turned into JSON.
#[derive(Debug)]
pub(super) struct Decoder {
    types: Types,
    /// `--type`'s message: every protobuf publication is decoded as it, and so is one with
    /// no content type (H2's).
    flag: Option<MessageDescriptor>,
}

impl Decoder {
    pub(super) fn new(types: Types, flag: Option<MessageDescriptor>) -> Decoder {
        Decoder { types, flag }
    }

    /// Whether the registry could still name a type this one needs: the payload is protobuf
    /// and neither `--type` nor the platform's table names it. Such a publication may wait
    /// for the announcements.
    pub(super) fn needs_registry(&self, envelope: &Envelope, topic: &str) -> bool {
        self.flag.is_none()
            && envelope.content_type == ContentType::Protobuf
            && self.types.of_platform_topic(topic).is_none()
    }

    /// The type to decode `envelope` (which arrived on `topic`) as: `--type`, else the
    /// platform's, else the one the most specific live subscriber of `topic` announced (the
    /// first such the descriptor sets have).
    pub(super) fn resolve(
        &self,
        envelope: &Envelope,
        topic: &str,
        subscribers: &Subscribers,
        now: Instant,
    ) -> Resolution {
        let protobuf = match envelope.content_type {
            ContentType::Json => return Resolution::Untyped,
            ContentType::Protobuf => true,
            ContentType::Unsupported => false,
        };
        if let Some(message) = &self.flag {
            return Resolution::Typed(message.clone(), TypeFrom::Flag);
        }
        if !protobuf {
            return Resolution::Untyped;
        }
        if let Some(message) = self.types.of_platform_topic(topic) {
            return Resolution::Typed(message, TypeFrom::Platform);
        }
        let announced = subscribers.matching(topic, now);
        for subscription in &announced {
            if let Some(message) = self.types.get(&subscription.message_type) {
                return Resolution::Typed(message, TypeFrom::Registry);
            }
        }
        match announced.first() {
            Some(subscription) => Resolution::Unknown(subscription.message_type.clone()),
            None => Resolution::Untyped,
        }
    }

    /// The publication as JSON: its JSON payload; a protobuf payload decoded as the resolved
    /// type; or else `{"length", "base64"}` of the raw bytes (with `"error"` when decoding
    /// failed or the announced type is unknown).
    pub(super) fn decode(&self, envelope: &Envelope, resolution: Resolution) -> Decoded {
        let payload = &envelope.payload;
        let raw = |error: Option<String>| {
            let mut raw = serde_json::json!({
                "length": payload.len(),
                "base64": base64::engine::general_purpose::STANDARD.encode(payload),
            });
            if let Some(error) = error {
                raw["error"] = error.into();
            }
            Decoded {
                message: raw,
                type_name: None,
                type_from: None,
            }
        };
        if envelope.content_type == ContentType::Json {
            return match serde_json::from_slice(payload) {
                Ok(message) => Decoded {
                    message,
                    type_name: None,
                    type_from: None,
                },
                Err(e) => raw(Some(format!("not JSON: {e}"))),
            };
        }
        match resolution {
            Resolution::Typed(message, from) => match types::decode(&message, payload) {
                Ok(json) => Decoded {
                    message: json,
                    type_name: Some(message.full_name().to_owned()),
                    type_from: Some(from),
                },
                Err(error) => raw(Some(error)),
            },
            Resolution::Unknown(name) => raw(Some(format!(
                "subscribers announce {name}, which no descriptor set has \
                 (add it with --descriptor-set FILE)"
            ))),
            Resolution::Untyped => raw(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kernel_proto::examples::Greeted;
    use kernel_proto::platform::{Announcement, AnnouncementEvent, EndpointInfo};
    use prost::Message;

    use super::*;

    fn types() -> Types {
        Types::load(&[] as &[&Path]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn greeted(topic: &str) -> Envelope {
        let bytes = Greeted {
            name: "ada".into(),
            count: 3,
        }
        .encode_to_vec();
        Envelope::publication(topic, ContentType::Protobuf, bytes.into())
    }

    fn subscribed(pattern: &str, message_type: &str) -> Subscribers {
        let mut subscribers = Subscribers::default();
        let announcement = Announcement {
            event: AnnouncementEvent::Running.into(),
            instance_id: "server-com.example.audit-1".into(),
            endpoints: vec![EndpointInfo {
                name: "record".into(),
                subscribe: pattern.into(),
                request_type: message_type.into(),
                ..Default::default()
            }],
            interval_ms: 10_000,
            ..Default::default()
        };
        subscribers.heard(&announcement, Instant::now());
        subscribers
    }

    fn decode(decoder: &Decoder, envelope: &Envelope, subscribers: &Subscribers) -> Decoded {
        let resolution = decoder.resolve(envelope, &envelope.topic, subscribers, Instant::now());
        decoder.decode(envelope, resolution)
    }

    #[test]
    fn a_subscribers_announced_type_decodes_its_topic() {
        let decoder = Decoder::new(types(), None);
        let subscribers = subscribed("com.example.#", "kernel.examples.v1.Greeted");
        let envelope = greeted("com.example.greeter.greeted");
        assert!(decoder.needs_registry(&envelope, &envelope.topic));
        let decoded = decode(&decoder, &envelope, &subscribers);
        assert_eq!(decoded.type_from, Some(TypeFrom::Registry));
        assert_eq!(
            decoded.type_name.as_deref(),
            Some("kernel.examples.v1.Greeted")
        );
        assert_eq!(
            decoded.message,
            serde_json::json!({"name": "ada", "count": "3"})
        );

        // Nobody subscribes there: raw.
        let elsewhere = greeted("org.other.greeted");
        let decoded = decode(&decoder, &elsewhere, &subscribers);
        assert_eq!(decoded.type_from, None);
        assert_eq!(decoded.message["length"], elsewhere.payload.len());
    }

    #[test]
    fn the_flag_wins_over_the_platform_and_the_platform_over_the_registry() {
        let subscribers = subscribed("kernel.monitor.#", "kernel.examples.v1.Greeted");
        let health = Envelope::publication(
            "kernel.monitor.healthcheck",
            ContentType::Protobuf,
            Vec::new().into(),
        );
        let decoder = Decoder::new(types(), None);
        assert!(!decoder.needs_registry(&health, &health.topic));
        let decoded = decode(&decoder, &health, &subscribers);
        assert_eq!(decoded.type_from, Some(TypeFrom::Platform));
        assert_eq!(
            decoded.type_name.as_deref(),
            Some("kernel.platform.v1.HealthCheckEvent")
        );

        let flag = types().message("kernel.examples.v1.Greeted").ok();
        let decoder = Decoder::new(types(), flag);
        let decoded = decode(&decoder, &health, &subscribers);
        assert_eq!(decoded.type_from, Some(TypeFrom::Flag));
        assert_eq!(
            decoded.type_name.as_deref(),
            Some("kernel.examples.v1.Greeted")
        );
    }

    #[test]
    fn an_announced_type_nobody_knows_is_shown_raw_with_the_reason() {
        let decoder = Decoder::new(types(), None);
        let subscribers = subscribed("team.#", "team.v1.Secret");
        let decoded = decode(&decoder, &greeted("team.audit"), &subscribers);
        assert_eq!(decoded.type_from, None);
        let error = decoded.message["error"].as_str().unwrap_or_default();
        assert!(error.contains("team.v1.Secret"), "{error}");
        assert!(error.contains("--descriptor-set"), "{error}");
    }

    #[test]
    fn json_payloads_are_shown_as_they_are() {
        let decoder = Decoder::new(types(), None);
        let subscribers = subscribed("#", "kernel.examples.v1.Greeted");
        let envelope = Envelope::publication(
            "a.b",
            ContentType::Json,
            br#"{"answer":42}"#.to_vec().into(),
        );
        assert!(!decoder.needs_registry(&envelope, &envelope.topic));
        let decoded = decode(&decoder, &envelope, &subscribers);
        assert_eq!(decoded.message, serde_json::json!({"answer": 42}));
        assert_eq!(decoded.type_from, None);
    }
}
