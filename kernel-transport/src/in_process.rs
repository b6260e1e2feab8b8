//! [`InProcessTransport`]: the embedded default, a broker inside the process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use tokio::sync::{Mutex as AsyncMutex, OwnedSemaphorePermit, Semaphore, mpsc};

use crate::error::check_name;
use crate::{
    Acker, Deliveries, Delivery, Destination, Envelope, Settle, Source, Transport, TransportError,
    topic_matches,
};

/// A broker that lives in this process: the embedded default for quick starts, unit tests and
/// laptops. Services and clients connected to the same broker talk as they would over RabbitMQ.
///
/// It keeps the wire contract's semantics: a shared work queue per service (competing
/// consumers, at most `capacity` unacked deliveries each), an instance queue per connected
/// transport, one subscription queue per (service, topic) with AMQP topic patterns
/// ([`topic_matches`](crate::topic_matches): `*` one word, `#` any number), a typed no-route
/// error for requests to services nobody consumes, and queues that disappear with their last
/// consumer. It does not survive the process. A
/// delivery dropped unsettled goes back to its queue, as on RabbitMQ.
///
/// Cloning is cheap; clones are the same broker.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_transport::TransportError> {
/// use kernel_transport::{ContentType, Destination, Envelope, InProcessBroker, Source, Transport};
///
/// let broker = InProcessBroker::new();
/// let (server, client) = (broker.connect(), broker.connect());
/// let mut requests = server.consume(Source::Service { name: "greeter", capacity: 8 }).await?;
///
/// let request = Envelope::request("greeter", "hello", ContentType::Json, "{}".into());
/// client.send(Destination::Service("greeter"), request).await?;
/// let delivery = requests.next().await.expect("a request");
/// assert_eq!(delivery.envelope.endpoint, "hello");
///
/// let nobody = Envelope::request("nobody", "hello", ContentType::Json, "{}".into());
/// assert!(client.send(Destination::Service("nobody"), nobody).await.is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct InProcessBroker {
    state: Arc<Mutex<BrokerState>>,
}

#[derive(Debug, Default)]
struct BrokerState {
    queues: HashMap<QueueKey, Arc<Queue>>,
}

/// Which queue: the three kinds of the wire contract.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum QueueKey {
    Service(String),
    Instance(String),
    Subscription { service: String, topic: String },
}

/// One queue: an unbounded FIFO whose receiver the consumers take turns on.
#[derive(Debug)]
struct Queue {
    /// Envelopes are shared: a topic's subscribers and an unsettled delivery's requeue hold
    /// the same one.
    sender: mpsc::UnboundedSender<Arc<Envelope>>,
    receiver: Arc<AsyncMutex<mpsc::UnboundedReceiver<Arc<Envelope>>>>,
    consumers: Mutex<usize>,
}

