//! The [`Transport`] seam and the types it moves: [`Destination`], [`Source`], [`Delivery`].

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::{Envelope, TransportError};

/// Moves envelopes between processes. Deadlines, retries, breakers and handlers live above it.
///
/// A transport sends an [`Envelope`] to a [`Destination`] (a service's shared work queue, one
/// process's instance queue, or a topic) and consumes a [`Source`] as a stream of
/// [`Delivery`]s. Each process has one instance queue ([`instance_queue`](Self::instance_queue))
/// where its replies and heartbeats arrive.
///
/// Implemented by [`InProcessTransport`](crate::InProcessTransport) (the embedded default: every
/// service and client in one process, no network) and, with the `amqp` feature,
/// [`AmqpTransport`](crate::AmqpTransport) (RabbitMQ, the wire contract of [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md)).
/// Clients and services hold it as `Arc<dyn Transport>` so that the choice is made at run time
/// (`Client::from_env`); that is why it uses `async-trait`.
///
/// # Contract for implementations
/// - A request sent to [`Destination::Service`] that no queue serves is reported as
///   [`TransportError::NoRoute`] by `send`, or, by a transport that returns from `send` before
///   its broker has routed the request, as the request handed back on the instance queue
///   ([`Delivery::returned`]) before any reply to it could arrive. Sends to instances and topics do not report missing routes: a reply to a process
///   that is gone, or a publication nobody subscribed to, is dropped.
/// - A service's work queue is shared by every consumer of it (each request goes to one), and
///   hands a consumer at most `capacity` deliveries that it has not acked yet.
/// - A subscription queue is shared by the consumers of one (service, topic) pair; every
///   subscribed service gets each publication once.
/// - Identity: a received envelope's [`user_id`](Envelope::user_id) is the sending
///   transport's [`user`](Self::user) as the broker vouches for it (or empty when unknown),
///   never a value the sender chose: `send` stamps its own user on every envelope, and a
///   broker that cannot vouch for a claim refuses or blanks it.
/// - Dropping a [`Deliveries`] stream cancels the consumer; deliveries already taken can still
///   be settled. A [`Delivery`] (or its [`Acker`]) dropped unsettled goes back to its queue.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Sends one envelope.
    ///
    /// A request to a service nobody serves is [`TransportError::NoRoute`], either here or,
    /// for a transport that learns it only later (the AMQP transport does not wait for the
    /// broker before returning), as the request itself delivered back on this transport's
    /// instance queue, marked [`Delivery::is_returned`], before any reply could come.
    ///
    /// # Errors
    /// [`TransportError::NoRoute`] for a request to a service nobody serves, when known at
    /// once;
    /// [`TransportError::ConnectionLost`] or [`TransportError::Closed`] if the transport cannot
    /// send; [`TransportError::InvalidName`] for an empty or overlong destination.
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError>;

    /// [`send`](Self::send) for an envelope the caller keeps too: a call's request, which a
    /// retry sends again. A transport that can send it without a copy overrides this (the
    /// AMQP transport encodes it, the in-process broker queues it as it is); the default
    /// copies it if it is shared.
    ///
    /// # Errors
    /// As for [`send`](Self::send).
    async fn send_shared(
        &self,
        destination: Destination<'_>,
        envelope: Arc<Envelope>,
    ) -> Result<(), TransportError> {
        self.send(destination, Arc::unwrap_or_clone(envelope)).await
    }

    /// Starts consuming a source.
    ///
    /// # Errors
    /// As for `send`, plus [`TransportError::Broker`] if the broker refuses the queue.
    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError>;

    /// This process's instance queue: where replies and heartbeats for it arrive.
    fn instance_queue(&self) -> &str;

    /// The identity this transport sends as: the broker user it is logged in as. Every
    /// envelope it sends carries it as [`Envelope::user_id`], whatever the envelope said, and
    /// the broker vouches for it to the receiver. The default, for transports without broker
    /// users (mocks), is `""`: unknown.
    fn user(&self) -> &str {
        ""
    }

    /// Whether the transport can send now: the broker-connection health check. The default
    /// (for transports without a connection) is always `Ok`.
    ///
    /// # Errors
    /// Why it cannot: [`TransportError::ConnectionLost`] while reconnecting or blocked by the
    /// broker, [`TransportError::Closed`] once closed.
    fn status(&self) -> Result<(), TransportError> {
        Ok(())
    }
}

#[async_trait::async_trait]
impl<T: Transport + ?Sized> Transport for std::sync::Arc<T> {
    async fn send(
        &self,
        destination: Destination<'_>,
        envelope: Envelope,
    ) -> Result<(), TransportError> {
        (**self).send(destination, envelope).await
    }

    async fn send_shared(
        &self,
        destination: Destination<'_>,
        envelope: Arc<Envelope>,
    ) -> Result<(), TransportError> {
        (**self).send_shared(destination, envelope).await
    }

    async fn consume(&self, source: Source<'_>) -> Result<Deliveries, TransportError> {
        (**self).consume(source).await
    }

    fn instance_queue(&self) -> &str {
        (**self).instance_queue()
    }

    fn user(&self) -> &str {
        (**self).user()
    }

    fn status(&self) -> Result<(), TransportError> {
        (**self).status()
    }
}

impl fmt::Debug for dyn Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("instance_queue", &self.instance_queue())
            .field("user", &self.user())
            .finish_non_exhaustive()
    }
}

