//! [`AmqpTransport`]: the wire contract of `docs/wire.md` on RabbitMQ, through lapin.

mod properties;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};

use crate::error::check_name;
use crate::{
    Acker, Deliveries, Delivery, Destination, Envelope, Settle, Source, Transport, TransportError,
};

/// The exchange requests are published to; routing key = service name.
pub const REQUEST_EXCHANGE: &str = "h2o";
/// The exchange replies and heartbeats are published to; routing key = instance queue.
pub const DIRECT_EXCHANGE: &str = "h2o.direct";
/// The exchange publications are published to; routing key = topic.
pub const TOPIC_EXCHANGE: &str = "h2o.topic";

/// The first pause before reconnecting after the connection is lost.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest pause between reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Reconnection attempts before the connection is given up (about 30 s in all).
const RECONNECT_ATTEMPTS: usize = 10;

/// The transport on RabbitMQ (AMQP 0-9-1), implementing the wire contract of `docs/wire.md`.
///
/// On [`connect`](Self::connect) it declares the three exchanges (idempotently) and this
/// process's exclusive instance queue. Requests go out on a channel in publisher-confirm mode,
/// published `mandatory`, so that a request to a service with no queue comes back at once as
/// [`TransportError::NoRoute`]. Replies, pongs and publications go out on a second channel
/// without confirms: nobody waits for them. Service and subscription queues are declared by
/// their consumers, each on its own channel, with manual acks and a prefetch equal to the
/// capacity asked for.
///
/// The connection recovers by itself after a broker restart: lapin's automatic recovery
/// reconnects (for about 30 s) and re-declares exchanges, queues, bindings and consumers. A
/// send that fails because a recovery is under way waits for it and is sent once more (the
/// caller bounds the wait with its deadline). Replies to calls in flight across a recovery
/// may be lost; the client's attempt timeout and retries cover them.
///
/// Cloning is cheap; clones share the connection, the channels and the instance queue.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_transport::TransportError> {
/// use kernel_transport::{AmqpTransport, Transport};
///
/// let transport = AmqpTransport::connect("amqp://guest:guest@127.0.0.1:5672/%2f").await?;
/// assert!(transport.instance_queue().starts_with("instance-"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AmqpTransport {
    inner: Arc<Inner>,
}

struct Inner {
    connection: Connection,
    /// Requests: confirm mode, published `mandatory`, so that a missing route comes back.
    requests: Channel,
    /// Replies, pongs and publications: no confirms. (A confirm never awaited would stay in
    /// lapin's memory until the channel closes.)
    answers: Channel,
    instance_queue: String,
    instance_consumed: AtomicBool,
    closed: AtomicBool,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("instance_queue", &self.inner.instance_queue)
            .field("connected", &self.inner.connection.status().connected())
            .finish()
    }
}

