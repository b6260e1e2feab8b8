//! [`Error`]: what can go wrong talking to the broker.

use std::sync::Arc;

/// An AMQP operation failed.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not an `amqp://` or `amqps://` URL this client can use. The text never
    /// contains the password.
    #[error("invalid AMQP URL: {0}")]
    InvalidUrl(String),
    /// The socket failed (connect, read, write, TLS handshake).
    #[error("AMQP I/O error: {0}")]
    Io(Arc<std::io::Error>),
    /// The TLS handshake failed (most often: the broker's certificate is not trusted, or not
    /// for this host name). Not worth retrying until the configuration changes.
    #[error("TLS: {0}")]
    Tls(String),
    /// No answer from the broker in time (connecting, or heartbeats missed).
    #[error("the broker did not answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The broker refused the login (`ACCESS_REFUSED`, or the connection closed during it).
    #[error("the broker refused the login: {0}")]
    AccessRefused(String),
    /// The broker closed the connection, or it closed for another reason.
    #[error("connection closed: {code} {text}")]
    ConnectionClosed {
        /// The AMQP reply code (320 for a broker shutdown; 0 when the socket just ended).
        code: u16,
        /// The broker's reason.
        text: String,
    },
    /// The broker closed the channel (for instance a declaration that conflicts, 406).
    #[error("channel closed by the broker: {code} {text}")]
    ChannelClosed {
        /// The AMQP reply code.
        code: u16,
        /// The broker's reason.
        text: String,
    },
    /// The broker broke the protocol (a frame this client cannot read). The connection is closed.
    #[error("AMQP protocol error: {0}")]
    Protocol(String),
    /// A name, or a property we were asked to send, is longer than a short string's 255 bytes.
    /// Nothing was sent.
    #[error("a short string of {len} bytes is over the 255-byte limit")]
    ShortStringTooLong {
        /// Its length.
        len: usize,
    },
    /// A message we were asked to send cannot be carried: its properties and headers do not fit
    /// in one frame of the negotiated size (the broker would close the whole connection).
    /// Nothing was sent.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// What: `properties and headers`, `long string`, `field table`.
        what: &'static str,
        /// Its encoded size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Every channel number is in use.
    #[error("no free channel (the broker allows {0})")]
    NoFreeChannel(u16),
}

impl Error {
    /// Whether the error leaves the connection unusable (as opposed to one call or channel).
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::Io(_)
                | Error::Tls(_)
                | Error::Timeout(_)
                | Error::AccessRefused(_)
                | Error::ConnectionClosed { .. }
                | Error::Protocol(_)
        )
    }
}

impl From<std::io::Error> for Error {
    fn from(error: std::io::Error) -> Self {
        Error::Io(Arc::new(error))
    }
}
