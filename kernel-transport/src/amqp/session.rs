//! One connection's worth of state ([`Session`]), the task that replaces it when it is lost,
//! and the consumers that follow it from one session to the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use futures_util::StreamExt;
use kernel_amqp::{
    Channel, ConnectOptions, Connection, Consumer, ExchangeKind, FieldTable, FieldValue,
    QueueOptions, Returns,
};
use tokio::sync::watch;

use super::{
    AmqpAck, DIRECT_EXCHANGE, INSTANCE_BUFFER, INSTANCE_QUEUE_MAX_LENGTH, REQUEST_EXCHANGE,
    TOPIC_EXCHANGE, count_rejected, properties,
};
use crate::{Acker, Delivery, QUORUM_QUEUE_EXPIRES, TransportError, WorkQueueType};

/// The first pause before reconnecting after the connection is lost.
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(200);
/// The longest pause between reconnection attempts.
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(5);
/// Attempts at the first connection before `connect` gives up (about 30 s in all). Once
/// connected, the transport reconnects for as long as it is not closed.
const CONNECT_ATTEMPTS: usize = 10;
/// How long a send that found its session lost waits for the next one before it fails with
/// `ConnectionLost`: a brief reconnect is ridden through, a broker outage fails fast.
pub(super) const RIDE_THROUGH: Duration = Duration::from_secs(2);
/// Returned requests waiting for the instance queue's consumer; more are dropped (their calls
/// then wait for their attempt timeout, as for a lost reply).
const RETURNS_BUFFER: usize = 256;
/// The pause before consuming again when the broker cancelled a consumer on a live connection.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// A connection with its two publishing channels, exchanges and instance queue declared.
pub(super) struct Session {
    pub(super) connection: Connection,
    /// The node it is connected to, `host:port`.
    node: String,
    /// Requests: published `mandatory`, so that a missing route comes back, on `returns`.
    /// No confirm mode: the broker's `basic.return` for an unroutable request arrives
    /// before any reply could, so a call awaits its reply at once instead of a confirmation
    /// first (one frame less per call for the broker to send and for us to read).
    pub(super) requests: Channel,
    /// Requests of ours the broker returned, until the instance queue's consumer takes them
    /// to hand them back as returned deliveries.
    returns: std::sync::Mutex<Option<Returns>>,
    /// Replies, pongs and publications: no confirms.
    pub(super) answers: Channel,
}

