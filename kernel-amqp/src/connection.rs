//! [`Connection`]: the socket, the handshake, and the task that owns both.
//!
//! One task (the driver) owns the socket: it reads frames, assembles messages, answers the
//! broker's heartbeats and closes, and writes what the [`Channel`]s ask for, in order. Handles
//! talk to it through a bounded command queue, so a caller's future can be dropped at any
//! point without leaving half a message on the socket.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{FutureExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::channel::{Channel, Confirmation, Delivery, Returned};
use crate::frame::{
    Close, FRAME_BODY, FRAME_HEADER, FRAME_HEADER_TOO_LARGE, FRAME_HEARTBEAT, FRAME_METHOD, Frame,
    FrameCodec, Method, PROTOCOL_HEADER, put_frame, put_heartbeat,
};
use crate::properties::decode_header;
use crate::types::{DecodeError, FieldTable, FieldValue, ShortString};
use crate::{ConnectOptions, Error, Limits};

/// Commands queued to the driver; more wait in their callers.
const COMMAND_QUEUE: usize = 256;

/// At most this many rounds of ready frames and commands are handled in one drain (there are
/// two drains per write: before the driver yields, and after).
const BATCH: usize = 64;

/// Below this many bytes queued, the driver yields once before writing, so that the frames of
/// the tasks that run meanwhile (those ready on its worker, and what the worker steals) join
/// the same write: one syscall for many calls under load.
const COALESCE_BELOW: usize = 64 * 1024;

/// A byte stream the connection runs on: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

type Reader = FramedRead<ReadHalf<Box<dyn Io>>, FrameCodec>;

/// An open connection to the broker. Cloning is cheap; clones share it.
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), kernel_amqp::Error> {
/// use kernel_amqp::{ConnectOptions, Connection, Properties};
///
/// let connection = Connection::connect(ConnectOptions::from_url("amqp://127.0.0.1:5672")?).await?;
/// let channel = connection.open_channel().await?;
/// channel.basic_publish("", "a-queue", false, &Properties::default(), b"hi").await?;
/// connection.close().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Connection {
    shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) frame_max: usize,
    closed: watch::Receiver<Option<Error>>,
    blocked: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    /// The error the connection ended with (or a generic one if it is still ending).
    pub(crate) fn closed_error(&self) -> Error {
        self.closed
            .borrow()
            .clone()
            .unwrap_or_else(|| Error::ConnectionClosed {
                code: 0,
                text: "the connection is closing".into(),
            })
    }

    /// Queues a command, or fails with the reason the connection ended.
    pub(crate) async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .send(command)
            .await
            .map_err(|_| self.closed_error())
    }

    /// Queues a command without waiting, for `Drop` implementations: at once if the queue has
    /// room, else from a task on the current runtime (so it is not lost when the queue is
    /// full), else not at all (the broker cleans up when the connection closes).
    pub(crate) fn send_detached(self: &Arc<Self>, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(command)) = self.commands.try_send(command)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let shared = Arc::clone(self);
            runtime.spawn(async move { shared.send(command).await });
        }
    }

    /// Waits for a reply the driver will send, or for the connection's end.
    pub(crate) async fn wait<T>(
        &self,
        reply: oneshot::Receiver<Result<T, Error>>,
    ) -> Result<T, Error> {
        reply.await.unwrap_or_else(|_| Err(self.closed_error()))
    }
}

/// A waiter for the next synchronous reply on a channel.
type Waiter = Box<dyn FnOnce(Result<Method, Error>) + Send>;

