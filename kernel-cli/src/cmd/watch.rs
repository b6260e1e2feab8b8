//! `kernel watch TOPIC`: every publication on a topic, as it arrives.
//!
//! The tool subscribes as a service of its own (`kernel.cli.watch.<uuid>`), so its queue
//! hears every publication without taking any from another subscriber; the queue goes
//! away with the connection.
//!
//! A publication is shown as JSON: a JSON payload as it is; a protobuf payload decoded as the
//! `--type` message (or, on the monitoring topics, as the type the platform publishes there);
//! anything else as `{"length", "base64"}`. Publications carry no type name and publishers
//! announce none (an announcement names what an instance's endpoints take, not what it
//! publishes), so the type comes from the command line: `docs/cli.md` says more.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use kernel_transport::{ContentType, Envelope, Source};
use prost_reflect::MessageDescriptor;

use super::out;
use crate::colour::{NAME, Paint};
use crate::context::Context;
use crate::failure::Failure;
use crate::types::{self, Types};

/// What `kernel watch` was asked for.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) topic: String,
    pub(crate) count: Option<u64>,
    pub(crate) duration: Option<Duration>,
    /// `--type`: decode protobuf publications as this message.
    pub(crate) type_name: Option<String>,
    /// `--descriptor-set`: files with more message types.
    pub(crate) descriptor_sets: Vec<PathBuf>,
}

pub(crate) async fn run(context: &Context, watch: Watch) -> Result<(), Failure> {
    // A wrong type name or descriptor file is reported before anything is subscribed.
    let types = Types::load(&watch.descriptor_sets)?;
    let decoder = Decoder {
        typed: match &watch.type_name {
            Some(name) => Some(types.message(name)?),
            None => types.of_monitoring_topic(&watch.topic),
        },
        forced: watch.type_name.is_some(),
    };
    let client = context.client().await?;
    let name = format!("kernel.cli.watch.{}", kernel_transport::new_message_id());
    let mut deliveries = client
        .transport()
        .consume(Source::Subscription {
            service: &name,
            topic: &watch.topic,
            capacity: 64,
        })
        .await
        .map_err(|e| Failure::Platform(e.into()))?;
    // Subscribed: a line on stderr that scripts (and tests) can wait for.
    eprintln_ready(&watch.topic);
    let paint = context.paint();
    let follow = async {
        let mut seen = 0;
        while watch.count.is_none_or(|count| seen < count) {
            let Some(delivery) = deliveries.next().await else {
                return Err(Failure::other("the broker connection closed"));
            };
            let (envelope, acker) = delivery.into_parts();
            let _ = acker.ack().await;
            print(&envelope, &decoder, context.global.json, paint);
            seen += 1;
        }
        Ok(())
    };
    match watch.duration {
        Some(duration) => match tokio::time::timeout(duration, follow).await {
            Ok(outcome) => outcome,
            Err(_) => Ok(()),
        },
        None => follow.await,
    }
}

fn eprintln_ready(topic: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "watching {topic}");
}

fn print(envelope: &Envelope, decoder: &Decoder, json: bool, paint: Paint) {
    let Decoded { message, type_name } = decoder.decode(envelope);
    if json {
        let line = serde_json::json!({
            "topic": envelope.topic,
            "from": envelope.from,
            "message_id": envelope.message_id,
            "type": type_name,
            "message": message,
        });
        out(format_args!("{line}\n"));
    } else {
        let from = if envelope.from.is_empty() {
            "-"
        } else {
            &envelope.from
        };
        out(format_args!(
            "{} from {from}: {message}\n",
            paint.paint(&envelope.topic, NAME)
        ));
    }
}

/// How publications are turned into JSON.
#[derive(Debug)]
struct Decoder {
    /// The protobuf message type to decode with: `--type`'s, or a monitoring topic's.
    typed: Option<MessageDescriptor>,
    /// `--type` was given: payloads with no content type (H2's) are tried as protobuf too.
    forced: bool,
}

/// A publication as JSON, and the protobuf type it was decoded as, if any.
#[derive(Debug)]
struct Decoded {
    message: serde_json::Value,
    type_name: Option<String>,
}

impl Decoder {
    /// The publication as JSON: its JSON payload; a protobuf payload decoded as the type; or
    /// else `{"length", "base64"}` of the raw bytes (with `"error"` when decoding failed).
    fn decode(&self, envelope: &Envelope) -> Decoded {
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
            }
        };
        let protobuf = match envelope.content_type {
            ContentType::Json => {
                return match serde_json::from_slice(payload) {
                    Ok(message) => Decoded {
                        message,
                        type_name: None,
                    },
                    Err(e) => raw(Some(format!("not JSON: {e}"))),
                };
            }
            ContentType::Protobuf => true,
            ContentType::Unsupported => self.forced,
        };
        match &self.typed {
            Some(message) if protobuf => match types::decode(message, payload) {
                Ok(json) => Decoded {
                    message: json,
                    type_name: Some(message.full_name().to_owned()),
                },
                Err(error) => raw(Some(error)),
            },
            _ => raw(None),
        }
    }
}