impl Queue {
    fn new() -> Arc<Self> {
        let (sender, receiver) = mpsc::unbounded_channel();
        Arc::new(Queue {
            sender,
            receiver: Arc::new(AsyncMutex::new(receiver)),
            consumers: Mutex::new(0),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a map or counter update that cannot leave it half done.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl InProcessBroker {
    /// A new, empty broker.
    pub fn new() -> Self {
        Self::default()
    }

    /// The user [`connect`](Self::connect) logs in as: `guest`, as an AMQP URL without a user
    /// does.
    pub const DEFAULT_USER: &'static str = "guest";

    /// Connects a new transport (think: a process) with its own instance queue, logged in as
    /// [`DEFAULT_USER`](Self::DEFAULT_USER).
    pub fn connect(&self) -> InProcessTransport {
        self.connect_as(Self::DEFAULT_USER)
    }

    /// Connects a new transport logged in as `user`: every envelope it sends arrives with
    /// [`user_id`](Envelope::user_id) = `user`, whatever the envelope said, as RabbitMQ
    /// enforces for the user a connection logged in as. A name over 255 bytes (more than the
    /// AMQP property holds) arrives as empty, unknown, as it would over AMQP.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), kernel_transport::TransportError> {
    /// use kernel_transport::{ContentType, Destination, Envelope, InProcessBroker, Source, Transport};
    ///
    /// let broker = InProcessBroker::new();
    /// let (server, billing) = (broker.connect(), broker.connect_as("com.example.billing"));
    /// let mut requests = server.consume(Source::Service { name: "users", capacity: 8 }).await?;
    ///
    /// let mut request = Envelope::request("users", "get", ContentType::Json, "{}".into());
    /// request.user_id = "com.example.admin".into(); // a claim: ignored
    /// billing.send(Destination::Service("users"), request).await?;
    /// let delivery = requests.next().await.expect("a request");
    /// assert_eq!(delivery.envelope.user_id, "com.example.billing");
    /// # Ok(()) }
    /// ```
    pub fn connect_as(&self, user: &str) -> InProcessTransport {
        let instance_queue = format!("instance-{}", crate::envelope::new_message_id());
        lock(&self.state)
            .queues
            .insert(QueueKey::Instance(instance_queue.clone()), Queue::new());
        InProcessTransport {
            inner: Arc::new(TransportInner {
                broker: self.clone(),
                instance_queue,
                user: user.to_owned(),
                instance_consumed: AtomicBool::new(false),
            }),
        }
    }

    fn queue(&self, key: &QueueKey) -> Option<Arc<Queue>> {
        lock(&self.state).queues.get(key).cloned()
    }

    /// The queue for `key`, declared if missing, with one more consumer counted.
    fn join(&self, key: QueueKey) -> Arc<Queue> {
        let mut state = lock(&self.state);
        let queue = Arc::clone(state.queues.entry(key).or_insert_with(Queue::new));
        *lock(&queue.consumers) += 1;
        queue
    }

    /// One consumer fewer; the last one out deletes the queue (auto-delete).
    fn leave(&self, key: &QueueKey, queue: &Arc<Queue>) {
        let mut state = lock(&self.state);
        let mut consumers = lock(&queue.consumers);
        *consumers = consumers.saturating_sub(1);
        if *consumers == 0 && state.queues.get(key).is_some_and(|q| Arc::ptr_eq(q, queue)) {
            state.queues.remove(key);
        }
    }

    fn subscribers(&self, topic: &str) -> Vec<Arc<Queue>> {
        lock(&self.state)
            .queues
            .iter()
            .filter_map(|(key, queue)| match key {
                QueueKey::Subscription { topic: pattern, .. } if topic_matches(pattern, topic) => {
                    Some(Arc::clone(queue))
                }
                _ => None,
            })
            .collect()
    }
}

/// A connection to an [`InProcessBroker`]: one "process", with its own instance queue.
///
/// Cloning is cheap; clones share the instance queue, which is deleted when the last clone is
/// dropped.
#[derive(Clone, Debug)]
pub struct InProcessTransport {
    inner: Arc<TransportInner>,
}

#[derive(Debug)]
struct TransportInner {
    broker: InProcessBroker,
    instance_queue: String,
    /// The user it is logged in as; stamped on everything it sends.
    user: String,
    instance_consumed: AtomicBool,
}

impl Drop for TransportInner {
    fn drop(&mut self) {
        lock(&self.broker.state)
            .queues
            .remove(&QueueKey::Instance(self.instance_queue.clone()));
    }
}

impl Default for InProcessTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl InProcessTransport {
    /// A transport on a new broker of its own, logged in as
    /// [`InProcessBroker::DEFAULT_USER`]: enough for a service and its clients in one process.
    /// Use [`InProcessBroker::connect`] or [`connect_as`](InProcessBroker::connect_as) for
    /// several "processes" on one broker.
    pub fn new() -> Self {
        InProcessBroker::new().connect()
    }

    /// The broker this transport is connected to.
    pub fn broker(&self) -> &InProcessBroker {
        &self.inner.broker
    }

    /// A stream over `key`'s queue that holds at most `capacity` unacked deliveries (`None`:
    /// unlimited, no acks) and leaves the queue when dropped.
    fn deliveries(&self, key: QueueKey, capacity: Option<u16>) -> Deliveries {
        let broker = self.inner.broker.clone();
        let queue = broker.join(key.clone());
        let membership = Membership {
            broker,
            key,
            queue: Arc::clone(&queue),
        };
        let permits = capacity.map(|c| Arc::new(Semaphore::new(usize::from(c.max(1)))));
        let state = (membership, permits);
        Deliveries::new(futures_util::stream::unfold(
            state,
            |(membership, permits)| async move {
                let permit = match &permits {
                    Some(permits) => Some(Arc::clone(permits).acquire_owned().await.ok()?),
                    None => None,
                };
                let envelope = membership.queue.receiver.lock().await.recv().await?;
                let acker = match permit {
                    Some(permit) => Acker::new(InProcessAck {
                        _permit: permit,
                        queue: Arc::downgrade(&membership.queue),
                        envelope: Some(Arc::clone(&envelope)),
                    }),
                    None => Acker::none(),
                };
                Some((Delivery::shared(envelope, acker), (membership, permits)))
            },
        ))
    }
}

/// A consumer's place on a queue; leaving happens on drop.
#[derive(Debug)]
struct Membership {
    broker: InProcessBroker,
    key: QueueKey,
    queue: Arc<Queue>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.broker.leave(&self.key, &self.queue);
    }
}

/// Holds the consumer's prefetch slot until the delivery is settled.
/// A delivery dropped unsettled goes back to its queue, as RabbitMQ does with a delivery
/// whose handler died.
struct InProcessAck {
    _permit: OwnedSemaphorePermit,
    queue: Weak<Queue>,
    /// The delivery, until it is settled.
    envelope: Option<Arc<Envelope>>,
}

impl InProcessAck {
    fn requeue(&mut self) {
        if let (Some(envelope), Some(queue)) = (self.envelope.take(), self.queue.upgrade()) {
            let _ = queue.sender.send(envelope);
        }
    }
}

#[async_trait::async_trait]
impl Settle for InProcessAck {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.envelope = None;
        Ok(())
    }

    async fn reject(mut self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        if requeue {
            self.requeue();
        }
        self.envelope = None;
        Ok(())
    }
}

impl Drop for InProcessAck {
    fn drop(&mut self) {
        self.requeue();
    }
}

#[async_trait::async_trait]
impl Transport for InProcessTransport {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        self.send_shared(destination, Arc::new(envelope)).await
    }

    async fn send_shared(
        &self,
        destination: Destination<'_>,
        mut envelope: Arc<Envelope>,
    ) -> Result<(), TransportError> {
        let broker = &self.inner.broker;
        // What RabbitMQ enforces: the sender is who it logged in as, whatever it claims. An
        // envelope that already says so is queued as it is, even if its sender keeps it too.
        let user = verified_user(&self.inner.user);
        if envelope.user_id != user {
            Arc::make_mut(&mut envelope).user_id = user.to_owned();
        }
        match destination {
            Destination::Service(name) => {
                check_name("service", name)?;
                let queue = broker
                    .queue(&QueueKey::Service(name.to_owned()))
                    .ok_or_else(|| TransportError::NoRoute {
                        destination: name.to_owned(),
                    })?;
                queue
                    .sender
                    .send(envelope)
                    .map_err(|_| TransportError::NoRoute {
                        destination: name.to_owned(),
                    })
            }
            Destination::Instance(name) => {
                check_name("queue", name)?;
                if let Some(queue) = broker.queue(&QueueKey::Instance(name.to_owned())) {
                    let _ = queue.sender.send(envelope);
                }
                Ok(())
            }
            Destination::Topic(topic) => {
                check_name("topic", topic)?;
                for queue in broker.subscribers(topic) {
                    let _ = queue.sender.send(Arc::clone(&envelope));
                }
                Ok(())
            }
        }
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
        match source {
            Source::Service { name, capacity } => {
                check_name("service", name)?;
                Ok(self.deliveries(QueueKey::Service(name.to_owned()), Some(capacity)))
            }
            Source::Instance => {
                if self.inner.instance_consumed.swap(true, Ordering::AcqRel) {
                    return Err(TransportError::InstanceQueueTaken);
                }
                let key = QueueKey::Instance(self.inner.instance_queue.clone());
                Ok(self.deliveries(key, None))
            }
            Source::Subscription {
                service,
                topic,
                capacity,
            } => {
                check_name("service", service)?;
                check_name("topic", topic)?;
                let key = QueueKey::Subscription {
                    service: service.to_owned(),
                    topic: topic.to_owned(),
                };
                Ok(self.deliveries(key, Some(capacity)))
            }
        }
    }

    fn instance_queue(&self) -> &str {
        &self.inner.instance_queue
    }

    fn user(&self) -> &str {
        &self.inner.user
    }
}

/// The `user_id` a receiver sees for `user`: the name, unless it is longer than the AMQP
/// property holds (255 bytes), then empty, as a receiver on RabbitMQ would read it.
fn verified_user(user: &str) -> &str {
    if user.len() <= crate::error::MAX_NAME_LEN {
        user
    } else {
        ""
    }
}
