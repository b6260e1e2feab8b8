//! [`Channel`]: declarations, consumers, publishing and settling on one AMQP channel.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{self, Command, Shared, put_method};
use crate::frame::{Close, FRAME_BODY, FRAME_HEADER, FRAME_OVERHEAD, Method, put_frame};
use crate::types::{DecodeError, FieldTable, ShortString};
use crate::{Error, Properties};

/// An exchange type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes on the exact routing key.
    Direct,
    /// Routes on routing-key patterns.
    Topic,
    /// Routes to every bound queue.
    Fanout,
}

impl ExchangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Fanout => "fanout",
        }
    }
}

/// How a queue is declared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// Survives a broker restart.
    pub durable: bool,
    /// Used by this connection only, deleted with it.
    pub exclusive: bool,
    /// Deleted once its last consumer is gone.
    pub auto_delete: bool,
}

/// How the broker settled a published message (on a channel in confirm mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Confirmation {
    /// Accepted and routed (or nothing to route to, if not `mandatory`).
    Ack,
    /// Refused by the broker.
    Nack,
    /// Published `mandatory` and no queue took it: the broker returned it.
    Returned,
    /// The channel is not in confirm mode.
    NotRequested,
}

/// One message received by a consumer.
///
/// `properties` is an error when the message cannot be read (a header table this client does
/// not understand, nested past the limit, a body over the limit): the consumer should refuse
/// it without requeueing. Every string may be any bytes.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The broker's tag for [`Channel::basic_ack`] and [`Channel::basic_reject`].
    pub delivery_tag: u64,
    /// Whether it was delivered before and not acked.
    pub redelivered: bool,
    /// The exchange it was published to.
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// Its properties, or why they are unreadable.
    pub properties: Result<Properties, DecodeError>,
    /// Its body (empty if it was over the limit).
    pub body: Bytes,
}

/// A message the broker returned: published `mandatory`, and no queue took it.
#[derive(Clone, Debug)]
pub struct Returned {
    /// The broker's reply code (312, `NO_ROUTE`, for an unroutable message).
    pub code: u16,
    /// The exchange it was published to.
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// Its properties, or why they are unreadable (the limits of received messages apply).
    pub properties: Result<Properties, DecodeError>,
    /// Its body (empty if it was over the limit).
    pub body: Bytes,
}

/// The messages a channel's broker returned ([`Channel::returns`]). Ends when the channel
/// does.
#[derive(Debug)]
pub struct Returns {
    receiver: mpsc::Receiver<Returned>,
}

impl Stream for Returns {
    type Item = Returned;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Returned>> {
        self.receiver.poll_recv(cx)
    }
}

/// A channel. Cloning is cheap; clones share the channel, which closes when the last clone
/// (including those held by its [`Consumer`]s) is dropped. Methods on a channel the broker has
/// closed fail with [`Error::ChannelClosed`].
#[derive(Clone)]
pub struct Channel {
    inner: Arc<ChannelRef>,
}

struct ChannelRef {
    id: u16,
    generation: u64,
    shared: Arc<Shared>,
    /// Set once the broker has agreed to confirm publishes (`confirm.select-ok`).
    confirms: AtomicBool,
}

impl Drop for ChannelRef {
    fn drop(&mut self) {
        let (reply, _) = oneshot::channel();
        self.shared.send_detached(Command::Call {
            channel: (self.id, self.generation),
            method: close_method(),
            consumer: None,
            reply,
        });
    }
}

fn close_method() -> Method {
    Method::ChannelClose(Close {
        code: 200,
        text: "closed".into(),
        class_id: 0,
        method_id: 0,
    })
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.inner.id)
            .finish()
    }
}

impl Channel {
    pub(crate) fn new(id: u16, generation: u64, shared: Arc<Shared>) -> Self {
        Channel {
            inner: Arc::new(ChannelRef {
                id,
                generation,
                shared,
                confirms: AtomicBool::new(false),
            }),
        }
    }

    fn key(&self) -> (u16, u64) {
        (self.inner.id, self.inner.generation)
    }

    fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// The channel number.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    async fn call(&self, method: Method) -> Result<Method, Error> {
        self.call_with(method, None).await
    }

    async fn call_with(
        &self,
        method: Method,
        consumer: Option<(Bytes, connection::Consumer)>,
    ) -> Result<Method, Error> {
        let (reply, wait) = oneshot::channel();
        self.shared()
            .send(Command::Call {
                channel: self.key(),
                method,
                consumer,
                reply,
            })
            .await?;
        self.shared().wait(wait).await
    }

    /// Declares an exchange (idempotent if it exists with the same type and durability).
    ///
    /// # Errors
    /// [`Error::ChannelClosed`] with 406 if it exists with other settings (the channel is then
    /// closed); the connection's error if it is gone.
    pub async fn exchange_declare(
        &self,
        name: &str,
        kind: ExchangeKind,
        durable: bool,
    ) -> Result<(), Error> {
        self.call(Method::ExchangeDeclare {
            name: name.to_owned(),
            kind: kind.as_str(),
            durable,
            arguments: FieldTable::new(),
        })
        .await
        .map(drop)
    }

    /// Declares a queue; returns the number of messages in it.
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn queue_declare(
        &self,
        name: &str,
        options: QueueOptions,
        arguments: FieldTable,
    ) -> Result<u32, Error> {
        match self
            .call(Method::QueueDeclare {
                name: name.to_owned(),
                durable: options.durable,
                exclusive: options.exclusive,
                auto_delete: options.auto_delete,
                arguments,
            })
            .await?
        {
            Method::QueueDeclareOk { message_count, .. } => Ok(message_count),
            other => Err(unexpected(&other)),
        }
    }

    /// Binds a queue to an exchange.
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn queue_bind(
        &self,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), Error> {
        self.call(Method::QueueBind {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            routing_key: routing_key.to_owned(),
        })
        .await
        .map(drop)
    }

    /// Deletes a queue; returns the number of messages it held.
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn queue_delete(&self, queue: &str) -> Result<u32, Error> {
        match self
            .call(Method::QueueDelete {
                queue: queue.to_owned(),
            })
            .await?
        {
            Method::QueueDeleteOk { message_count } => Ok(message_count),
            other => Err(unexpected(&other)),
        }
    }

    /// Limits the unacked deliveries in hand on this channel.
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn basic_qos(&self, prefetch_count: u16) -> Result<(), Error> {
        self.call(Method::BasicQos { prefetch_count })
            .await
            .map(drop)
    }

    /// Puts the channel in confirm mode: every later publish is confirmed.
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn confirm_select(&self) -> Result<(), Error> {
        self.call(Method::ConfirmSelect).await?;
        self.inner.confirms.store(true, Ordering::Release);
        Ok(())
    }

    /// Messages published `mandatory` on this channel that no queue took, from now on: the
    /// broker's `basic.return`, which precedes anything a consumer of the message could have
    /// sent. On a channel in confirm mode the confirmation says [`Confirmation::Returned`]
    /// too. At most `capacity` wait to be read; more are dropped (logged at debug).
    ///
    /// # Errors
    /// [`Error::ChannelClosed`], or the connection's error.
    pub async fn returns(&self, capacity: usize) -> Result<Returns, Error> {
        let (sink, receiver) = mpsc::channel(capacity.max(1));
        self.shared()
            .send(Command::Returns {
                channel: self.key(),
                sink,
            })
            .await?;
        Ok(Returns { receiver })
    }

    /// Consumes a queue. The consumer holds at most `capacity` deliveries not yet taken from
    /// it: with acks, set a prefetch (`basic_qos`) no larger; without, further deliveries are
    /// dropped and counted ([`Connection::dropped_deliveries`](crate::Connection::dropped_deliveries)).
    ///
    /// # Errors
    /// As for [`exchange_declare`](Self::exchange_declare).
    pub async fn basic_consume(
        &self,
        queue: &str,
        tag: &str,
        no_ack: bool,
        capacity: usize,
    ) -> Result<Consumer, Error> {
        let (deliveries, receiver) = mpsc::channel(capacity.max(1));
        let consumer = connection::Consumer { deliveries, no_ack };
        let method = Method::BasicConsume {
            queue: queue.to_owned(),
            tag: tag.to_owned(),
            no_ack,
        };
        self.call_with(
            method,
            Some((Bytes::copy_from_slice(tag.as_bytes()), consumer)),
        )
        .await?;
        Ok(Consumer {
            tag: tag.into(),
            receiver,
            channel: self.clone(),
        })
    }

    /// Publishes a message, then waits for the broker's confirmation if the channel is in
    /// confirm mode. If not, returns [`Confirmation::NotRequested`] as soon as the message is
    /// queued for the socket, without a round trip through the connection's task (a write
    /// without confirms promises nothing more); a `mandatory` message no queue takes then
    /// comes back through [`returns`](Self::returns).
    ///
    /// The message is checked before anything is sent: a property list that does not fit in
    /// one frame of the negotiated size is [`Error::TooLarge`], a property over 255 bytes
    /// [`Error::ShortStringTooLong`]. Dropping the future after the message was queued does
    /// not unsend it.
    ///
    /// # Errors
    /// Those above, [`Error::ChannelClosed`], or the connection's error.
    pub async fn basic_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &Properties,
        body: &[u8],
    ) -> Result<Confirmation, Error> {
        let frames = self.encode_publish(exchange, routing_key, mandatory, properties, body)?;
        if !self.inner.confirms.load(Ordering::Acquire) {
            self.shared()
                .send(Command::Publish {
                    channel: self.key(),
                    frames,
                    message_id: None,
                    confirm: None,
                })
                .await?;
            return Ok(Confirmation::NotRequested);
        }
        let (confirm, wait) = oneshot::channel();
        self.shared()
            .send(Command::Publish {
                channel: self.key(),
                frames,
                message_id: properties.message_id.clone(),
                confirm: Some(confirm),
            })
            .await?;
        self.shared().wait(wait).await
    }

    fn encode_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        properties: &Properties,
        body: &[u8],
    ) -> Result<Bytes, Error> {
        let frame_max = self.shared().frame_max;
        // Room for a kernel message's properties and headers, so that most never grow.
        let mut header = BytesMut::with_capacity(512);
        properties.encode_header(body.len() as u64, &mut header)?;
        if header.len() + FRAME_OVERHEAD > frame_max {
            return Err(Error::TooLarge {
                what: "properties and headers",
                size: (header.len() + FRAME_OVERHEAD) as u64,
                limit: frame_max as u64,
            });
        }
        let mut out = BytesMut::with_capacity(64 + header.len() + body.len() + FRAME_OVERHEAD);
        put_method(
            &mut out,
            self.inner.id,
            &Method::BasicPublish {
                exchange: exchange.to_owned(),
                routing_key: routing_key.to_owned(),
                mandatory,
            },
        )?;
        put_frame(&mut out, FRAME_HEADER, self.inner.id, &header);
        for chunk in body.chunks(frame_max - FRAME_OVERHEAD) {
            put_frame(&mut out, FRAME_BODY, self.inner.id, chunk);
        }
        Ok(out.freeze())
    }

    async fn send(&self, method: Method) -> Result<(), Error> {
        self.shared()
            .send(Command::Send {
                channel: self.key(),
                method,
            })
            .await
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one on this channel).
    ///
    /// # Errors
    /// The connection's error if it is gone. (An ack on a channel the broker closed is
    /// dropped: the broker has requeued the delivery already.)
    pub async fn basic_ack(&self, delivery_tag: u64, multiple: bool) -> Result<(), Error> {
        self.send(Method::BasicAck {
            delivery_tag,
            multiple,
        })
        .await
    }

    /// Rejects a delivery: back to its queue (`requeue`) or dropped (or dead-lettered).
    ///
    /// # Errors
    /// As for [`basic_ack`](Self::basic_ack).
    pub async fn basic_reject(&self, delivery_tag: u64, requeue: bool) -> Result<(), Error> {
        self.send(Method::BasicReject {
            delivery_tag,
            requeue,
        })
        .await
    }

    /// Rejects a delivery without waiting: for `Drop` implementations. Done at once if the
    /// command queue has room, else by a task on the current runtime, else not at all (the
    /// broker requeues it when the channel closes).
    pub fn basic_reject_detached(&self, delivery_tag: u64, requeue: bool) {
        let command = Command::Send {
            channel: self.key(),
            method: Method::BasicReject {
                delivery_tag,
                requeue,
            },
        };
        self.inner.shared.send_detached(command);
    }

    /// Closes the channel.
    ///
    /// # Errors
    /// The connection's error if it is gone.
    pub async fn close(&self) -> Result<(), Error> {
        match self.call(close_method()).await {
            Ok(_) | Err(Error::ChannelClosed { .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

fn unexpected(method: &Method) -> Error {
    Error::Protocol(format!("unexpected reply {:?}", method.ids()))
}

/// The deliveries of one consumer. Ends when the consumer is cancelled (by the broker, or by
/// its channel or connection closing). Dropping it cancels the consumer.
pub struct Consumer {
    tag: ShortString,
    receiver: mpsc::Receiver<Delivery>,
    channel: Channel,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("tag", &self.tag)
            .field("channel", &self.channel.id())
            .finish()
    }
}

impl Consumer {
    /// The channel the consumer is on, to settle its deliveries.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

impl Stream for Consumer {
    type Item = Delivery;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        self.receiver.poll_recv(cx)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // Waits for cancel-ok, so that deliveries already on their way are requeued.
        self.channel.inner.shared.send_detached(Command::Send {
            channel: self.channel.key(),
            method: Method::BasicCancel {
                tag: self.tag.clone(),
                no_wait: false,
            },
        });
    }
}
