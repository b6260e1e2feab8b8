//! `kernel watch TOPIC`: every publication on a topic, as it arrives.
//!
//! The tool subscribes as a service of its own (`kernel.cli.watch.<uuid>`), so its queue
//! hears every publication without taking any from another subscriber; the queue goes
//! away with the connection.
//!
//! A publication is shown as JSON: a JSON payload as it is; a protobuf payload decoded as the
//! type `--type` names, else the type the platform publishes on that topic
//! (`kernel_server::platform_topics`), else the type the topic's announced subscribers expect
//! (the registry: `announced.rs`); anything else raw, as `{"length", "base64"}`
//! (`decoder.rs`).
//!
//! Announcements come every few seconds, so at the start the tool may not have heard a
//! topic's subscribers yet: a protobuf publication nothing names a known type for waits (with
//! those after it, to keep the order) until a matching subscriber of a type the descriptor
//! sets have is heard, or `--wait` has passed since the start. `docs/cli.md` says more.

mod announced;
mod decoder;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use kernel_client::DISCOVERY_TOPIC;
use kernel_proto::platform::Announcement;
use kernel_transport::{Deliveries, Envelope, Source, codec};
use tokio::time::Instant;

use self::announced::Subscribers;
use self::decoder::{Decoded, Decoder, Resolution};
use super::out;
use crate::colour::{NAME, Paint};
use crate::context::Context;
use crate::failure::Failure;
use crate::types::Types;

/// The most publications kept waiting for announcements; past it, the oldest is shown with
/// what is known.
const MAX_WAITING: usize = 1024;

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
    /// `--wait`: how long, from the start, a publication may wait for its subscribers'
    /// announcements.
    pub(crate) wait: Duration,
}

pub(crate) async fn run(context: &Context, watch: Watch) -> Result<(), Failure> {
    // A wrong type name or descriptor file is reported before anything is subscribed.
    let types = Types::load(&watch.descriptor_sets)?;
    let flag = match &watch.type_name {
        Some(name) => Some(types.message(name)?),
        None => None,
    };
    let decoder = Decoder::new(types, flag);
    let client = context.client().await?;
    let name = format!("kernel.cli.watch.{}", kernel_transport::new_message_id());
    let subscribe = |service: String, topic: String| {
        let client = client.clone();
        async move {
            client
                .transport()
                .consume(Source::Subscription {
                    service: &service,
                    topic: &topic,
                    capacity: 64,
                })
                .await
                .map_err(|e| Failure::Platform(e.into()))
        }
    };
    let publications = subscribe(name.clone(), watch.topic.clone()).await?;
    // The registry: what subscribers announce, unless --type names every type. A queue of
    // its own name, so that watching the discovery topic itself takes nothing from it.
    let announcements = match watch.type_name {
        Some(_) => None,
        None => Some(subscribe(format!("{name}.registry"), DISCOVERY_TOPIC.to_owned()).await?),
    };
    // Subscribed: a line on stderr that scripts (and tests) can wait for.
    eprintln_ready(&watch.topic);
    let start = Instant::now();
    let mut follow = Follow {
        decoder,
        topic: watch.topic,
        json: context.global.json,
        paint: context.paint(),
        subscribers: Subscribers::default(),
        waiting: VecDeque::new(),
        wait_until: start + watch.wait,
        count: watch.count,
        seen: 0,
    };
    follow
        .run(
            publications,
            announcements,
            watch.duration.map(|duration| start + duration),
        )
        .await
}

fn eprintln_ready(topic: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "watching {topic}");
}

/// The state of a running watch.
struct Follow {
    decoder: Decoder,
    /// The topic (or pattern) watched: the topic of a publication that names none.
    topic: String,
    json: bool,
    paint: Paint,
    /// What the announcements heard so far say.
    subscribers: Subscribers,
    /// Publications received but not shown yet, in order: the first waits for a subscriber's
    /// announcement to name its type.
    waiting: VecDeque<Envelope>,
    /// When publications stop waiting for announcements.
    wait_until: Instant,
    count: Option<u64>,
    seen: u64,
}

impl Follow {
    /// Shows publications until `--count` are shown, `end` comes, or the broker goes.
    async fn run(
        &mut self,
        mut publications: Deliveries,
        mut announcements: Option<Deliveries>,
        end: Option<Instant>,
    ) -> Result<(), Failure> {
        while !self.done() {
            let waiting = !self.waiting.is_empty();
            tokio::select! {
                delivery = publications.next() => {
                    let Some(delivery) = delivery else {
                        self.release(true);
                        return Err(Failure::other("the broker connection closed"));
                    };
                    let (envelope, acker) = delivery.into_parts();
                    let _ = acker.ack().await;
                    self.waiting.push_back(envelope);
                }
                delivery = next(&mut announcements), if announcements.is_some() => {
                    match delivery {
                        Some(delivery) => {
                            let (envelope, acker) = delivery.into_parts();
                            let _ = acker.ack().await;
                            let heard = codec::decode::<Announcement>(
                                envelope.content_type,
                                &envelope.payload,
                            );
                            if let Ok(announcement) = heard {
                                self.subscribers.heard(&announcement, Instant::now().into_std());
                            }
                        }
                        // Nothing more will be heard: nothing is worth waiting for.
                        None => {
                            announcements = None;
                            self.wait_until = Instant::now();
                        }
                    }
                }
                () = tokio::time::sleep_until(self.wait_until), if waiting => {}
                () = sleep_until(end) => {
                    self.release(true);
                    return Ok(());
                }
            }
            self.release(false);
        }
        Ok(())
    }

    fn done(&self) -> bool {
        self.count.is_some_and(|count| self.seen >= count)
    }

    /// Shows the waiting publications in order, up to one that still waits for an
    /// announcement (unless `all`, or the wait is over, or too many wait).
    fn release(&mut self, all: bool) {
        let now = Instant::now();
        let over = all || now >= self.wait_until;
        while !self.done() {
            let Some(envelope) = self.waiting.front() else {
                return;
            };
            let topic = if envelope.topic.is_empty() {
                self.topic.as_str()
            } else {
                envelope.topic.as_str()
            };
            let resolution =
                self.decoder
                    .resolve(envelope, topic, &self.subscribers, now.into_std());
            // A type no descriptor set has is no answer either: anyone can announce a
            // subscriber of `#` naming one, and a real subscriber may still be heard.
            let waits = matches!(resolution, Resolution::Untyped | Resolution::Unknown(_))
                && self.decoder.needs_registry(envelope, topic);
            if waits && !over && self.waiting.len() <= MAX_WAITING {
                return;
            }
            let decoded = self.decoder.decode(envelope, resolution);
            print(envelope, decoded, self.json, self.paint);
            self.seen += 1;
            self.waiting.pop_front();
        }
    }
}

/// The next announcement, when there is a subscription.
async fn next(announcements: &mut Option<Deliveries>) -> Option<kernel_transport::Delivery> {
    match announcements {
        Some(deliveries) => deliveries.next().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `end`, or forever.
async fn sleep_until(end: Option<Instant>) {
    match end {
        Some(end) => tokio::time::sleep_until(end).await,
        None => std::future::pending().await,
    }
}

fn print(envelope: &Envelope, decoded: Decoded, json: bool, paint: Paint) {
    let Decoded {
        message,
        type_name,
        type_from,
    } = decoded;
    if json {
        let line = serde_json::json!({
            "topic": envelope.topic,
            "from": envelope.from,
            "message_id": envelope.message_id,
            "type": type_name,
            "type_from": type_from,
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
