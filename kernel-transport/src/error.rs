//! [`TransportError`] and its mapping onto the platform error.

use kernel_errors::{Error, Kind};

/// Codes of the errors this crate raises.
pub mod codes {
    /// No queue serves the destination.
    pub const NO_ROUTE: &str = "kernel.transport.noroute";
    /// The connection to the broker was lost.
    pub const CONNECTION_LOST: &str = "kernel.transport.connectionlost";
    /// The transport was closed by its owner.
    pub const CLOSED: &str = "kernel.transport.closed";
    /// The broker refused an operation.
    pub const BROKER: &str = "kernel.transport.broker";
    /// The instance queue already has its consumer.
    pub const INSTANCE_QUEUE_TAKEN: &str = "kernel.transport.instancequeuetaken";
    /// A queue, service or topic name is not acceptable.
    pub const INVALID_NAME: &str = "kernel.transport.invalidname";
    /// A message is too large to be carried (its properties and headers do not fit one frame).
    pub const TOO_LARGE: &str = "kernel.transport.toolarge";
    /// The broker URL is not one.
    pub const INVALID_URL: &str = "kernel.transport.invalidurl";
}

/// Moving a message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nobody consumes the destination (for a request: nobody serves the service). Transient:
    /// an instance may start; clients retry it within the deadline.
    #[error("no route to {destination}")]
    NoRoute {
        /// The service, instance queue or topic.
        destination: String,
    },
    /// The connection to the broker is gone. Transient: the transport reconnects; an in-flight
    /// call fails and may be retried.
    #[error("connection to the broker lost")]
    ConnectionLost(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The transport was closed by its owner. Permanent.
    #[error("transport closed")]
    Closed,
    /// The broker refused an operation (e.g. a queue declared with other properties).
    /// Permanent until the broker or the call changes.
    #[error("broker refused the operation: {0}")]
    Broker(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This transport's instance queue already has its consumer: build one `Client` per
    /// transport (clone it, or use `calling_as`) instead of several. Permanent.
    #[error("the instance queue already has its consumer")]
    InstanceQueueTaken,
    /// A name is empty or too long for the broker (255 bytes). Permanent.
    #[error("invalid {what} name {name:?}")]
    InvalidName {
        /// What was named: `service`, `topic`, `queue`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A message cannot be carried: its properties and headers would not fit in one frame
    /// (the broker would close the whole connection), or a property is over 255 bytes. Nothing
    /// was sent. Permanent for this message.
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its encoded size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The broker URL is not one this transport can use. The text never shows the password.
    /// Permanent.
    #[error("invalid broker URL: {0}")]
    InvalidUrl(String),
    /// The list of broker URLs cannot be used (see [`BrokerListError`](crate::BrokerListError)).
    /// The text never shows a password. Permanent.
    #[error("invalid broker list: {0}")]
    InvalidBrokerList(#[from] crate::BrokerListError),
}

impl TransportError {
    /// The platform error kind this maps to.
    pub fn kind(&self) -> Kind {
        match self {
            TransportError::NoRoute { .. } => Kind::NoRoute,
            TransportError::ConnectionLost(_) => Kind::ConnectionLost,
            TransportError::InvalidName { .. } | TransportError::TooLarge { .. } => {
                Kind::BadRequest
            }
            TransportError::Closed
            | TransportError::Broker(_)
            | TransportError::InstanceQueueTaken
            | TransportError::InvalidUrl(_)
            | TransportError::InvalidBrokerList(_) => Kind::InternalServerError,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            TransportError::NoRoute { .. } => codes::NO_ROUTE,
            TransportError::ConnectionLost(_) => codes::CONNECTION_LOST,
            TransportError::Closed => codes::CLOSED,
            TransportError::Broker(_) => codes::BROKER,
            TransportError::InstanceQueueTaken => codes::INSTANCE_QUEUE_TAKEN,
            TransportError::InvalidName { .. } => codes::INVALID_NAME,
            TransportError::TooLarge { .. } => codes::TOO_LARGE,
            TransportError::InvalidUrl(_) | TransportError::InvalidBrokerList(_) => {
                codes::INVALID_URL
            }
        }
    }
}

impl From<TransportError> for Error {
    fn from(error: TransportError) -> Self {
        Error::new(error.kind(), error.code(), error.to_string()).with_source(error)
    }
}

/// The longest service, topic or queue name: an AMQP short string.
pub(crate) const MAX_NAME_LEN: usize = 255;

/// Checks a service, topic or queue name: non-empty and at most 255 bytes (AMQP short string).
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), TransportError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(TransportError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_route_maps_to_a_retryable_platform_error() {
        let error = Error::from(TransportError::NoRoute {
            destination: "svc".into(),
        });
        assert_eq!(error.kind(), Kind::NoRoute);
        assert_eq!(error.code(), codes::NO_ROUTE);
        assert!(error.is_retryable());
    }

    #[test]
    fn names_must_be_short_strings() {
        assert!(check_name("service", "com.example.greeter").is_ok());
        assert!(check_name("service", "").is_err());
        assert!(check_name("topic", &"x".repeat(256)).is_err());
    }
}