impl AmqpTransport {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`), declares the
    /// exchanges and this process's instance queue.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if the broker cannot be reached (after retrying for
    /// about 30 s) or refuses the login; [`TransportError::Broker`] if it refuses a
    /// declaration (e.g. an exchange of the same name but another type).
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        let instance_queue = format!("instance-{}", crate::envelope::new_message_id());
        let properties = ConnectionProperties::default()
            .with_connection_name(instance_queue.as_str().into())
            .configure_backoff(|backoff| {
                backoff
                    .with_min_delay(RECONNECT_MIN_DELAY)
                    .with_max_delay(RECONNECT_MAX_DELAY)
                    .with_max_times(RECONNECT_ATTEMPTS)
            })
            .enable_auto_recover();
        let connection = Connection::connect(url, properties).await.map_err(lost)?;
        let requests = connection.create_channel().await.map_err(lost)?;
        requests
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(refused)?;
        let answers = connection.create_channel().await.map_err(lost)?;
        for (name, kind) in [
            (REQUEST_EXCHANGE, ExchangeKind::Direct),
            (DIRECT_EXCHANGE, ExchangeKind::Direct),
            (TOPIC_EXCHANGE, ExchangeKind::Topic),
        ] {
            let durable = ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            };
            requests
                .exchange_declare(name.into(), kind, durable, FieldTable::default())
                .await
                .map_err(refused)?;
        }
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        declare_and_bind(
            &requests,
            &instance_queue,
            exclusive,
            DIRECT_EXCHANGE,
            &instance_queue,
        )
        .await?;
        Ok(AmqpTransport {
            inner: Arc::new(Inner {
                connection,
                requests,
                answers,
                instance_queue,
                instance_consumed: AtomicBool::new(false),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Closes the connection, for every clone. Consumers end; later sends and consumes fail
    /// with [`TransportError::Closed`].
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if the connection was already gone.
    pub async fn close(&self) -> Result<(), TransportError> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner
            .connection
            .close(200, "closed by its owner".into())
            .await
            .map_err(lost)
    }

    fn check_open(&self) -> Result<(), TransportError> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    /// Publishes `envelope`; if the channel is recovering, waits for the recovery and publishes
    /// once more. The caller bounds the whole with its deadline.
    async fn publish(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        envelope: &Envelope,
    ) -> Result<PublisherConfirm, TransportError> {
        let publish = || {
            let options = BasicPublishOptions {
                mandatory,
                ..Default::default()
            };
            let properties = properties::to_properties(envelope, SystemTime::now());
            channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                &envelope.payload,
                properties,
            )
        };
        match publish().await {
            Ok(confirm) => Ok(confirm),
            Err(error) if error.can_be_recovered() => {
                channel.wait_for_recovery(error).await.map_err(lost)?;
                publish().await.map_err(lost)
            }
            Err(error) => Err(lost(error)),
        }
    }

    /// Opens a channel, sets its prefetch, declares and binds `queue`, and consumes it.
    async fn consume_queue(
        &self,
        queue: &str,
        declare: QueueDeclareOptions,
        exchange: &str,
        routing_key: &str,
        prefetch: Option<u16>,
    ) -> Result<Deliveries, TransportError> {
        let channel = self.inner.connection.create_channel().await.map_err(lost)?;
        if let Some(prefetch) = prefetch {
            channel
                .basic_qos(prefetch.max(1), BasicQosOptions::default())
                .await
                .map_err(refused)?;
        }
        declare_and_bind(&channel, queue, declare, exchange, routing_key).await?;
        let no_ack = prefetch.is_none();
        let tag = format!(
            "{}.{}",
            self.inner.instance_queue,
            crate::envelope::new_message_id()
        );
        let options = BasicConsumeOptions {
            no_ack,
            ..Default::default()
        };
        // Dropping the consumer (with the stream) cancels it; the channel stays open while a
        // delivery taken from it is unsettled, so in-flight work can still be acked.
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(refused)?;
        let stream = consumer.filter_map(move |delivery| {
            let delivery = match delivery {
                Ok(delivery) => delivery,
                Err(error) => {
                    tracing::warn!(%error, "AMQP consumer error");
                    return std::future::ready(None);
                }
            };
            let envelope = properties::to_envelope(&delivery.properties, delivery.data);
            let acker = if no_ack {
                Acker::none()
            } else {
                Acker::new(AmqpAck {
                    acker: Some(delivery.acker),
                    _channel: channel.clone(),
                })
            };
            std::future::ready(Some(Delivery::new(envelope, acker)))
        });
        Ok(Deliveries::new(stream))
    }
}

async fn declare_and_bind(
    channel: &Channel,
    queue: &str,
    options: QueueDeclareOptions,
    exchange: &str,
    routing_key: &str,
) -> Result<(), TransportError> {
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .map_err(refused)?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(refused)
}

/// Settles one delivery, and holds its channel open until then. A delivery dropped unsettled
/// (its handler's task died) is rejected back to its queue, so that it does not hold a
/// prefetch slot until the channel closes.
struct AmqpAck {
    acker: Option<lapin::Acker>,
    _channel: Channel,
}

#[async_trait::async_trait]
impl Settle for AmqpAck {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        match self.acker.take() {
            Some(acker) => acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(lost),
            None => Ok(()),
        }
    }

    async fn reject(mut self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        match self.acker.take() {
            Some(acker) => acker
                .reject(BasicRejectOptions { requeue })
                .await
                .map(drop)
                .map_err(lost),
            None => Ok(()),
        }
    }
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = acker.reject(BasicRejectOptions { requeue: true }).await;
            });
        }
    }
}

/// A lapin error on a path where it means the connection or channel is unusable.
fn lost(error: lapin::Error) -> TransportError {
    TransportError::ConnectionLost(Box::new(error))
}

/// A lapin error on a declaration: the broker's refusal if it is one, else a lost connection.
fn refused(error: lapin::Error) -> TransportError {
    if matches!(error.kind(), lapin::ErrorKind::ProtocolError(_)) {
        TransportError::Broker(Box::new(error))
    } else {
        lost(error)
    }
}

/// Whether a confirm's returned message is `envelope` itself. lapin pairs a `basic.return`
/// with the next confirm to complete, which under batched acks need not be this message's:
/// only a return of this very message means that it had no route.
fn returned_is(returned: Option<&lapin::message::BasicReturnMessage>, envelope: &Envelope) -> bool {
    returned.is_some_and(|message| {
        message
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
            == Some(envelope.message_id.as_str())
    })
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.check_open()?;
        let (exchange, routing_key, what) = match destination {
            Destination::Service(name) => (REQUEST_EXCHANGE, name, "service"),
            Destination::Instance(queue) => (DIRECT_EXCHANGE, queue, "queue"),
            Destination::Topic(topic) => (TOPIC_EXCHANGE, topic, "topic"),
        };
        check_name(what, routing_key)?;
        if exchange != REQUEST_EXCHANGE {
            let answers = &self.inner.answers;
            self.publish(answers, exchange, routing_key, false, &envelope)
                .await?;
            return Ok(());
        }
        let requests = &self.inner.requests;
        let confirm = self
            .publish(requests, exchange, routing_key, true, &envelope)
            .await?;
        match confirm.await.map_err(lost)? {
            Confirmation::Ack(returned) if returned_is(returned.as_ref(), &envelope) => {
                Err(TransportError::NoRoute {
                    destination: routing_key.to_owned(),
                })
            }
            Confirmation::Nack(returned) if returned_is(returned.as_ref(), &envelope) => {
                Err(TransportError::NoRoute {
                    destination: routing_key.to_owned(),
                })
            }
            Confirmation::Ack(_) | Confirmation::NotRequested => Ok(()),
            Confirmation::Nack(_) => Err(TransportError::Broker(
                format!("the broker did not accept the request to {routing_key}").into(),
            )),
        }
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
        self.check_open()?;
        match source {
            Source::Service { name, capacity } => {
                check_name("service", name)?;
                let shared = QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                };
                self.consume_queue(name, shared, REQUEST_EXCHANGE, name, Some(capacity))
                    .await
            }
            Source::Instance => {
                if self.inner.instance_consumed.swap(true, Ordering::AcqRel) {
                    return Err(TransportError::InstanceQueueTaken);
                }
                let queue = self.inner.instance_queue.clone();
                let exclusive = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                };
                let consumed = self
                    .consume_queue(&queue, exclusive, DIRECT_EXCHANGE, &queue, None)
                    .await;
                if consumed.is_err() {
                    // A transient failure must not lock the instance queue out for good.
                    self.inner.instance_consumed.store(false, Ordering::Release);
                }
                consumed
            }
            Source::Subscription {
                service,
                topic,
                capacity,
            } => {
                check_name("service", service)?;
                check_name("topic", topic)?;
                let queue = subscription_queue(service, topic);
                check_name("queue", &queue)?;
                let shared = QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                };
                self.consume_queue(&queue, shared, TOPIC_EXCHANGE, topic, Some(capacity))
                    .await
            }
        }
    }

    fn instance_queue(&self) -> &str {
        &self.inner.instance_queue
    }
}

/// The queue a service's subscription to a topic is consumed from.
pub fn subscription_queue(service: &str, topic: &str) -> String {
    format!("{service}:{topic}")
}
