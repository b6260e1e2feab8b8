//! lapin alone, speaking the kernel's wire (`docs/wire.md`): what the broker and the lapin
//! echo cost when they carry what the kernel carries, with no kernel code.
//!
//! Dividing the kernel's figures by these gives the cost of the kernel's code; dividing these
//! by the raw echo's gives the cost of the wire contract itself (manual acks with a prefetch,
//! a table of headers, `mandatory`, `expiration`, `user_id`, the `h2o` exchanges), which no
//! implementation of the contract can avoid. It is a diagnosis beside the baseline, never the
//! baseline: the kernel's targets are set against the fastest echo, `raw`.
//!
//! - server: the work queue declared and bound as a kernel service declares it, consumed with
//!   manual acks and the prefetch of a kernel service of the bench's capacity; each reply
//!   published to `h2o.direct` with the properties and headers a kernel reply has, then the
//!   request acked; replies driven by the consuming task, as in `raw`;
//! - client: a reply queue declared and bound as a kernel instance queue is; each request
//!   published to `h2o` `mandatory`, with a kernel request's properties and headers (a fresh
//!   trace id and deadline per call); the rest as in `raw`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::load::{self, Echo, Pace};
use crate::raw::{PAYLOAD, Replies, answer_each};
use crate::report::Line;

const REQUESTS: &str = "h2o";
const REPLIES: &str = "h2o.direct";
const CONTENT_TYPE: &str = "application/protobuf";
/// AMQP delivery mode 1: transient, as the kernel publishes everything.
const TRANSIENT: u8 = 1;
/// The kernel's bound on an instance queue's length.
const INSTANCE_QUEUE_MAX_LENGTH: i32 = 10_000;
/// The deadline every request carries (the kernel client's default).
const DEADLINE: Duration = Duration::from_secs(10);
/// The caller's name (`from`), as the kernel client's.
const CALLER: &str = "kernel-bench.client";

/// Connects and declares the kernel's request and reply exchanges (durable direct exchanges).
async fn connect(url: &str) -> crate::Result<(Connection, Channel, ShortString)> {
    let user = url
        .parse::<lapin::uri::AMQPUri>()
        .map_err(|e| format!("cannot read the broker URL: {e}"))?
        .authority
        .userinfo
        .username;
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for exchange in [REQUESTS, REPLIES] {
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
    }
    Ok((connection, channel, user.into()))
}

/// Serves `queue` as a kernel service's work queue until the connection ends.
pub(crate) async fn serve(url: &str, queue: &str) -> crate::Result<()> {
    let (_connection, channel, user) = connect(url).await?;
    let prefetch = kernel::server::prefetch(crate::echo::CAPACITY);
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let auto_delete = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    declare_bound(
        &channel,
        queue.into(),
        auto_delete,
        FieldTable::default(),
        REQUESTS,
    )
    .await?;
    let requests = channel
        .basic_consume(
            queue.into(),
            "wire-server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Line::Ready {
        role: "wire-server",
        pid: std::process::id(),
        reply_cache_window_ms: None,
    }
    .print()?;
    answer_each("wire-server", requests, |delivery| {
        reply(&channel, delivery, &user)
    })
    .await
}

