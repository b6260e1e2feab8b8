//! `kernel watch TOPIC`: every publication on a topic, as it arrives.
//!
//! The tool subscribes as a service of its own (`kernel.cli.watch.<uuid>`), so its queue
//! hears every publication without taking any from another subscriber; the queue goes
//! away with the connection.

use std::time::Duration;

use base64::Engine;
use kernel_proto::platform::{Announcement, HealthCheckEvent, StatsResponse};
use kernel_transport::{ContentType, Envelope, Message, Source, codec};

use super::out;
use crate::colour::{NAME, Paint};
use crate::context::Context;
use crate::failure::Failure;

pub(crate) async fn run(
    context: &Context,
    topic: &str,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Result<(), Failure> {
    let client = context.client().await?;
    let name = format!("kernel.cli.watch.{}", kernel_transport::new_message_id());
    let mut deliveries = client
        .transport()
        .consume(Source::Subscription {
            service: &name,
            topic,
            capacity: 64,
        })
        .await
        .map_err(|e| Failure::Platform(e.into()))?;
    // Subscribed: a line on stderr that scripts (and tests) can wait for.
    eprintln_ready(topic);
    let follow = async {
        let mut seen = 0;
        while count.is_none_or(|count| seen < count) {
            let Some(delivery) = deliveries.next().await else {
                return Err(Failure::other("the broker connection closed"));
            };
            let (envelope, acker) = delivery.into_parts();
            let _ = acker.ack().await;
            print(&envelope, context.global.json, context.paint());
            seen += 1;
        }
        Ok(())
    };
    match duration {
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

fn print(envelope: &Envelope, json: bool, paint: Paint) {
    let body = decode(envelope);
    if json {
        let line = serde_json::json!({
            "topic": envelope.topic,
            "from": envelope.from,
            "message_id": envelope.message_id,
            "message": body,
        });
        out(format_args!("{line}\n"));
    } else {
        let from = if envelope.from.is_empty() {
            "-"
        } else {
            &envelope.from
        };
        out(format_args!(
            "{} from {from}: {body}\n",
            paint.paint(&envelope.topic, NAME)
        ));
    }
}

/// The publication as JSON: its JSON payload, a monitoring message decoded from protobuf,
/// or else `{"length", "base64"}` of the raw bytes.
fn decode(envelope: &Envelope) -> serde_json::Value {
    let payload = &envelope.payload;
    if envelope.content_type == ContentType::Json {
        if let Ok(value) = serde_json::from_slice(payload) {
            return value;
        }
    } else if envelope.content_type == ContentType::Protobuf {
        let typed = match envelope.topic.as_str() {
            "kernel.monitor.discovery" => as_json::<Announcement>(payload),
            "kernel.monitor.healthcheck" => as_json::<HealthCheckEvent>(payload),
            "kernel.monitor.stats" => as_json::<StatsResponse>(payload),
            _ => None,
        };
        if let Some(value) = typed {
            return value;
        }
    }
    serde_json::json!({
        "length": payload.len(),
        "base64": base64::engine::general_purpose::STANDARD.encode(payload),
    })
}

fn as_json<M: Message>(payload: &[u8]) -> Option<serde_json::Value> {
    let message: M = codec::decode(ContentType::Protobuf, payload).ok()?;
    serde_json::to_value(&message).ok()
}
