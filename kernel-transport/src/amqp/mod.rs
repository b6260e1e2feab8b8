//! [`AmqpTransport`]: the wire contract of `docs/wire.md` on RabbitMQ, through lapin.

mod properties;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};

use crate::error::check_name;
use crate::{Acker, Deliveries, Delivery, Destination, Settle, Source, Transport, TransportError};

/// The exchange requests are published to; routing key = service name.
pub const REQUEST_EXCHANGE: &str = "h2o";
/// The exchange replies and heartbeats are published to; routing key = instance queue.
pub const DIRECT_EXCHANGE: &str = "h2o.direct";
/// The exchange publications are published to; routing key = topic.
pub const TOPIC_EXCHANGE: &str = "h2o.topic";

/// The transport on RabbitMQ (AMQP 0-9-1), implementing the wire contract of `docs/wire.md`.
///
/// On [`connect`](Self::connect) it declares the three exchanges (idempotently) and this
/// process's exclusive instance queue, and enables publisher confirms, so that a request to a
/// service with no queue comes back at once as [`TransportError::NoRoute`] (requests are
/// published `mandatory`). Service and subscription queues are declared by their consumers,
/// with manual acks and a prefetch equal to the capacity asked for. The connection recovers
/// by itself after a broker restart (lapin's automatic recovery re-declares exchanges, queues,
/// bindings and consumers); calls in flight across a recovery fail and are retried by the
/// client.
///
/// Cloning is cheap; clones share the connection, the publishing channel and the instance
/// queue.
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
    publisher: Channel,
    instance_queue: String,
    instance_consumed: AtomicBool,
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
    /// [`TransportError::ConnectionLost`] if the broker cannot be reached or refuses the login;
    /// [`TransportError::Broker`] if it refuses a declaration (e.g. an exchange of the same
    /// name but another type).
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        let instance_queue = format!("instance-{}", crate::envelope::new_message_id());
        let properties = ConnectionProperties::default()
            .with_connection_name(instance_queue.as_str().into())
            .enable_auto_recover();
        let connection = Connection::connect(url, properties).await.map_err(lost)?;
        let publisher = connection.create_channel().await.map_err(lost)?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(refused)?;
        for (name, kind) in [
            (REQUEST_EXCHANGE, ExchangeKind::Direct),
            (DIRECT_EXCHANGE, ExchangeKind::Direct),
            (TOPIC_EXCHANGE, ExchangeKind::Topic),
        ] {
            publisher
                .exchange_declare(
                    name.into(),
                    kind,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(refused)?;
        }
        let exclusive = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        declare_and_bind(
            &publisher,
            &instance_queue,
            exclusive,
            DIRECT_EXCHANGE,
            &instance_queue,
        )
        .await?;
        Ok(AmqpTransport {
            inner: Arc::new(Inner {
                connection,
                publisher,
                instance_queue,
                instance_consumed: AtomicBool::new(false),
            }),
        })
    }

    /// Closes the connection. Consumers end and later sends fail with
    /// [`TransportError::Closed`]-like errors.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if the connection was already gone.
    pub async fn close(&self) -> Result<(), TransportError> {
        self.inner
            .connection
            .close(200, "closed by its owner".into())
            .await
            .map_err(lost)
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
        let consumer = channel
            .basic_consume(
                queue.into(),
                tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(refused)?;
        let cancel_on_drop = CancelOnDrop {
            channel: channel.clone(),
            tag,
        };
        let stream = consumer.filter_map(move |delivery| {
            let _keep_consuming = &cancel_on_drop;
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
                    acker: delivery.acker,
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

/// Cancels the consumer when its stream is dropped, without closing the channel: deliveries
/// still being handled can be acked, and the channel closes when the last of them is settled.
struct CancelOnDrop {
    channel: Channel,
    tag: String,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let (channel, tag) = (self.channel.clone(), std::mem::take(&mut self.tag));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = channel
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await
                {
                    tracing::debug!(%error, "cancelling an AMQP consumer");
                }
            });
        }
    }
}

/// Settles one delivery; holds its channel open until then.
struct AmqpAck {
    acker: lapin::Acker,
    _channel: Channel,
}

#[async_trait::async_trait]
impl Settle for AmqpAck {
    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        self.acker
            .ack(BasicAckOptions::default())
            .await
            .map(drop)
            .map_err(lost)
    }

    async fn reject(self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        self.acker
            .reject(BasicRejectOptions { requeue })
            .await
            .map(drop)
            .map_err(lost)
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

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: crate::Envelope,
    ) -> Result<(), TransportError> {
        let (exchange, routing_key, what, mandatory) = match destination {
            Destination::Service(name) => (REQUEST_EXCHANGE, name, "service", true),
            Destination::Instance(queue) => (DIRECT_EXCHANGE, queue, "queue", false),
            Destination::Topic(topic) => (TOPIC_EXCHANGE, topic, "topic", false),
        };
        check_name(what, routing_key)?;
        let properties = properties::to_properties(&envelope, SystemTime::now());
        let confirm = self
            .inner
            .publisher
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                &envelope.payload,
                properties,
            )
            .await
            .map_err(lost)?;
        if !mandatory {
            return Ok(());
        }
        match confirm.await.map_err(lost)? {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                Err(TransportError::NoRoute {
                    destination: routing_key.to_owned(),
                })
            }
            Confirmation::Nack(None) => Err(TransportError::Broker(
                format!("the broker did not accept the request to {routing_key}").into(),
            )),
        }
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
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
                    return Err(TransportError::Broker(
                        "the instance queue already has its consumer".into(),
                    ));
                }
                let queue = self.inner.instance_queue.clone();
                let exclusive = QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                };
                self.consume_queue(&queue, exclusive, DIRECT_EXCHANGE, &queue, None)
                    .await
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
