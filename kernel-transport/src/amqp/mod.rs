//! [`AmqpTransport`]: the wire contract of [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md) on RabbitMQ, through kernel-amqp.

mod properties;
mod session;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::SystemTime;

use kernel_amqp::{Channel, Confirmation, Limits};

use crate::error::check_name;
use crate::{
    BrokerList, BrokerListError, Deliveries, Destination, Envelope, Settle, Source, Transport,
    TransportError, WorkQueueType,
};
use session::{Session, Shared, Subscription};

/// The exchange requests are published to; routing key = service name.
pub const REQUEST_EXCHANGE: &str = "h2o";
/// The exchange replies and heartbeats are published to; routing key = instance queue.
pub const DIRECT_EXCHANGE: &str = "h2o.direct";
/// The exchange publications are published to; routing key = topic.
pub const TOPIC_EXCHANGE: &str = "h2o.topic";

/// The most messages the broker keeps in an instance queue; older ones are dropped first.
pub const INSTANCE_QUEUE_MAX_LENGTH: i32 = 10_000;
/// The most instance-queue deliveries (replies, pongs) held in memory, not yet taken by their
/// reader; more are dropped and counted ([`AmqpTransport::dropped`]).
pub const INSTANCE_BUFFER: usize = 1024;

/// The transport on RabbitMQ (AMQP 0-9-1), implementing the wire contract of [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md).
///
/// On [`connect`](Self::connect) it declares the three exchanges (idempotently) and this
/// process's exclusive instance queue. Requests go out on a channel of their own, published
/// `mandatory` and without publisher confirms: `send` returns once the request is queued for
/// the socket, and a request to a service with no queue comes back from the broker
/// (`basic.return`) before any reply could, as a [returned](crate::Delivery::is_returned)
/// delivery on the instance queue, which the client turns into
/// [`TransportError::NoRoute`]. Replies, pongs and publications go out on a second channel,
/// also without confirms: nobody waits for them. Service and subscription queues are declared by
/// their consumers, each on its own channel, with manual acks and a prefetch equal to the
/// capacity asked for.
///
/// It speaks AMQP through kernel-amqp, which reads whatever a broker user can publish: a
/// delivery that cannot be read (properties that are not UTF-8 where the contract needs text,
/// header tables nested too deep, a body over [`Limits::max_body`]) is rejected without requeue
/// and counted ([`rejected`](Self::rejected)); the connection carries on. A message this
/// process would send that cannot be carried (properties larger than a frame) fails with
/// [`TransportError::TooLarge`] before anything is sent.
///
/// Everything it publishes (requests, replies, pongs, publications) carries the AMQP `user_id`
/// property set to the user it logged in as ([`Transport::user`]: the URL's, or `guest`),
/// which RabbitMQ checks against the login; every delivery's `user_id` becomes the envelope's
/// [`user_id`](Envelope::user_id). So a receiver knows which broker user sent a message, and
/// no other user can claim to be it ([`docs/security.md`](https://github.com/kernel-platform/kernel/blob/main/docs/security.md)).
///
/// It connects to one broker, or to any live node of a cluster given as a [`BrokerList`]: it
/// starts at a random node and tries the others in list order, wrapping round.
///
/// The connection recovers by itself: when it is lost, the transport reconnects, starting at
/// the next node of the list, with capped back-off (200 ms doubling to 5 s) after each round
/// in which no node answered, for as long as it is not closed, however long the brokers are
/// away; then it re-declares the exchanges and the instance queue under the same name on the
/// node it reached, declares and binds again every queue it consumes, and resumes every
/// consumer into the same [`Deliveries`] stream. A consumer whose queue the broker cancelled
/// (a classic work queue whose node failed) declares and consumes it again after 1 s. What
/// the work queues are on a cluster is [`WorkQueueType`]'s choice. Only what retrying cannot fix
/// ends it (a refused login, an untrusted certificate). While the connection is being
/// recovered, or the broker has blocked publishing (a memory or disk alarm), a send fails at
/// once with [`TransportError::ConnectionLost`]: calls fail fast instead of using up their
/// deadlines. A send that finds its connection lost midway waits up to 2 s for the next one
/// and is sent once more. Replies to calls in flight across a recovery may be lost; the
/// client's attempt timeout and retries cover them.
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
/// assert_eq!(transport.user(), "guest");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AmqpTransport {
    shared: Arc<Shared>,
    /// The broker user the connection logs in as: the `user_id` of everything it publishes.
    user: Arc<str>,
    instance_consumed: Arc<AtomicBool>,
    /// The type of the work queues this transport's services declare.
    work_queues: WorkQueueType,
}

