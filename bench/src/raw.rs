//! The baseline: the fastest echo over RabbitMQ we know how to write with lapin alone, no
//! kernel code. The kernel's figures are divided by these, so every choice here favours speed
//! (and is listed in `docs/benchmarks.md`):
//!
//! - server: one consumer, auto-acked by default (`--ack manual` acks each delivery after its
//!   reply, with a prefetch of [`PREFETCH`]; auto-acks cost the broker and the server less
//!   CPU per call, measured); the consuming task itself publishes each body back to its
//!   `reply_to` with `correlation_id` = its `message_id`, on the default exchange, without
//!   headers, `mandatory` or confirms, many replies in flight at once;
//! - client: one connection and channel, one shared exclusive reply queue consumed without
//!   acks, a map of oneshot senders keyed by message id, filled by one dispatcher task; each
//!   caller is its own task and awaits only its reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::sync::oneshot;

use crate::load::{self, Echo, Pace};
use crate::report::Line;

/// The server's prefetch when it acks: at least 256, so that the broker never waits for it.
pub(crate) const PREFETCH: u16 = 512;

/// The request body: the protobuf of the kernel bench's `HelloRequest { name: "bench" }`
/// (field 1, length-delimited, 5 bytes), so that both systems carry the same bytes.
pub(crate) const PAYLOAD: &[u8] = b"\x0a\x05bench";

/// How the server acknowledges deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Ack {
    /// The broker forgets a delivery as it sends it (no ack frames, no prefetch window).
    Auto,
    /// One `basic.ack` per delivery, after its reply is published.
    Manual,
}

/// Serves `queue` until the connection ends.
pub(crate) async fn serve(url: &str, queue: &str, ack: Ack, prefetch: u16) -> crate::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    if ack == Ack::Manual {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
    }
    let auto_delete = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), auto_delete, FieldTable::default())
        .await?;
    let no_ack = ack == Ack::Auto;
    let requests = channel
        .basic_consume(
            queue.into(),
            "raw-server".into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    Line::Ready {
        role: "raw-server",
        pid: std::process::id(),
        reply_cache_window_ms: None,
    }
    .print()?;
    answer_each("raw-server", requests, |delivery| {
        reply(&channel, delivery, ack)
    })
    .await
}

/// Answers each delivery of `requests` with `reply` until the consumer ends; for both lapin
/// echo servers. Replies in flight are driven by this task: a publish pushes its frames when
/// first polled, without the hand-off to another task that a spawn per delivery costs (a
/// quarter less CPU per call in the server, measured).
pub(crate) async fn answer_each<F, Fut>(
    role: &str,
    mut requests: lapin::Consumer,
    reply: F,
) -> crate::Result<()>
where
    F: Fn(Delivery) -> Fut,
    Fut: Future<Output = lapin::Result<()>>,
{
    let mut replies = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(replied) = replies.next(), if !replies.is_empty() => {
                if let Err(error) = replied {
                    eprintln!("{role}: cannot reply: {error}");
                }
            }
            delivery = requests.next() => match delivery {
                Some(delivery) => replies.push(reply(delivery?)),
                None => break,
            },
        }
    }
    Err("the request consumer ended".into())
}

/// Publishes the delivery's body back to its `reply_to`, then acks it if asked to.
async fn reply(channel: &Channel, delivery: Delivery, ack: Ack) -> lapin::Result<()> {
    if let Some(reply_to) = delivery.properties.reply_to().clone() {
        let mut properties = BasicProperties::default();
        if let Some(id) = delivery.properties.message_id().clone() {
            properties = properties.with_correlation_id(id);
        }
        channel
            .basic_publish(
                "".into(),
                reply_to,
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?;
    }
    if ack == Ack::Manual {
        delivery.acker.ack(BasicAckOptions::default()).await?;
    }
    Ok(())
}

/// Measures calls to the raw server on `queue` and prints the result line.
pub(crate) async fn call(
    url: &str,
    queue: &str,
    concurrency: usize,
    pace: &Pace,
) -> crate::Result<()> {
    let (echo, _connection) = RawEcho::connect(url, queue).await?;
    let measured = load::measure("raw", Arc::new(echo), concurrency, pace).await?;
    Line::Result(measured).print()
}

/// Replies still awaited, by message id.
type Pending = Mutex<HashMap<u64, oneshot::Sender<()>>>;

/// The calls awaiting their replies, completed by one dispatcher task that reads the reply
/// queue; for both lapin echo clients.
pub(crate) struct Replies {
    pending: Arc<Pending>,
    next_id: AtomicU64,
}

impl Replies {
    /// Consumes `queue` without acks, as `tag`, and completes each waiter whose id is a
    /// reply's `correlation_id` (in decimal, leading zeros allowed).
    pub(crate) async fn start(
        channel: &Channel,
        queue: ShortString,
        tag: &str,
    ) -> lapin::Result<Replies> {
        let mut replies = channel
            .basic_consume(
                queue,
                tag.into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending = Arc::new(Pending::default());
        let dispatched = Arc::clone(&pending);
        tokio::spawn(async move {
            while let Some(Ok(reply)) = replies.next().await {
                let id = reply
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().parse::<u64>().ok());
                let waiter = id.and_then(|id| lock(&dispatched).remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
        });
        Ok(Replies {
            pending,
            next_id: AtomicU64::new(0),
        })
    }

    /// A fresh message id, and what completes when its reply comes (or errs once the reply
    /// consumer has ended).
    pub(crate) fn expect(&self) -> (u64, oneshot::Receiver<()>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (answered, reply) = oneshot::channel();
        lock(&self.pending).insert(id, answered);
        (id, reply)
    }
}

/// A raw caller: shared by every caller task.
struct RawEcho {
    channel: Channel,
    queue: ShortString,
    reply_to: ShortString,
    replies: Replies,
}

impl RawEcho {
    /// Connects, declares the exclusive reply queue and starts the dispatcher. The connection
    /// is returned so that the caller keeps it open.
    async fn connect(url: &str, queue: &str) -> crate::Result<(Self, Connection)> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let reply_queue = channel
            .queue_declare("".into(), exclusive, FieldTable::default())
            .await?;
        let reply_to = reply_queue.name().clone();
        let replies = Replies::start(&channel, reply_to.clone(), "raw-client").await?;
        let echo = RawEcho {
            channel,
            queue: queue.into(),
            reply_to,
            replies,
        };
        Ok((echo, connection))
    }
}

impl Echo for RawEcho {
    async fn call(&self) -> Result<(), String> {
        let (id, reply) = self.replies.expect();
        let properties = BasicProperties::default()
            .with_message_id(id.to_string().into())
            .with_reply_to(self.reply_to.clone());
        self.channel
            .basic_publish(
                "".into(),
                self.queue.clone(),
                BasicPublishOptions::default(),
                PAYLOAD,
                properties,
            )
            .await
            .map_err(|e| e.to_string())?;
        reply
            .await
            .map_err(|_| "the reply consumer ended".to_owned())
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<()>>> {
    // Inserts and removes cannot leave the map half changed.
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}
