//! Moving messages between services: the [`Transport`] seam, the [`Envelope`] it carries, and
//! two implementations.
//!
//! `kernel-transport` sits under `kernel-client` and `kernel-server`. It knows nothing of
//! deadlines, retries or handlers: it sends an envelope to a service's work queue, an instance
//! queue or a topic, and consumes those queues. [`InProcessTransport`] is the embedded default
//! (no network, several services in one process); [`AmqpTransport`] implements the wire
//! contract of [`docs/wire.md`](https://github.com/kernel-platform/kernel/blob/main/docs/wire.md) on RabbitMQ, on one node or on a cluster
//! ([`BrokerList`], [`WorkQueueType`]).
//! [`topic_matches`] is the AMQP topic-pattern rule both apply to subscriptions, for tools that
//! need to know which subscription a publication reaches.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kernel_transport::TransportError> {
//! use kernel_transport::{ContentType, Destination, Envelope, InProcessTransport, Source, Transport};
//!
//! let transport = InProcessTransport::new();
//! let mut work = transport.consume(Source::Service { name: "greeter", capacity: 4 }).await?;
//!
//! let mut request = Envelope::request("greeter", "hello", ContentType::Json, "{}".into());
//! request.reply_to = transport.instance_queue().to_owned();
//! transport.send(Destination::Service("greeter"), request).await?;
//!
//! let (request, acker) = work.next().await.expect("a request").into_parts();
//! let mut replies = transport.consume(Source::Instance).await?;
//! transport.send(Destination::Instance(&request.reply_to), request.reply(ContentType::Json, "{}".into())).await?;
//! acker.ack().await?;
//! let reply = replies.next().await.expect("a reply");
//! assert_eq!(reply.envelope.correlation_id, request.message_id);
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `amqp` | [`AmqpTransport`] (RabbitMQ, through kernel-amqp) | yes |
//! | `tls` | `amqps://` URLs for [`AmqpTransport`] (rustls) | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

#[cfg(feature = "amqp")]
mod amqp;
mod brokers;
pub mod codec;
mod config;
mod envelope;
mod error;
mod in_process;
mod topic;
pub mod trace;
mod transport;

#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub use amqp::{
    AmqpTransport, AmqpTransportBuilder, DIRECT_EXCHANGE, INSTANCE_BUFFER,
    INSTANCE_QUEUE_MAX_LENGTH, REQUEST_EXCHANGE, TOPIC_EXCHANGE, subscription_queue,
};
pub use brokers::{BrokerList, BrokerListError};
pub use codec::{CodecError, Message};
pub use config::{QUORUM_QUEUE_EXPIRES, TransportConfig, WorkQueueType, redact_url};
pub use envelope::{ContentType, Envelope, MessageType, PING, PONG, clip, headers, new_message_id};
pub use error::{TransportError, codes};
pub use in_process::{InProcessBroker, InProcessTransport};
/// Limits on received messages for [`AmqpTransport::connect_with`].
#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub use kernel_amqp::Limits as AmqpLimits;
pub use topic::topic_matches;
pub use transport::{Acker, Deliveries, Delivery, Destination, Settle, Source, Transport};