/// Settings for an [`AmqpTransport`]: [`AmqpTransport::builder`].
#[must_use = "a builder does nothing until `connect` is awaited"]
#[derive(Clone)]
pub struct AmqpTransportBuilder {
    urls: String,
    limits: Limits,
    work_queues: WorkQueueType,
}

impl std::fmt::Debug for AmqpTransportBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransportBuilder")
            .field("urls", &crate::brokers::redact_urls(&self.urls))
            .field("limits", &self.limits)
            .field("work_queues", &self.work_queues)
            .finish()
    }
}

impl AmqpTransportBuilder {
    /// Limits on received messages (default: [`Limits::default`]).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The type of the work queues this transport's services declare (default:
    /// [`WorkQueueType::Classic`]). Every instance of a service must use the same.
    pub fn work_queues(mut self, work_queues: WorkQueueType) -> Self {
        self.work_queues = work_queues;
        self
    }

    /// Connects to a live node of the list and declares the exchanges and this process's
    /// instance queue there.
    ///
    /// # Errors
    /// As for [`AmqpTransport::connect`].
    pub async fn connect(self) -> Result<AmqpTransport, TransportError> {
        let instance_queue = format!("instance-{}", crate::envelope::new_message_id());
        let nodes = node_options(&self.urls, &instance_queue, self.limits)?;
        let user = Arc::<str>::from(nodes[0].user());
        let shared = Shared::connect(nodes, instance_queue).await?;
        Ok(AmqpTransport {
            shared,
            user,
            instance_consumed: Arc::new(AtomicBool::new(false)),
            work_queues: self.work_queues,
        })
    }
}

/// Each node's connection options, checked: the same user (at most 255 bytes, the `user_id`
/// property) and the same virtual host on every node.
fn node_options(
    urls: &str,
    instance_queue: &str,
    limits: Limits,
) -> Result<Vec<kernel_amqp::ConnectOptions>, BrokerListError> {
    let brokers = BrokerList::parse(urls)?;
    let mut nodes: Vec<kernel_amqp::ConnectOptions> = Vec::with_capacity(brokers.len());
    for (index, url) in brokers.urls().enumerate() {
        let position = index + 1;
        let options = kernel_amqp::ConnectOptions::from_url(url)
            .map_err(|error| BrokerListError::Invalid {
                position,
                url: crate::redact_url(url),
                reason: error.to_string(),
            })?
            .connection_name(instance_queue)
            .limits(limits);
        if options.user().len() > crate::error::MAX_NAME_LEN {
            return Err(BrokerListError::Invalid {
                position,
                url: crate::redact_url(url),
                reason: format!(
                    "the user name is {} bytes long; the AMQP user_id property holds at most {}",
                    options.user().len(),
                    crate::error::MAX_NAME_LEN
                ),
            });
        }
        if let Some(first) = nodes.first() {
            if options.user() != first.user() {
                return Err(BrokerListError::MixedUsers {
                    position,
                    user: options.user().to_owned(),
                    first: first.user().to_owned(),
                });
            }
            if options.vhost() != first.vhost() {
                return Err(BrokerListError::MixedVirtualHosts {
                    position,
                    vhost: options.vhost().to_owned(),
                    first: first.vhost().to_owned(),
                });
            }
        }
        nodes.push(options);
    }
    Ok(nodes)
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("instance_queue", &self.shared.instance_queue)
            .field("user", &self.user)
            .field("connected", &self.shared.is_up())
            .finish()
    }
}

