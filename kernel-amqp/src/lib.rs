//! A small AMQP 0-9-1 client for RabbitMQ that nothing a broker user publishes can break.
//!
//! Any user of a broker can publish any bytes to the exchanges a service reads from. A
//! client that parses strictly (property strings as UTF-8, header tables without a depth
//! limit) turns one such message into a dropped connection, and, since the message is then
//! redelivered, into a service that cannot stay up. This client reads the wire leniently:
//!
//! - every short string (message id, reply-to, header names, routing keys) is a
//!   [`ShortString`] of bytes; whether it must be UTF-8 is its reader's decision;
//! - field tables nest at most [`Limits::max_table_depth`] deep, bodies are at most
//!   [`Limits::max_body`] long (larger ones are discarded as they stream in);
//! - a message whose properties cannot be read arrives as a [`Delivery`] whose `properties` is
//!   a [`DecodeError`], so that its consumer can refuse it, and the connection carries on.
//!
//! What it sends is checked before it is sent: a property list that would not fit in one frame
//! is [`Error::TooLarge`], never a broker-side connection close.
//!
//! It does what the kernel's transport needs and no more: PLAIN login, heartbeats,
//! channels, exchange and queue declarations, consumers with or without acks, publishing with
//! confirms and `mandatory` returns, and TLS (feature `tls`). Reconnecting is left to the
//! caller ([`Connection::closed`] says when).
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), kernel_amqp::Error> {
//! use futures_util::StreamExt;
//! use kernel_amqp::{ConnectOptions, Connection, Properties, QueueOptions, FieldTable};
//!
//! let connection = Connection::connect(ConnectOptions::from_url("amqp://127.0.0.1:5672")?).await?;
//! let channel = connection.open_channel().await?;
//! channel.queue_declare("work", QueueOptions::default(), FieldTable::new()).await?;
//! channel.basic_qos(10).await?;
//! let mut consumer = channel.basic_consume("work", "worker-1", false, 10).await?;
//! channel.basic_publish("", "work", false, &Properties::default(), b"job").await?;
//! let delivery = consumer.next().await.expect("a delivery");
//! match &delivery.properties {
//!     Ok(_) => channel.basic_ack(delivery.delivery_tag, false).await?,
//!     // Unreadable: refuse it for good rather than see it again.
//!     Err(_) => channel.basic_reject(delivery.delivery_tag, false).await?,
//! }
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `tls` | `amqps://` URLs, through rustls (ring) | no |

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod channel;
mod connection;
mod error;
mod frame;
mod options;
mod properties;
mod tls;
mod types;

pub use channel::{
    Channel, Confirmation, Consumer, Delivery, ExchangeKind, QueueOptions, Returned, Returns,
};
pub use connection::Connection;
pub use error::Error;
pub use options::{ConnectOptions, DEFAULT_MAX_BODY, DEFAULT_MAX_HEADER, Limits};
pub use properties::Properties;
pub use types::{
    DEFAULT_MAX_TABLE_DEPTH, DecodeError, FieldTable, FieldValue, MAX_TABLE_ENTRIES, ShortString,
};

/// Decoding entry points for fuzzing and property tests: they take any bytes and must never
/// panic. Not part of the stable API.
#[doc(hidden)]
pub mod fuzz {
    use bytes::Bytes;

    /// Decodes a content header payload (class, weight, size, flags, properties); the
    /// properties if they are readable.
    pub fn content_header(bytes: &[u8]) -> Option<crate::Properties> {
        crate::properties::decode_header(Bytes::copy_from_slice(bytes), 8)
            .ok()?
            .properties
            .ok()
    }

    /// Decodes a method frame payload.
    pub fn method(bytes: &[u8]) {
        let _ = crate::frame::Method::decode(Bytes::copy_from_slice(bytes), 8);
    }

    /// Splits bytes into frames.
    pub fn frames(bytes: &[u8]) {
        use tokio_util::codec::Decoder;
        let mut codec = crate::frame::FrameCodec::new(131_072, 1 << 20);
        let mut buf = bytes::BytesMut::from(bytes);
        while let Ok(Some(_)) = codec.decode(&mut buf) {}
    }
}