/// What handles ask the driver to do.
pub(crate) enum Command {
    OpenChannel {
        reply: oneshot::Sender<Result<(u16, u64), Error>>,
    },
    /// A method with a synchronous reply; for `basic.consume`, with the consumer to register
    /// under its tag.
    Call {
        channel: (u16, u64),
        method: Method,
        consumer: Option<(Bytes, Consumer)>,
        reply: oneshot::Sender<Result<Method, Error>>,
    },
    /// Encoded frames of one message; with `confirm`, on a channel in confirm mode, for a
    /// caller awaiting the broker's confirmation.
    Publish {
        channel: (u16, u64),
        frames: Bytes,
        message_id: Option<ShortString>,
        confirm: Option<oneshot::Sender<Result<Confirmation, Error>>>,
    },
    /// Where the channel's returned messages go from now on.
    Returns {
        channel: (u16, u64),
        sink: mpsc::Sender<Returned>,
    },
    /// A method without a reply (ack, reject, cancel without waiting).
    Send { channel: (u16, u64), method: Method },
    Close {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

impl Connection {
    /// Connects, logs in and opens the virtual host, within the options' connect timeout.
    ///
    /// # Errors
    /// [`Error::Io`] if the broker cannot be reached; [`Error::Timeout`];
    /// [`Error::AccessRefused`] if the login is refused; [`Error::ConnectionClosed`] if the
    /// broker refuses the virtual host.
    pub async fn connect(options: ConnectOptions) -> Result<Connection, Error> {
        let timeout = options.connect_timeout;
        tokio::time::timeout(timeout, Self::connect_now(options))
            .await
            .map_err(|_| Error::Timeout(timeout))?
    }

    async fn connect_now(options: ConnectOptions) -> Result<Connection, Error> {
        let tcp = tokio::net::TcpStream::connect((options.host.as_str(), options.port)).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = if options.tls {
            crate::tls::wrap(tcp, &options).await?
        } else {
            Box::new(tcp)
        };
        let (read, mut write) = tokio::io::split(io);
        let mut reader = FramedRead::new(read, FrameCodec::new(131_072, options.limits.header()));
        write.write_all(PROTOCOL_HEADER).await?;
        let depth = options.limits.table_depth();

        let Method::ConnectionStart { mechanisms } = expect_method(&mut reader, depth).await?
        else {
            return Err(Error::Protocol("expected connection.start".into()));
        };
        if !mechanisms.split(|b| *b == b' ').any(|m| m == b"PLAIN") {
            return Err(Error::Protocol(
                "the broker does not offer PLAIN login".into(),
            ));
        }
        let mut response = Vec::with_capacity(options.user.len() + options.password.len() + 2);
        response.push(0);
        response.extend_from_slice(options.user.as_bytes());
        response.push(0);
        response.extend_from_slice(options.password.as_bytes());
        let mut out = BytesMut::new();
        put_method(
            &mut out,
            0,
            &Method::ConnectionStartOk {
                client_properties: client_properties(&options),
                mechanism: "PLAIN",
                response: response.into(),
            },
        )?;
        write.write_all(&out).await?;
        out.clear();

        let (channel_max, frame_max, heartbeat) = match expect_method(&mut reader, depth).await {
            Ok(Method::ConnectionTune {
                channel_max,
                frame_max,
                heartbeat,
            }) => (channel_max, frame_max, heartbeat),
            // 403 ACCESS_REFUSED (the broker has `authentication_failure_close`); anything
            // else, a socket that ends included, may pass and is retried by the caller.
            Ok(Method::ConnectionClose(close)) if close.code == 403 => {
                return Err(Error::AccessRefused(close.text.to_string_lossy()));
            }
            Ok(Method::ConnectionClose(close)) => {
                return Err(Error::ConnectionClosed {
                    code: close.code,
                    text: close.text.to_string_lossy(),
                });
            }
            Ok(_) => return Err(Error::Protocol("expected connection.tune".into())),
            Err(error) => return Err(error),
        };
        let negotiate = |ours: u32, theirs: u32| match (ours, theirs) {
            (0, t) => t,
            (o, 0) => o,
            (o, t) => o.min(t),
        };
        let channel_max = negotiate(u32::from(options.channel_max), u32::from(channel_max))
            .min(u32::from(u16::MAX)) as u16;
        let frame_max = negotiate(options.frame_max, frame_max).max(4096);
        let heartbeat = if options.heartbeat == 0 {
            0
        } else {
            negotiate(u32::from(options.heartbeat), u32::from(heartbeat)) as u16
        };
        put_method(
            &mut out,
            0,
            &Method::ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat,
            },
        )?;
        put_method(
            &mut out,
            0,
            &Method::ConnectionOpen {
                vhost: options.vhost.clone(),
            },
        )?;
        write.write_all(&out).await?;
        out.clear();
        reader.decoder_mut().frame_max = frame_max as usize;
        match expect_method(&mut reader, depth).await? {
            Method::ConnectionOpenOk => {}
            Method::ConnectionClose(close) => {
                return Err(Error::ConnectionClosed {
                    code: close.code,
                    text: close.text.to_string_lossy(),
                });
            }
            _ => return Err(Error::Protocol("expected connection.open-ok".into())),
        }

        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE);
        let (closed_tx, closed) = watch::channel(None);
        let shared = Arc::new(Shared {
            commands,
            frame_max: frame_max as usize,
            closed,
            blocked: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let driver = Driver {
            reader,
            writer: write,
            out,
            commands: receiver,
            channels: HashMap::new(),
            channel_max: channel_max.max(1),
            next_generation: 1,
            heartbeat: Duration::from_secs(u64::from(heartbeat)),
            last_read: Instant::now(),
            last_write: Instant::now(),
            limits: options.limits,
            closing: None,
            shared: Arc::downgrade(&shared),
        };
        tokio::spawn(async move {
            let result = driver.run().await;
            let error = match result {
                Ok(()) => Error::ConnectionClosed {
                    code: 200,
                    text: "closed by its owner".into(),
                },
                Err(error) => {
                    tracing::warn!(%error, "AMQP connection ended");
                    error
                }
            };
            let _ = closed_tx.send(Some(error));
        });
        Ok(Connection { shared })
    }

    /// Opens a channel.
    ///
    /// # Errors
    /// [`Error::NoFreeChannel`], or the error the connection ended with.
    pub async fn open_channel(&self) -> Result<Channel, Error> {
        let (reply, wait) = oneshot::channel();
        self.shared.send(Command::OpenChannel { reply }).await?;
        let (id, generation) = self.shared.wait(wait).await?;
        Ok(Channel::new(id, generation, self.shared.clone()))
    }

    /// Closes the connection cleanly (`connection.close`, then waits for the broker's
    /// `close-ok`, at most 5 s).
    ///
    /// # Errors
    /// The error the connection had already ended with, if any.
    pub async fn close(&self) -> Result<(), Error> {
        let (reply, wait) = oneshot::channel();
        self.shared.send(Command::Close { reply }).await?;
        match tokio::time::timeout(Duration::from_secs(5), self.shared.wait(wait)).await {
            Ok(result) => result,
            Err(_) => Ok(()),
        }
    }

    /// Resolves once the connection has ended, with the reason.
    pub async fn closed(&self) -> Error {
        let mut closed = self.shared.closed.clone();
        match closed.wait_for(Option::is_some).await {
            Ok(error) => error.clone().unwrap_or_else(|| self.shared.closed_error()),
            Err(_) => self.shared.closed_error(),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.borrow().is_some() || self.shared.commands.is_closed()
    }

    /// Whether the broker has blocked publishing on this connection (a resource alarm).
    pub fn is_blocked(&self) -> bool {
        self.shared.blocked.load(Ordering::Relaxed)
    }

    /// Deliveries thrown away because their consumer could not take them: a full queue of a
    /// consumer without acks, or a consumer already dropped.
    pub fn dropped_deliveries(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The negotiated frame size: no content header may be larger.
    pub fn frame_max(&self) -> usize {
        self.shared.frame_max
    }
}

fn client_properties(options: &ConnectOptions) -> FieldTable {
    let mut capabilities = FieldTable::new();
    for name in [
        "publisher_confirms",
        "consumer_cancel_notify",
        "basic.nack",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        capabilities.insert(name, FieldValue::Bool(true));
    }
    let mut properties = FieldTable::new();
    properties.insert("product", FieldValue::text("kernel-amqp"));
    properties.insert("version", FieldValue::text(env!("CARGO_PKG_VERSION")));
    properties.insert("platform", FieldValue::text("Rust"));
    properties.insert("capabilities", FieldValue::Table(capabilities));
    if let Some(name) = &options.connection_name {
        properties.insert("connection_name", FieldValue::text(name));
    }
    properties
}

pub(crate) fn put_method(out: &mut BytesMut, channel: u16, method: &Method) -> Result<(), Error> {
    let mut payload = BytesMut::new();
    method.encode(&mut payload)?;
    put_frame(out, FRAME_METHOD, channel, &payload);
    Ok(())
}

async fn expect_method(reader: &mut Reader, depth: usize) -> Result<Method, Error> {
    loop {
        let frame = reader.next().await.ok_or(Error::ConnectionClosed {
            code: 0,
            text: "the broker closed the socket".into(),
        })??;
        match frame.kind {
            FRAME_METHOD => {
                return Method::decode(frame.payload, depth)
                    .map_err(|e| Error::Protocol(format!("unreadable method: {e}")));
            }
            FRAME_HEARTBEAT => continue,
            _ => return Err(Error::Protocol("expected a method frame".into())),
        }
    }
}

/// A message being assembled from its method, header and body frames.
struct Incoming {
    what: IncomingKind,
    body_size: Option<u64>,
    properties: Result<crate::Properties, DecodeError>,
    body: BytesMut,
    received: u64,
}

enum IncomingKind {
    Deliver {
        tag: ShortString,
        delivery_tag: u64,
        redelivered: bool,
        exchange: ShortString,
        routing_key: ShortString,
    },
    Return {
        code: u16,
        exchange: ShortString,
        routing_key: ShortString,
    },
}

/// Where a consumer's deliveries go.
pub(crate) struct Consumer {
    pub(crate) deliveries: mpsc::Sender<Delivery>,
    pub(crate) no_ack: bool,
}

struct Unconfirmed {
    message_id: Option<ShortString>,
    returned: bool,
    reply: oneshot::Sender<Result<Confirmation, Error>>,
}

#[derive(Default)]
struct ChannelState {
    generation: u64,
    waiters: VecDeque<Waiter>,
    consumers: HashMap<Bytes, Consumer>,
    incoming: Option<Incoming>,
    /// Set once `confirm.select` is sent: the next publish sequence number and those unconfirmed.
    confirms: Option<(u64, BTreeMap<u64, Unconfirmed>)>,
    /// Where returned messages go ([`Channel::returns`]).
    returns: Option<mpsc::Sender<Returned>>,
    closing: bool,
}

impl ChannelState {
    /// Fails everything waiting on this channel.
    fn fail(&mut self, error: &Error) {
        for waiter in self.waiters.drain(..) {
            waiter(Err(error.clone()));
        }
        self.consumers.clear();
        if let Some((_, unconfirmed)) = self.confirms.as_mut() {
            for (_, pending) in std::mem::take(unconfirmed) {
                let _ = pending.reply.send(Err(error.clone()));
            }
        }
        self.returns = None;
    }
}

struct Driver {
    reader: Reader,
    writer: WriteHalf<Box<dyn Io>>,
    out: BytesMut,
    commands: mpsc::Receiver<Command>,
    channels: HashMap<u16, ChannelState>,
    channel_max: u16,
    next_generation: u64,
    heartbeat: Duration,
    last_read: Instant,
    last_write: Instant,
    limits: Limits,
    closing: Option<oneshot::Sender<Result<(), Error>>>,
    shared: std::sync::Weak<Shared>,
}

/// The driver ends: `Ok` after a close we asked for, else the reason.
type Ending = Result<(), Error>;

impl Driver {
    async fn run(mut self) -> Ending {
        let result = self.run_loop().await;
        if !self.out.is_empty() {
            // A close-ok owed to the broker (or anything else queued): sent if it can be, at
            // once.
            let _ = tokio::time::timeout(Duration::from_secs(1), self.flush_out()).await;
        }
        let error = match &result {
            Ok(()) => Error::ConnectionClosed {
                code: 200,
                text: "closed by its owner".into(),
            },
            Err(error) => error.clone(),
        };
        for (_, mut channel) in self.channels.drain() {
            channel.fail(&error);
        }
        if let Some(reply) = self.closing.take() {
            let _ = reply.send(result.clone());
        }
        self.commands.close();
        while let Ok(command) = self.commands.try_recv() {
            fail_command(command, &error);
        }
        result
    }

    async fn run_loop(&mut self) -> Ending {
        let tick = if self.heartbeat.is_zero() {
            Duration::from_secs(3600)
        } else {
            self.heartbeat / 2
        };
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            if !self.out.is_empty() {
                if self.out.len() < COALESCE_BELOW {
                    // Let the tasks that are ready to run now (handlers replying, callers
                    // sending) queue their frames first, so that one write carries them all.
                    tokio::task::yield_now().await;
                    if self.drain_ready(&mut commands_open)? {
                        return Ok(());
                    }
                }
                self.flush_out().await?;
            }
            tokio::select! {
                frame = self.reader.next() => {
                    if self.on_frame(frame)? {
                        return Ok(());
                    }
                }
                command = self.commands.recv(), if commands_open => {
                    self.on_command(command, &mut commands_open)?;
                }
                _ = ticker.tick() => {
                    if self.heartbeat.is_zero() {
                        continue;
                    }
                    if self.last_read.elapsed() > self.heartbeat * 2 {
                        return Err(Error::Timeout(self.heartbeat * 2));
                    }
                    if self.last_write.elapsed() >= self.heartbeat / 2 {
                        put_heartbeat(&mut self.out);
                    }
                }
            }
            // Hot path: whatever else is ready right now joins the same write, so that under
            // load one syscall carries many frames instead of one each.
            if self.drain_ready(&mut commands_open)? {
                return Ok(());
            }
        }
    }

    /// Handles frames already readable and commands already queued, without waiting, up to
    /// [`BATCH`] rounds or until [`COALESCE_BELOW`] bytes wait to be written (so that a flood
    /// of one cannot starve the other, nor hold a large write back). `Ok(true)` once the
    /// connection has closed cleanly.
    fn drain_ready(&mut self, commands_open: &mut bool) -> Result<bool, Error> {
        for _ in 0..BATCH {
            if self.out.len() >= COALESCE_BELOW {
                break;
            }
            let mut progressed = false;
            if let Some(frame) = self.reader.next().now_or_never() {
                if self.on_frame(frame)? {
                    return Ok(true);
                }
                progressed = true;
            }
            if *commands_open {
                match self.commands.try_recv() {
                    Ok(command) => {
                        self.on_command(Some(command), commands_open)?;
                        progressed = true;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.on_command(None, commands_open)?;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {}
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(false)
    }

    /// Handles what the reader yielded; `Ok(true)` once the connection has closed cleanly.
    fn on_frame(&mut self, frame: Option<Result<Frame, Error>>) -> Result<bool, Error> {
        let frame = frame.ok_or(Error::ConnectionClosed {
            code: 0,
            text: "the broker closed the socket".into(),
        })??;
        self.last_read = Instant::now();
        self.frame(frame)
    }

    /// Handles a command, or the end of the command queue (every handle is gone: close).
    fn on_command(&mut self, command: Option<Command>, commands_open: &mut bool) -> Ending {
        match command {
            Some(command) => self.command(command),
            None => {
                *commands_open = false;
                self.start_close();
                Ok(())
            }
        }
    }

    /// Writes and flushes what is queued, within two heartbeat periods (30 s without
    /// heartbeats): a peer that stops reading is a lost connection, not a hung driver.
    async fn flush_out(&mut self) -> Ending {
        let bound = if self.heartbeat.is_zero() {
            Duration::from_secs(30)
        } else {
            self.heartbeat * 2
        };
        let started = Instant::now();
        let write = async {
            self.writer.write_all(&self.out).await?;
            // TLS may hold records back until flushed.
            self.writer.flush().await
        };
        tokio::time::timeout(bound, write)
            .await
            .map_err(|_| Error::Timeout(bound))??;
        self.out.clear();
        self.last_write = Instant::now();
        if started.elapsed() > self.heartbeat / 2 {
            // Frames the broker sent meanwhile are still unread in the socket: a long write
            // is not silence on its side.
            self.last_read = Instant::now();
        }
        Ok(())
    }

    fn start_close(&mut self) {
        let close = Method::ConnectionClose(Close {
            code: 200,
            text: "closed by its owner".into(),
            class_id: 0,
            method_id: 0,
        });
        let _ = put_method(&mut self.out, 0, &close);
    }

    fn channel(&mut self, (id, generation): (u16, u64)) -> Option<&mut ChannelState> {
        self.channels
            .get_mut(&id)
            .filter(|c| c.generation == generation && !c.closing)
    }

    fn command(&mut self, command: Command) -> Ending {
        match command {
            Command::OpenChannel { reply } => {
                let Some(id) = (1..=self.channel_max).find(|id| !self.channels.contains_key(id))
                else {
                    let _ = reply.send(Err(Error::NoFreeChannel(self.channel_max)));
                    return Ok(());
                };
                let generation = self.next_generation;
                self.next_generation += 1;
                let mut state = ChannelState {
                    generation,
                    ..Default::default()
                };
                state.waiters.push_back(Box::new(move |result| {
                    let _ = reply.send(result.map(|_| (id, generation)));
                }));
                self.channels.insert(id, state);
                put_method(&mut self.out, id, &Method::ChannelOpen)?;
            }
            Command::Call {
                channel,
                method,
                consumer,
                reply,
            } => {
                let mut encoded = BytesMut::new();
                if let Err(error) = put_method(&mut encoded, channel.0, &method) {
                    let _ = reply.send(Err(error));
                    return Ok(());
                }
                let Some(state) = self.channel(channel) else {
                    let _ = reply.send(Err(channel_gone()));
                    return Ok(());
                };
                match method {
                    Method::ConfirmSelect => state.confirms = Some((1, BTreeMap::new())),
                    Method::ChannelClose(_) => state.closing = true,
                    _ => {}
                }
                if let Some((tag, consumer)) = consumer {
                    state.consumers.insert(tag, consumer);
                }
                state.waiters.push_back(Box::new(move |result| {
                    let _ = reply.send(result);
                }));
                self.out.extend_from_slice(&encoded);
            }
            Command::Publish {
                channel,
                frames,
                message_id,
                confirm,
            } => {
                let Some(state) = self.channel(channel) else {
                    if let Some(confirm) = confirm {
                        let _ = confirm.send(Err(channel_gone()));
                    }
                    return Ok(());
                };
                match (state.confirms.as_mut(), confirm) {
                    (Some((next, unconfirmed)), confirm) => {
                        // Every publish takes a sequence number in confirm mode, even one
                        // queued before the caller knew the mode, whose confirmation no one
                        // awaits: the broker counts them all.
                        if let Some(reply) = confirm {
                            unconfirmed.insert(
                                *next,
                                Unconfirmed {
                                    message_id,
                                    returned: false,
                                    reply,
                                },
                            );
                        }
                        *next += 1;
                    }
                    (None, Some(confirm)) => {
                        let _ = confirm.send(Ok(Confirmation::NotRequested));
                    }
                    (None, None) => {}
                }
                self.out.extend_from_slice(&frames);
            }
            Command::Returns { channel, sink } => {
                if let Some(state) = self.channel(channel) {
                    state.returns = Some(sink);
                }
            }
            Command::Send { channel, method } => {
                let Some(state) = self.channel(channel) else {
                    return Ok(());
                };
                if let Method::BasicCancel { no_wait: false, .. } = &method {
                    // The consumer stays registered until cancel-ok: a delivery already on its
                    // way finds its stream gone and is requeued.
                    state.waiters.push_back(Box::new(drop));
                }
                put_method(&mut self.out, channel.0, &method)?;
            }
            Command::Close { reply } => {
                self.closing = Some(reply);
                self.start_close();
            }
        }
        Ok(())
    }

    /// Handles one frame; `Ok(true)` once the connection has closed cleanly.
    fn frame(&mut self, frame: Frame) -> Result<bool, Error> {
        let depth = self.limits.table_depth();
        match frame.kind {
            FRAME_HEARTBEAT => Ok(false),
            FRAME_METHOD => {
                let method = Method::decode(frame.payload, depth)
                    .map_err(|e| Error::Protocol(format!("unreadable method: {e}")))?;
                if frame.channel == 0 {
                    self.connection_method(method)
                } else {
                    self.channel_method(frame.channel, method)?;
                    Ok(false)
                }
            }
            FRAME_HEADER_TOO_LARGE => {
                let limit = self.limits.header() as u64;
                let incoming = self.awaiting_header(frame.channel)?;
                let mut base = frame.payload;
                base.advance(4);
                let body_size = base.get_u64();
                let header_size = base.get_u32();
                incoming.body_size = Some(body_size);
                incoming.properties = Err(DecodeError::TooLarge {
                    what: "headers",
                    size: u64::from(header_size),
                    limit,
                });
                self.maybe_complete(frame.channel);
                Ok(false)
            }
            FRAME_HEADER => {
                let max_body = self.limits.body();
                let incoming = self.awaiting_header(frame.channel)?;
                let header = decode_header(frame.payload, depth)
                    .map_err(|e| Error::Protocol(format!("unreadable content header: {e}")))?;
                incoming.body_size = Some(header.body_size);
                incoming.properties = header.properties;
                let deliver = matches!(incoming.what, IncomingKind::Deliver { .. });
                if deliver && header.body_size > max_body {
                    incoming.properties = Err(DecodeError::TooLarge {
                        what: "body",
                        size: header.body_size,
                        limit: max_body,
                    });
                } else {
                    incoming.body.reserve(header.body_size as usize);
                }
                self.maybe_complete(frame.channel);
                Ok(false)
            }
            FRAME_BODY => {
                let incoming = self
                    .channels
                    .get_mut(&frame.channel)
                    .and_then(|c| c.incoming.as_mut())
                    .ok_or_else(|| Error::Protocol("a body frame out of place".into()))?;
                let Some(size) = incoming.body_size else {
                    return Err(Error::Protocol("a body frame before its header".into()));
                };
                incoming.received += frame.payload.len() as u64;
                if incoming.received > size {
                    return Err(Error::Protocol("a body longer than its header said".into()));
                }
                if incoming.properties.is_ok() {
                    incoming.body.extend_from_slice(&frame.payload);
                }
                self.maybe_complete(frame.channel);
                Ok(false)
            }
            other => Err(Error::Protocol(format!("unknown frame type {other}"))),
        }
    }

    /// The message on `channel` whose content header comes next.
    fn awaiting_header(&mut self, channel: u16) -> Result<&mut Incoming, Error> {
        self.channels
            .get_mut(&channel)
            .and_then(|c| c.incoming.as_mut())
            .filter(|i| i.body_size.is_none())
            .ok_or_else(|| Error::Protocol("a content header out of place".into()))
    }

    fn connection_method(&mut self, method: Method) -> Result<bool, Error> {
        match method {
            Method::ConnectionClose(close) => {
                let _ = put_method(&mut self.out, 0, &Method::ConnectionCloseOk);
                Err(Error::ConnectionClosed {
                    code: close.code,
                    text: close.text.to_string_lossy(),
                })
            }
            Method::ConnectionCloseOk => Ok(true),
            Method::ConnectionBlocked { reason } => {
                tracing::warn!(reason = %reason.to_string_lossy(), "the broker blocked publishing");
                self.set_blocked(true);
                Ok(false)
            }
            Method::ConnectionUnblocked => {
                tracing::info!("the broker unblocked publishing");
                self.set_blocked(false);
                Ok(false)
            }
            other => {
                tracing::debug!(ids = ?other.ids(), "ignored a connection method");
                Ok(false)
            }
        }
    }

    fn set_blocked(&self, blocked: bool) {
        if let Some(shared) = self.shared.upgrade() {
            shared.blocked.store(blocked, Ordering::Relaxed);
        }
    }

    fn channel_method(&mut self, id: u16, method: Method) -> Result<(), Error> {
        let Some(state) = self.channels.get_mut(&id) else {
            if method == Method::ChannelCloseOk {
                // Both sides closed it at once; it is gone already.
                return Ok(());
            }
            return Err(Error::Protocol(format!(
                "a method on channel {id}, not open"
            )));
        };
        if state.incoming.is_some() {
            return Err(Error::Protocol("a method inside a message".into()));
        }
        match method {
            Method::BasicDeliver {
                tag,
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
            } => {
                state.incoming = Some(Incoming {
                    what: IncomingKind::Deliver {
                        tag,
                        delivery_tag,
                        redelivered,
                        exchange,
                        routing_key,
                    },
                    body_size: None,
                    properties: Ok(crate::Properties::default()),
                    body: BytesMut::new(),
                    received: 0,
                });
            }
            Method::BasicReturn {
                code,
                exchange,
                routing_key,
                ..
            } => {
                state.incoming = Some(Incoming {
                    what: IncomingKind::Return {
                        code,
                        exchange,
                        routing_key,
                    },
                    body_size: None,
                    properties: Ok(crate::Properties::default()),
                    body: BytesMut::new(),
                    received: 0,
                });
            }
            Method::BasicAck {
                delivery_tag,
                multiple,
            } => confirm(state, delivery_tag, multiple, true),
            Method::BasicNack {
                delivery_tag,
                multiple,
                ..
            } => confirm(state, delivery_tag, multiple, false),
            Method::ChannelClose(close) => {
                let error = Error::ChannelClosed {
                    code: close.code,
                    text: close.text.to_string_lossy(),
                };
                tracing::debug!(channel = id, %error, "the broker closed a channel");
                state.fail(&error);
                if state.closing {
                    // We closed it too: its id stays taken until our close-ok arrives, so it
                    // cannot be answered on a channel opened in between.
                    state.waiters.push_back(Box::new(drop));
                } else {
                    self.channels.remove(&id);
                }
                put_method(&mut self.out, id, &Method::ChannelCloseOk)?;
            }
            Method::ChannelCloseOk => {
                if let Some(waiter) = state.waiters.pop_front() {
                    waiter(Ok(Method::ChannelCloseOk));
                }
                state.fail(&channel_gone());
                self.channels.remove(&id);
            }
            Method::ChannelFlow { active } => {
                put_method(&mut self.out, id, &Method::ChannelFlowOk { active })?;
            }
            Method::BasicCancel { tag, no_wait } => {
                // The broker cancelled a consumer (its queue was deleted): its stream ends.
                state.consumers.remove(tag.as_bytes());
                if !no_wait {
                    put_method(&mut self.out, id, &Method::BasicCancelOk { tag })?;
                }
            }
            Method::BasicCancelOk { tag } => {
                state.consumers.remove(tag.as_bytes());
                if let Some(waiter) = state.waiters.pop_front() {
                    waiter(Ok(Method::BasicCancelOk { tag }));
                }
            }
            Method::Other { class, method } => {
                tracing::debug!(class, method, "ignored a channel method");
            }
            reply => match state.waiters.pop_front() {
                Some(waiter) => waiter(Ok(reply)),
                None => tracing::debug!(ids = ?reply.ids(), "an unexpected reply was ignored"),
            },
        }
        Ok(())
    }

    /// Hands over a message once its body is complete.
    fn maybe_complete(&mut self, id: u16) {
        let Some(state) = self.channels.get_mut(&id) else {
            return;
        };
        let done = state
            .incoming
            .as_ref()
            .is_some_and(|i| i.body_size.is_some_and(|size| i.received >= size));
        if !done {
            return;
        }
        let Some(incoming) = state.incoming.take() else {
            return;
        };
        match incoming.what {
            IncomingKind::Return {
                code,
                exchange,
                routing_key,
            } => {
                let message_id = incoming
                    .properties
                    .as_ref()
                    .ok()
                    .and_then(|p| p.message_id.clone());
                if let (Some(id), Some((_, unconfirmed))) = (message_id, state.confirms.as_mut())
                    && let Some(pending) = unconfirmed
                        .values_mut()
                        .find(|p| !p.returned && p.message_id.as_ref() == Some(&id))
                {
                    pending.returned = true;
                }
                if let Some(sink) = &state.returns {
                    let returned = Returned {
                        code,
                        exchange,
                        routing_key,
                        properties: incoming.properties,
                        body: incoming.body.freeze(),
                    };
                    if sink.try_send(returned).is_err() {
                        tracing::debug!(
                            channel = id,
                            "a returned message was dropped: nobody reads them"
                        );
                    }
                }
            }
            IncomingKind::Deliver {
                tag,
                delivery_tag,
                redelivered,
                exchange,
                routing_key,
            } => {
                let delivery = Delivery {
                    delivery_tag,
                    redelivered,
                    exchange,
                    routing_key,
                    properties: incoming.properties,
                    body: incoming.body.freeze(),
                };
                let mut gone = false;
                let taken = match state.consumers.get(tag.as_bytes()) {
                    Some(consumer) => match consumer.deliveries.try_send(delivery) {
                        Ok(()) => true,
                        Err(full_or_gone) => {
                            gone = matches!(full_or_gone, mpsc::error::TrySendError::Closed(_));
                            if !consumer.no_ack {
                                // Back to the queue for another consumer.
                                let _ = put_method(
                                    &mut self.out,
                                    id,
                                    &Method::BasicReject {
                                        delivery_tag,
                                        requeue: true,
                                    },
                                );
                            }
                            false
                        }
                    },
                    None => false,
                };
                if gone {
                    // Its stream was dropped and its cancel lost: cancel it here, or the
                    // broker would hand every requeued delivery straight back to it.
                    state.consumers.remove(tag.as_bytes());
                    let _ = put_method(
                        &mut self.out,
                        id,
                        &Method::BasicCancel { tag, no_wait: true },
                    );
                }
                if !taken && let Some(shared) = self.shared.upgrade() {
                    shared.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

fn confirm(state: &mut ChannelState, tag: u64, multiple: bool, ack: bool) {
    let Some((_, unconfirmed)) = state.confirms.as_mut() else {
        return;
    };
    let settled: Vec<u64> = if multiple {
        unconfirmed.range(..=tag).map(|(seq, _)| *seq).collect()
    } else {
        vec![tag]
    };
    for seq in settled {
        if let Some(pending) = unconfirmed.remove(&seq) {
            let outcome = match (ack, pending.returned) {
                (_, true) => Confirmation::Returned,
                (true, false) => Confirmation::Ack,
                (false, false) => Confirmation::Nack,
            };
            let _ = pending.reply.send(Ok(outcome));
        }
    }
}

fn channel_gone() -> Error {
    Error::ChannelClosed {
        code: 0,
        text: "the channel is closed".into(),
    }
}

fn fail_command(command: Command, error: &Error) {
    match command {
        Command::OpenChannel { reply } => drop(reply.send(Err(error.clone()))),
        Command::Call { reply, .. } => drop(reply.send(Err(error.clone()))),
        Command::Publish {
            confirm: Some(confirm),
            ..
        } => drop(confirm.send(Err(error.clone()))),
        Command::Publish { confirm: None, .. } | Command::Returns { .. } => {}
        Command::Close { reply } => drop(reply.send(Ok(()))),
        Command::Send { .. } => {}
    }
}