impl AmqpTransport {
    /// Connects to the broker at `url` (`amqp://user:password@host:port/vhost`, or `amqps://`
    /// with TLS), or to any live node of a cluster given as a comma-separated list of such URLs
    /// ([`BrokerList`]), declares the exchanges and this process's instance queue, with the
    /// default [`Limits`] on received messages and classic work queues.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if no node can be reached (after retrying for about
    /// 30 s) or a node refuses the login; [`TransportError::Broker`] if it refuses a
    /// declaration (e.g. an exchange of the same name but another type);
    /// [`TransportError::InvalidBrokerList`] for a list that is not one (its text never shows
    /// a password), whose user name is longer than the 255 bytes the `user_id` property
    /// holds, or whose nodes are reached as different users or virtual hosts.
    pub async fn connect(url: &str) -> Result<Self, TransportError> {
        Self::builder(url).connect().await
    }

    /// As [`connect`](Self::connect), with `limits` on received messages.
    ///
    /// # Errors
    /// As for [`connect`](Self::connect).
    pub async fn connect_with(url: &str, limits: Limits) -> Result<Self, TransportError> {
        Self::builder(url).limits(limits).connect().await
    }

    /// A transport to the broker (or the cluster's nodes) at `urls`, with more settings than
    /// [`connect`](Self::connect) takes.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kernel_transport::TransportError> {
    /// use kernel_transport::{AmqpTransport, WorkQueueType};
    ///
    /// let transport = AmqpTransport::builder(
    ///     "amqp://u:p@rabbit-1:5672/%2f,amqp://u:p@rabbit-2:5672/%2f,amqp://u:p@rabbit-3:5672/%2f",
    /// )
    /// .work_queues(WorkQueueType::Quorum)
    /// .connect()
    /// .await?;
    /// println!("connected to {:?}", transport.node());
    /// # Ok(()) }
    /// ```
    pub fn builder(urls: &str) -> AmqpTransportBuilder {
        AmqpTransportBuilder {
            urls: urls.to_owned(),
            limits: Limits::default(),
            work_queues: WorkQueueType::default(),
        }
    }

    /// The node this transport is connected to now (`host:port`), or `None` while it
    /// reconnects or once it is closed.
    pub fn node(&self) -> Option<String> {
        self.shared.node()
    }

    /// Closes the connection, for every clone. Consumers end; later sends and consumes fail
    /// with [`TransportError::Closed`].
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if the connection was already gone.
    pub async fn close(&self) -> Result<(), TransportError> {
        self.shared.close().await
    }

    /// Deliveries rejected without requeue because they could not be read (see the type's
    /// documentation), since this transport connected.
    pub fn rejected(&self) -> u64 {
        self.shared.rejected.load(Ordering::Relaxed)
    }

    /// Instance-queue deliveries dropped because [`INSTANCE_BUFFER`] of them were waiting to
    /// be read, since this transport connected.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped()
    }

    /// Publishes `envelope`; if the connection is lost meanwhile, waits for the recovery and
    /// publishes once more. The caller bounds the whole with its deadline.
    async fn publish(
        &self,
        requests: bool,
        exchange: &str,
        routing_key: &str,
        envelope: &Envelope,
    ) -> Result<Confirmation, TransportError> {
        let properties = properties::to_properties(envelope, &self.user, SystemTime::now());
        let session = self.shared.session_now()?;
        let payload = &envelope.payload;
        let publish = async |session: &Session| {
            let channel = if requests {
                &session.requests
            } else {
                &session.answers
            };
            channel
                .basic_publish(exchange, routing_key, requests, &properties, payload)
                .await
        };
        match publish(&session).await {
            Ok(confirmation) => Ok(confirmation),
            Err(error) if session::is_session_error(&error) => {
                self.shared.abandon(&session, &error).await;
                let session = self
                    .shared
                    .next_session(&session, session::RIDE_THROUGH)
                    .await?;
                publish(&session).await.map_err(session::transport_error)
            }
            Err(error) => Err(session::transport_error(error)),
        }
    }

    async fn consume_queue(
        &self,
        subscription: Subscription,
    ) -> Result<Deliveries, TransportError> {
        let consuming = session::Consuming::start(self.shared.clone(), subscription).await?;
        Ok(Deliveries::new(consuming.into_stream()))
    }
}