/// Where an envelope goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination<'a> {
    /// The shared work queue of a service (requests).
    Service(&'a str),
    /// One process's instance queue (replies, errors, heartbeats).
    Instance(&'a str),
    /// Every subscription to a topic (publications).
    Topic(&'a str),
}

impl fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Service(name) => write!(f, "service {name}"),
            Destination::Instance(name) => write!(f, "instance {name}"),
            Destination::Topic(name) => write!(f, "topic {name}"),
        }
    }
}

/// What to consume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source<'a> {
    /// A service's shared work queue, holding at most `capacity` unacked deliveries.
    Service {
        /// The service's name.
        name: &'a str,
        /// How many deliveries may be in hand, unacked, at once (the prefetch).
        capacity: u16,
    },
    /// This process's instance queue. Deliveries need no ack. At most one consumer per transport.
    Instance,
    /// A service's subscription to a topic, holding at most `capacity` unacked deliveries.
    Subscription {
        /// The subscribing service.
        service: &'a str,
        /// The topic.
        topic: &'a str,
        /// How many deliveries may be in hand, unacked, at once.
        capacity: u16,
    },
}

/// One received envelope, to be acked (done) or rejected (put back) by whoever handles it.
///
/// Dropping a delivery (or its acker) without either returns it to its queue, as if rejected
/// with requeue: a handler task that dies does not lose the request nor hold a prefetch slot.
///
/// The envelope is shared: the in-process broker keeps the same one to put back if the
/// delivery is dropped unsettled, and a server hands it to the handler's context, so neither
/// copies it.
#[derive(Debug)]
pub struct Delivery {
    /// The message received.
    pub envelope: Arc<Envelope>,
    acker: Acker,
    returned: bool,
}

impl Delivery {
    /// A delivery acknowledged through `acker`.
    pub fn new(envelope: Envelope, acker: Acker) -> Self {
        Self::shared(Arc::new(envelope), acker)
    }

    /// A delivery of an envelope shared with the transport, acknowledged through `acker`.
    pub fn shared(envelope: Arc<Envelope>, acker: Acker) -> Self {
        Delivery {
            envelope,
            acker,
            returned: false,
        }
    }

    /// A request this transport sent that no service queue took, handed back on the instance
    /// queue (see [`Transport::send`]). Only the transport makes one, from what its broker
    /// says: nothing another sender publishes can be marked so.
    pub fn returned(request: Envelope) -> Self {
        Delivery {
            envelope: Arc::new(request),
            acker: Acker::none(),
            returned: true,
        }
    }

    /// Whether this is a request of ours that found no route ([`Delivery::returned`]).
    pub fn is_returned(&self) -> bool {
        self.returned
    }

    /// Splits the delivery so that the envelope can be consumed and the ack sent later. The
    /// envelope is copied only if the transport still shares it (an in-process delivery with
    /// an ack to come); [`into_shared`](Self::into_shared) never copies.
    pub fn into_parts(self) -> (Envelope, Acker) {
        (Arc::unwrap_or_clone(self.envelope), self.acker)
    }

    /// Splits the delivery into its shared envelope and its acker.
    pub fn into_shared(self) -> (Arc<Envelope>, Acker) {
        (self.envelope, self.acker)
    }
}

/// Settles one delivery with the broker.
///
/// Implementations of [`Transport`] provide one per delivery; [`Acker::none`] is for
/// deliveries that need no ack (instance queues).
pub struct Acker(Option<Box<dyn Settle>>);

/// What an [`Acker`] does; implemented by each transport.
#[async_trait::async_trait]
pub trait Settle: Send + Sync + 'static {
    /// Marks the delivery handled.
    async fn ack(self: Box<Self>) -> Result<(), TransportError>;
    /// Returns the delivery to its queue (`requeue`) or drops it.
    async fn reject(self: Box<Self>, requeue: bool) -> Result<(), TransportError>;
}

impl Acker {
    /// An acker that does nothing: for deliveries that need no ack.
    pub fn none() -> Self {
        Acker(None)
    }

    /// An acker backed by a transport's settlement.
    pub fn new(settle: impl Settle) -> Self {
        Acker(Some(Box::new(settle)))
    }

    /// Marks the delivery handled.
    ///
    /// # Errors
    /// [`TransportError::ConnectionLost`] if the channel the delivery came on is gone (the
    /// broker then redelivers it).
    pub async fn ack(self) -> Result<(), TransportError> {
        match self.0 {
            Some(settle) => settle.ack().await,
            None => Ok(()),
        }
    }

    /// Returns the delivery to its queue (`requeue = true`) or discards it.
    ///
    /// # Errors
    /// As for [`ack`](Self::ack).
    pub async fn reject(self, requeue: bool) -> Result<(), TransportError> {
        match self.0 {
            Some(settle) => settle.reject(requeue).await,
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Acker").field(&self.0.is_some()).finish()
    }
}

/// The stream of deliveries from one consumer. Dropping it cancels the consumer.
pub struct Deliveries(Pin<Box<dyn Stream<Item = Delivery> + Send>>);

impl Deliveries {
    /// Wraps a transport's stream.
    pub fn new(stream: impl Stream<Item = Delivery> + Send + 'static) -> Self {
        Deliveries(Box::pin(stream))
    }

    /// The next delivery, or `None` once the consumer has ended (cancelled or transport closed).
    pub async fn next(&mut self) -> Option<Delivery> {
        futures_util::StreamExt::next(self).await
    }
}

impl Stream for Deliveries {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Deliveries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deliveries").finish_non_exhaustive()
    }
}