impl Session {
    fn take_returns(&self) -> Option<Returns> {
        self.returns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

#[derive(Clone)]
enum State {
    Up(Arc<Session>),
    Recovering,
    /// Closed by its owner (`None`) or given up (the last error).
    Down(Option<String>),
}

/// What every clone of the transport and every consumer task share.
pub(super) struct Shared {
    pub(super) instance_queue: String,
    state: watch::Receiver<State>,
    closed: AtomicBool,
    pub(super) rejected: AtomicU64,
    /// Instance deliveries dropped by connections before the current one.
    dropped_before: AtomicU64,
}

impl Shared {
    /// Connects (retrying for about 30 s while the broker cannot be reached) and starts the
    /// task that reconnects whenever the connection is lost.
    pub(super) async fn connect(
        nodes: Vec<ConnectOptions>,
        instance_queue: String,
    ) -> Result<Arc<Shared>, TransportError> {
        // A random first node spreads a fleet's connections over the cluster.
        let start = first_node(nodes.len());
        let (session, at) = open_with_retries(
            &nodes,
            start,
            &instance_queue,
            Some(CONNECT_ATTEMPTS),
            || true,
        )
        .await?;
        let (state_tx, state) = watch::channel(State::Up(session));
        let shared = Arc::new(Shared {
            instance_queue,
            state,
            closed: AtomicBool::new(false),
            rejected: AtomicU64::new(0),
            dropped_before: AtomicU64::new(0),
        });
        tokio::spawn(supervise(Arc::downgrade(&shared), nodes, at, state_tx));
        Ok(shared)
    }

    /// The node of the current session, `host:port`, if there is one.
    pub(super) fn node(&self) -> Option<String> {
        match &*self.state.borrow() {
            State::Up(session) if !session.connection.is_closed() => Some(session.node.clone()),
            _ => None,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        matches!(&*self.state.borrow(), State::Up(s) if !s.connection.is_closed())
    }

    pub(super) fn check_open(&self) -> Result<(), TransportError> {
        if self.closed.load(Ordering::Acquire) {
            Err(TransportError::Closed)
        } else {
            Ok(())
        }
    }

    pub(super) fn dropped(&self) -> u64 {
        let current = match &*self.state.borrow() {
            State::Up(session) => session.connection.dropped_deliveries(),
            _ => 0,
        };
        self.dropped_before.load(Ordering::Relaxed) + current
    }

    /// The current session, waiting for a recovery under way (as long as it takes): for
    /// consumers, which resume when the broker is back.
    pub(super) async fn session(&self) -> Result<Arc<Session>, TransportError> {
        self.wait(|_| true).await
    }

    /// The current session, or `ConnectionLost` at once while the connection is being
    /// recovered or the broker has blocked publishing (a resource alarm): for sends, so that
    /// calls fail fast while the broker is away instead of using up their deadlines.
    pub(super) fn session_now(&self) -> Result<Arc<Session>, TransportError> {
        match &*self.state.borrow() {
            State::Up(session) if session.connection.is_blocked() => {
                Err(TransportError::ConnectionLost(
                    "the broker has blocked publishing (a resource alarm)".into(),
                ))
            }
            State::Up(session) => Ok(session.clone()),
            State::Recovering => Err(TransportError::ConnectionLost(
                "reconnecting to the broker".into(),
            )),
            State::Down(reason) => Err(down(reason)),
        }
    }

    /// The session after `old`, waiting for the recovery at most `wait`.
    pub(super) async fn next_session(
        &self,
        old: &Arc<Session>,
        wait: Duration,
    ) -> Result<Arc<Session>, TransportError> {
        tokio::time::timeout(wait, self.wait(|session| !Arc::ptr_eq(session, old)))
            .await
            .unwrap_or_else(|_| {
                Err(TransportError::ConnectionLost(
                    "reconnecting to the broker".into(),
                ))
            })
    }

    async fn wait(
        &self,
        acceptable: impl Fn(&Arc<Session>) -> bool,
    ) -> Result<Arc<Session>, TransportError> {
        let mut state = self.state.clone();
        let state = state
            .wait_for(|state| match state {
                State::Up(session) => acceptable(session),
                State::Recovering => false,
                State::Down(_) => true,
            })
            .await
            .map_err(|_| TransportError::Closed)?;
        match &*state {
            State::Up(session) => Ok(session.clone()),
            State::Down(reason) => Err(down(reason)),
            // `wait_for` returns only a state it accepted.
            State::Recovering => Err(TransportError::Closed),
        }
    }

    /// Gives up `session` after an error that leaves its channels unusable (the broker closed
    /// one, or the connection is lost): closing it makes the supervisor open a new one.
    pub(super) async fn abandon(&self, session: &Session, error: &kernel_amqp::Error) {
        tracing::warn!(%error, "AMQP session unusable; reconnecting");
        let _ = session.connection.close().await;
    }

    pub(super) async fn close(&self) -> Result<(), TransportError> {
        self.closed.store(true, Ordering::Release);
        let state = self.state.borrow().clone();
        match state {
            State::Up(session) => session.connection.close().await.map_err(transport_error),
            State::Recovering | State::Down(_) => Ok(()),
        }
    }
}

/// The error for a transport that is down: closed by its owner (`None`), or given up.
fn down(reason: &Option<String>) -> TransportError {
    match reason {
        None => TransportError::Closed,
        Some(reason) => TransportError::ConnectionLost(reason.clone().into()),
    }
}

/// Whether an error on a session's shared channel means the session must be replaced.
pub(super) fn is_session_error(error: &kernel_amqp::Error) -> bool {
    error.is_connection_error() || matches!(error, kernel_amqp::Error::ChannelClosed { .. })
}

/// A kernel-amqp error as the transport reports it.
pub(super) fn transport_error(error: kernel_amqp::Error) -> TransportError {
    use kernel_amqp::Error as E;
    match error {
        E::TooLarge { what, size, limit } => TransportError::TooLarge { what, size, limit },
        E::ShortStringTooLong { len } => TransportError::TooLarge {
            what: "a property",
            size: len as u64,
            limit: 255,
        },
        E::InvalidUrl(text) => TransportError::InvalidUrl(text),
        E::ChannelClosed { code, .. } if code != 0 => TransportError::Broker(Box::new(error)),
        error => TransportError::ConnectionLost(Box::new(error)),
    }
}

/// Where a fresh transport starts in its list of nodes: anywhere, at random.
fn first_node(nodes: usize) -> usize {
    usize::try_from(uuid::Uuid::new_v4().as_u128() % nodes.max(1) as u128).unwrap_or(0)
}

/// Opens a session on the first node that accepts one, trying `nodes` in order from `start`
/// (wrapping round), and returns it with the node's index. A round in which every node failed
/// with what may pass (unreachable, restarting) is followed by a pause (capped exponential
/// back-off) and another round: `attempts` rounds, or for ever while `wanted()` says so. What
/// retrying cannot fix (a refused login) on one node does not stop the round; if no node
/// accepted, it is the error returned.
async fn open_with_retries(
    nodes: &[ConnectOptions],
    start: usize,
    instance_queue: &str,
    attempts: Option<usize>,
    wanted: impl Fn() -> bool,
) -> Result<(Arc<Session>, usize), TransportError> {
    let backoff = ExponentialBuilder::default()
        .with_min_delay(RECONNECT_MIN_DELAY)
        .with_max_delay(RECONNECT_MAX_DELAY)
        .with_jitter();
    let mut backoff = match attempts {
        Some(attempts) => backoff.with_max_times(attempts),
        None => backoff.without_max_times(),
    }
    .build();
    loop {
        let mut permanent = None;
        let mut last = None;
        for at in (0..nodes.len()).map(|i| (start + i) % nodes.len()) {
            if !wanted() {
                return Err(TransportError::Closed);
            }
            let options = &nodes[at];
            match open(options, instance_queue).await {
                Ok(session) => return Ok((Arc::new(session), at)),
                Err(error) => {
                    tracing::debug!(%error, node = %options.address(), "AMQP connect failed");
                    if is_retryable(&error) {
                        last = Some(error);
                    } else if permanent.is_none() {
                        permanent = Some(error);
                    }
                }
            }
        }
        if let Some(error) = permanent {
            return Err(transport_error(error));
        }
        let Some(error) = last else {
            // No node at all: the list was checked not to be empty.
            return Err(TransportError::Closed);
        };
        match backoff.next() {
            Some(pause) => {
                tracing::debug!(%error, ?pause, "no AMQP node accepted a connection; retrying");
                tokio::time::sleep(pause).await;
            }
            None => return Err(transport_error(error)),
        }
    }
}

fn is_retryable(error: &kernel_amqp::Error) -> bool {
    use kernel_amqp::Error as E;
    matches!(
        error,
        E::Io(_) | E::Timeout(_) | E::ConnectionClosed { .. } | E::Protocol(_)
    ) || matches!(error, E::ChannelClosed { code: 405, .. })
}

/// Connects, opens the two publishing channels, declares the exchanges and the instance queue.
async fn open(
    options: &ConnectOptions,
    instance_queue: &str,
) -> Result<Session, kernel_amqp::Error> {
    let connection = Connection::connect(options.clone()).await?;
    let requests = connection.open_channel().await?;
    let returns = requests.returns(RETURNS_BUFFER).await?;
    let answers = connection.open_channel().await?;
    for (name, kind) in [
        (REQUEST_EXCHANGE, ExchangeKind::Direct),
        (DIRECT_EXCHANGE, ExchangeKind::Direct),
        (TOPIC_EXCHANGE, ExchangeKind::Topic),
    ] {
        requests.exchange_declare(name, kind, true).await?;
    }
    Subscription::instance(instance_queue)
        .declare(&requests)
        .await?;
    Ok(Session {
        connection,
        node: options.address(),
        requests,
        returns: std::sync::Mutex::new(Some(returns)),
        answers,
    })
}

/// Replaces the session whenever its connection is lost, until the transport is closed or
/// every handle on it is gone.
async fn supervise(
    shared: std::sync::Weak<Shared>,
    nodes: Vec<ConnectOptions>,
    mut at: usize,
    state: watch::Sender<State>,
) {
    loop {
        let State::Up(session) = state.borrow().clone() else {
            return;
        };
        let error = tokio::select! {
            error = session.connection.closed() => error,
            () = state.closed() => {
                let _ = session.connection.close().await;
                return;
            }
        };
        let Some(owner) = shared.upgrade() else {
            return;
        };
        if owner.closed.load(Ordering::Acquire) {
            state.send_replace(State::Down(None));
            return;
        }
        owner
            .dropped_before
            .fetch_add(session.connection.dropped_deliveries(), Ordering::Relaxed);
        tracing::warn!(%error, node = %session.node, "AMQP connection lost; reconnecting");
        state.send_replace(State::Recovering);
        let instance_queue = owner.instance_queue.clone();
        drop(owner);
        drop(session);
        // For ever, until the transport is closed or nobody holds it any more.
        let wanted = || {
            shared
                .upgrade()
                .is_some_and(|owner| !owner.closed.load(Ordering::Acquire))
        };
        // The next node first: the one just lost is the likeliest to be down.
        let start = (at + 1) % nodes.len();
        match open_with_retries(&nodes, start, &instance_queue, None, wanted).await {
            Ok((session, _)) if !wanted() => {
                // Closed (or dropped) while the new session was being opened.
                let _ = session.connection.close().await;
                state.send_replace(State::Down(None));
                return;
            }
            Ok((session, now_at)) => {
                tracing::info!(node = %session.node, "AMQP connection recovered");
                at = now_at;
                state.send_replace(State::Up(session));
            }
            Err(TransportError::Closed) => {
                state.send_replace(State::Down(None));
                return;
            }
            Err(error) => {
                // Only what retrying cannot fix ends it: a refused login, an untrusted
                // certificate, a virtual host that does not exist.
                tracing::error!(%error, "AMQP connection given up");
                state.send_replace(State::Down(Some(error.to_string())));
                return;
            }
        }
    }
}

/// A queue to declare, bind and consume, again after every reconnection.
pub(super) struct Subscription {
    queue: String,
    exchange: &'static str,
    routing_key: String,
    options: QueueOptions,
    /// Declared with `x-queue-type: quorum` (and `x-expires`).
    quorum: bool,
    /// The prefetch, for queues consumed with acks; `None` for the instance queue.
    prefetch: Option<u16>,
}

impl Subscription {
    pub(super) fn service(name: &str, capacity: u16, work_queues: WorkQueueType) -> Self {
        let quorum = work_queues == WorkQueueType::Quorum;
        Subscription {
            queue: name.to_owned(),
            exchange: REQUEST_EXCHANGE,
            routing_key: name.to_owned(),
            // A quorum queue is durable and cannot be auto-delete: `x-expires` removes it.
            options: QueueOptions {
                durable: quorum,
                auto_delete: !quorum,
                ..Default::default()
            },
            quorum,
            prefetch: Some(capacity.max(1)),
        }
    }

    pub(super) fn instance(queue: &str) -> Self {
        Subscription {
            queue: queue.to_owned(),
            exchange: DIRECT_EXCHANGE,
            routing_key: queue.to_owned(),
            options: QueueOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            quorum: false,
            prefetch: None,
        }
    }

    pub(super) fn topic(queue: &str, topic: &str, capacity: u16) -> Self {
        Subscription {
            queue: queue.to_owned(),
            exchange: TOPIC_EXCHANGE,
            routing_key: topic.to_owned(),
            options: QueueOptions {
                auto_delete: true,
                ..Default::default()
            },
            quorum: false,
            prefetch: Some(capacity.max(1)),
        }
    }

    /// How many deliveries may wait in memory for their reader.
    pub(super) fn capacity(&self) -> usize {
        self.prefetch.map_or(INSTANCE_BUFFER, usize::from)
    }

    async fn declare(&self, channel: &Channel) -> Result<(), kernel_amqp::Error> {
        let mut arguments = FieldTable::new();
        if self.prefetch.is_none() {
            arguments.insert("x-max-length", FieldValue::I32(INSTANCE_QUEUE_MAX_LENGTH));
        }
        if self.quorum {
            arguments.insert("x-queue-type", FieldValue::text("quorum"));
            arguments.insert("x-expires", FieldValue::I32(QUORUM_QUEUE_EXPIRES));
        }
        channel
            .queue_declare(&self.queue, self.options, arguments)
            .await?;
        channel
            .queue_bind(&self.queue, self.exchange, &self.routing_key)
            .await
    }

    async fn subscribe(
        &self,
        session: &Session,
        instance_queue: &str,
    ) -> Result<Consumer, kernel_amqp::Error> {
        let channel = session.connection.open_channel().await?;
        if let Some(prefetch) = self.prefetch {
            channel.basic_qos(prefetch).await?;
        }
        self.declare(&channel).await?;
        let tag = format!("{instance_queue}.{}", crate::envelope::new_message_id());
        channel
            .basic_consume(&self.queue, &tag, self.prefetch.is_none(), self.capacity())
            .await
    }
}

/// A subscription's deliveries, read straight from its consumer by whoever polls the stream
/// (the serving loop, the reply router): no task in between, so a message wakes one task
/// fewer on its way. When the consumer ends (its connection is gone, or the broker cancelled
/// it), the next poll subscribes again on the current session, after a new session or
/// [`RESUBSCRIBE_DELAY`]; the stream ends when the transport is down for good. Dropping it
/// cancels the consumer.
pub(super) struct Consuming {
    shared: Arc<Shared>,
    subscription: Subscription,
    /// The consumer in use, or the session it was on once it ended.
    current: Result<Active, Arc<Session>>,
}

/// A live consumer of a subscription.
struct Active {
    session: Arc<Session>,
    consumer: Consumer,
    /// On the instance queue's consumer: the requests the broker returned (no queue took them).
    returns: Option<Returns>,
}

impl Active {
    fn new(
        shared: &Shared,
        subscription: &Subscription,
        session: Arc<Session>,
        consumer: Consumer,
    ) -> Self {
        // The instance queue's reader also gets the requests the broker returned.
        let returns = if subscription.queue == shared.instance_queue {
            session.take_returns()
        } else {
            None
        };
        Active {
            session,
            consumer,
            returns,
        }
    }
}

impl Consuming {
    /// Subscribes on the current session; the error is the first subscription's.
    pub(super) async fn start(
        shared: Arc<Shared>,
        subscription: Subscription,
    ) -> Result<Self, TransportError> {
        let session = shared.session().await?;
        let consumer = subscription
            .subscribe(&session, &shared.instance_queue)
            .await
            .map_err(transport_error)?;
        let active = Active::new(&shared, &subscription, session, consumer);
        Ok(Consuming {
            shared,
            subscription,
            current: Ok(active),
        })
    }

    /// The deliveries, as a stream.
    pub(super) fn into_stream(self) -> impl futures_util::Stream<Item = Delivery> + Send {
        futures_util::stream::unfold(self, |mut consuming| async move {
            let delivery = consuming.next().await?;
            Some((delivery, consuming))
        })
    }

    /// The next delivery; `None` once the transport is down for good.
    async fn next(&mut self) -> Option<Delivery> {
        loop {
            match &mut self.current {
                Ok(active) => {
                    let no_ack = self.subscription.prefetch.is_none();
                    if let Some(delivery) = read(&self.shared, no_ack, active).await {
                        return Some(delivery);
                    }
                    // The consumer ended.
                    let session = active.session.clone();
                    self.current = Err(session);
                }
                Err(ended_on) => {
                    let ended_on = ended_on.clone();
                    // Its connection is gone (a new session follows), or the broker cancelled
                    // it (its queue was deleted) and it is declared and consumed again.
                    tokio::select! {
                        _ = self.shared.wait(|next| !Arc::ptr_eq(next, &ended_on)) => {}
                        () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                    }
                    let session = self.shared.session().await.ok()?;
                    match self
                        .subscription
                        .subscribe(&session, &self.shared.instance_queue)
                        .await
                    {
                        Ok(consumer) => {
                            let active =
                                Active::new(&self.shared, &self.subscription, session, consumer);
                            self.current = Ok(active);
                        }
                        Err(error) => {
                            tracing::warn!(%error, queue = %self.subscription.queue, "cannot consume again");
                            self.current = Err(session);
                        }
                    }
                }
            }
        }
    }
}

/// The next delivery from `active`, or `None` when its consumer ended. Deliveries that
/// are not envelopes are rejected (not requeued) and counted here.
async fn read(shared: &Shared, no_ack: bool, active: &mut Active) -> Option<Delivery> {
    loop {
        let delivery = tokio::select! {
            delivery = active.consumer.next() => delivery?,
            Some(returned) = next_returned(&mut active.returns) => {
                // Our own request, back from the broker: no other sender can make one.
                let request = returned
                    .properties
                    .map_err(|error| error.to_string())
                    .and_then(|props| properties::to_envelope(&props, returned.body));
                match request {
                    Ok(request) => return Some(Delivery::returned(request)),
                    Err(reason) => tracing::debug!(reason, "an unreadable request came back"),
                }
                continue;
            }
        };
        let tag = delivery.delivery_tag;
        let envelope = delivery
            .properties
            .map_err(|error| error.to_string())
            .and_then(|props| properties::to_envelope(&props, delivery.body));
        let channel = active.consumer.channel();
        let envelope = match envelope {
            Ok(envelope) => envelope,
            Err(reason) => {
                count_rejected(&shared.rejected, &reason);
                if !no_ack {
                    let _ = channel.basic_reject(tag, false).await;
                }
                continue;
            }
        };
        let acker = if no_ack {
            Acker::none()
        } else {
            Acker::new(AmqpAck {
                channel: channel.clone(),
                tag: Some(tag),
            })
        };
        return Some(Delivery::new(envelope, acker));
    }
}

/// The next returned request, or never when there is no stream of them (or it ended).
async fn next_returned(returns: &mut Option<Returns>) -> Option<kernel_amqp::Returned> {
    match returns {
        Some(stream) => match stream.next().await {
            Some(returned) => Some(returned),
            None => {
                *returns = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}