/// Settles one delivery on the channel it came on, and holds that channel open until then. A
/// delivery dropped unsettled (its handler's task died) is rejected back to its queue, so that
/// it does not hold a prefetch slot until the channel closes.
struct AmqpAck {
    channel: Channel,
    tag: Option<u64>,
}

#[async_trait::async_trait]
impl Settle for AmqpAck {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        match self.tag.take() {
            Some(tag) => self
                .channel
                .basic_ack(tag, false)
                .await
                .map_err(session::transport_error),
            None => Ok(()),
        }
    }

    async fn reject(mut self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        match self.tag.take() {
            Some(tag) => self
                .channel
                .basic_reject(tag, requeue)
                .await
                .map_err(session::transport_error),
            None => Ok(()),
        }
    }
}

impl Drop for AmqpAck {
    fn drop(&mut self) {
        if let Some(tag) = self.tag.take() {
            self.channel.basic_reject_detached(tag, true);
        }
    }
}

impl AmqpTransport {
    /// Publishes `envelope` (encoded from the reference: nothing is copied) to `destination`.
    async fn send_ref(
        &self,
        destination: Destination<'_>,
        envelope: &Envelope,
    ) -> Result<(), TransportError> {
        self.shared.check_open()?;
        let (exchange, routing_key, what) = match destination {
            Destination::Service(name) => (REQUEST_EXCHANGE, name, "service"),
            Destination::Instance(queue) => (DIRECT_EXCHANGE, queue, "queue"),
            Destination::Topic(topic) => (TOPIC_EXCHANGE, topic, "topic"),
        };
        check_name(what, routing_key)?;
        let requests = exchange == REQUEST_EXCHANGE;
        match self
            .publish(requests, exchange, routing_key, envelope)
            .await?
        {
            Confirmation::Ack | Confirmation::NotRequested => Ok(()),
            Confirmation::Returned => Err(TransportError::NoRoute {
                destination: routing_key.to_owned(),
            }),
            Confirmation::Nack => Err(TransportError::Broker(
                format!("the broker did not accept the request to {routing_key}").into(),
            )),
        }
    }
}

#[async_trait::async_trait]
impl Transport for AmqpTransport {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.send_ref(destination, &envelope).await
    }

    async fn send_shared(
        &self,
        destination: Destination<'_>,
        envelope: Arc<Envelope>,
    ) -> Result<(), TransportError> {
        self.send_ref(destination, &envelope).await
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
        self.shared.check_open()?;
        match source {
            Source::Service { name, capacity } => {
                check_name("service", name)?;
                self.consume_queue(Subscription::service(name, capacity, self.work_queues))
                    .await
            }
            Source::Instance => {
                if self.instance_consumed.swap(true, Ordering::AcqRel) {
                    return Err(TransportError::InstanceQueueTaken);
                }
                let queue = self.shared.instance_queue.clone();
                let consumed = self.consume_queue(Subscription::instance(&queue)).await;
                if consumed.is_err() {
                    // A transient failure must not lock the instance queue out for good.
                    self.instance_consumed.store(false, Ordering::Release);
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
                self.consume_queue(Subscription::topic(&queue, topic, capacity))
                    .await
            }
        }
    }

    fn instance_queue(&self) -> &str {
        &self.shared.instance_queue
    }

    fn user(&self) -> &str {
        &self.user
    }

    fn status(&self) -> Result<(), TransportError> {
        self.shared.check_open()?;
        self.shared.session_now().map(drop)
    }
}

/// The queue a service's subscription to a topic is consumed from.
pub fn subscription_queue(service: &str, topic: &str) -> String {
    format!("{service}:{topic}")
}

/// How many deliveries were rejected as unreadable; logged at powers of two so that a flood
/// of them does not flood the log too.
fn count_rejected(counter: &AtomicU64, reason: &str) {
    let n = counter.fetch_add(1, Ordering::Relaxed) + 1;
    if n.is_power_of_two() {
        tracing::warn!(
            reason,
            rejected = n,
            "rejected an unreadable delivery without requeue"
        );
    } else {
        tracing::debug!(reason, rejected = n, "rejected an unreadable delivery");
    }
}