/// Declares `queue` and binds it to `exchange` under its own name, as the kernel binds a work
/// queue (to `h2o`) and an instance queue (to `h2o.direct`).
async fn declare_bound(
    channel: &Channel,
    queue: ShortString,
    options: QueueDeclareOptions,
    arguments: FieldTable,
    exchange: &str,
) -> lapin::Result<()> {
    channel
        .queue_declare(queue.clone(), options, arguments)
        .await?;
    channel
        .queue_bind(
            queue.clone(),
            exchange.into(),
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Publishes the body back as a kernel reply to the request's `reply_to`, then acks it.
async fn reply(channel: &Channel, delivery: Delivery, user: &ShortString) -> lapin::Result<()> {
    if let Some(reply_to) = delivery.properties.reply_to().clone() {
        let mut headers = FieldTable::default();
        headers.insert("messageType".into(), text("reply"));
        // An answer repeats the request's service and endpoint.
        if let Some(request) = delivery.properties.headers() {
            for name in ["service", "endpoint"] {
                if let Some(value) = request.inner().get(name) {
                    headers.insert(name.into(), value.clone());
                }
            }
        }
        let mut properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(TRANSIENT)
            .with_user_id(user.clone())
            .with_headers(headers);
        if let Some(id) = delivery.properties.message_id().clone() {
            properties = properties.with_correlation_id(id);
        }
        channel
            .basic_publish(
                REPLIES.into(),
                reply_to,
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?;
    }
    delivery.acker.ack(BasicAckOptions::default()).await?;
    Ok(())
}

/// Measures calls to the kernel-wire server on `queue` and prints the result line.
pub(crate) async fn call(
    url: &str,
    queue: &str,
    concurrency: usize,
    pace: &Pace,
) -> crate::Result<()> {
    let (echo, _connection) = WireEcho::connect(url, queue).await?;
    let measured = load::measure("wire", Arc::new(echo), concurrency, pace).await?;
    Line::Result(measured).print()
}

/// A caller speaking the kernel's wire: shared by every caller task.
struct WireEcho {
    channel: Channel,
    queue: ShortString,
    reply_to: ShortString,
    user: ShortString,
    replies: Replies,
}

impl WireEcho {
    /// Connects, declares the reply queue as a kernel instance queue and starts the
    /// dispatcher. The connection is returned so that the caller keeps it open.
    async fn connect(url: &str, queue: &str) -> crate::Result<(Self, Connection)> {
        let (connection, channel, user) = connect(url).await?;
        let reply_to = ShortString::from(format!("instance-wire-{}", std::process::id()));
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongInt(INSTANCE_QUEUE_MAX_LENGTH),
        );
        declare_bound(&channel, reply_to.clone(), exclusive, arguments, REPLIES).await?;
        let replies = Replies::start(&channel, reply_to.clone(), "wire-client").await?;
        let echo = WireEcho {
            channel,
            queue: queue.into(),
            reply_to,
            user,
            replies,
        };
        Ok((echo, connection))
    }

    /// A kernel request's properties and headers.
    fn properties(&self, id: u64) -> BasicProperties {
        // A message id as long as a UUID's text, a fresh trace per call.
        let trace_id = format!(
            "{:032x}",
            (u128::from(id) << 64) | u128::from(std::process::id())
        );
        let deadline = SystemTime::now() + DEADLINE;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let mut headers = FieldTable::default();
        headers.insert("messageType".into(), text("request"));
        headers.insert(
            "service".into(),
            AMQPValue::LongString(self.queue.as_str().into()),
        );
        headers.insert("endpoint".into(), text("echo"));
        headers.insert("from".into(), text(CALLER));
        headers.insert(
            "traceparent".into(),
            // A span id of zeros is invalid in W3C Trace Context.
            AMQPValue::LongString(format!("00-{trace_id}-{:016x}-01", id + 1).into()),
        );
        headers.insert("traceID".into(), AMQPValue::LongString(trace_id.into()));
        headers.insert(
            "deadline".into(),
            AMQPValue::LongString(deadline_ms.to_string().into()),
        );
        BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_delivery_mode(TRANSIENT)
            .with_message_id(format!("{id:036}").into())
            .with_reply_to(self.reply_to.clone())
            .with_user_id(self.user.clone())
            .with_expiration(DEADLINE.as_millis().to_string().into())
            .with_headers(headers)
    }
}

impl Echo for WireEcho {
    async fn call(&self) -> Result<(), String> {
        let (id, reply) = self.replies.expect();
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        self.channel
            .basic_publish(
                REQUESTS.into(),
                self.queue.clone(),
                mandatory,
                PAYLOAD,
                self.properties(id),
            )
            .await
            .map_err(|e| e.to_string())?;
        reply
            .await
            .map_err(|_| "the reply consumer ended".to_owned())
    }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}
