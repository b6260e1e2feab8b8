//! [`SyncError`]: why a lock or a leadership could not be had, or was lost.

use std::sync::Arc;
use std::time::Duration;

use kernel_errors::{Error, Kind};

use crate::{LockId, LossReason, codes};

/// The underlying engine error of a [`SyncError`], shared so that `SyncError` stays `Clone`.
pub type BackendSource = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Why a lock or a leadership could not be had, or was lost.
///
/// Every fallible call of this crate returns it. It converts into the platform
/// [`Error`](kernel_errors::Error) with `?` (see the table), so a handler that takes a lock
/// just propagates it. Match on the variant here, or on [`kind`](SyncError::kind) and
/// [`code`](SyncError::code) there; never on the text.
///
/// | variant | permanent? | kind | code | what to do |
/// |---|---|---|---|---|
/// | [`Contended`](SyncError::Contended) | no | `Conflict` | [`codes::CONTENDED`] | someone else holds it: retry later, or wait longer |
/// | [`InvalidId`](SyncError::InvalidId) | yes | `BadRequest` | [`codes::INVALID_ID`] | fix the id |
/// | [`InvalidNamespace`](SyncError::InvalidNamespace) | yes | `BadRequest` | [`codes::INVALID_NAMESPACE`] | fix the service name |
/// | [`InvalidHoldFor`](SyncError::InvalidHoldFor) | yes | `BadRequest` | [`codes::INVALID_HOLD_FOR`] | hold within the backend's range |
/// | [`InvalidConfig`](SyncError::InvalidConfig) | yes | `BadRequest` | [`codes::INVALID_CONFIG`] | fix the builder setting |
/// | [`Lost`](SyncError::Lost) | no | `Conflict` | [`codes::LOST`] | the work done under the lock was not exclusive: undo or re-check it, then acquire again |
/// | [`SessionExpired`](SyncError::SessionExpired) | no | `InternalServerError` | [`codes::SESSION_EXPIRED`] | retry: the next call opens a new session |
/// | [`Backend`](SyncError::Backend) | no | `InternalServerError` | [`codes::BACKEND`] | the engine is unreachable or failing: retry with back-off |
///
/// ```
/// use kernel_errors::Kind;
/// use kernel_sync::{LockId, SyncError, codes};
///
/// let error = LockId::new("billing//close").unwrap_err();
/// assert!(matches!(error, SyncError::InvalidId { .. }));
/// let platform = kernel_errors::Error::from(error);
/// assert_eq!(platform.kind(), Kind::BadRequest);
/// assert_eq!(platform.code(), codes::INVALID_ID);
/// ```
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The lock was held by someone else for the whole `wait_for`. Our ZooKeeper node was
    /// removed; a Cassandra claim that may have applied is deleted in the background (one
    /// still in flight can land after that, and then blocks others until its TTL).
    #[error("lock {id} is held elsewhere: not acquired within {waited:?}")]
    Contended {
        /// The lock asked for.
        id: LockId,
        /// How long we waited.
        waited: Duration,
    },

    /// The lock or leader id is not acceptable; see [`LockId`] for the rules.
    #[error("invalid lock id {id:?}: {reason}")]
    InvalidId {
        /// The id as given.
        id: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// The namespace is not acceptable; see [`Namespace`](crate::Namespace) for the rules.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace as given.
        namespace: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// `hold_for` is below the backend's minimum (1 s for region locks, 2 s for the global
    /// lock, as in H2) or above [`MAX_HOLD_FOR`](crate::MAX_HOLD_FOR) (365 days).
    #[error("hold_for {hold_for:?} is outside {minimum:?}..={maximum:?}")]
    InvalidHoldFor {
        /// The hold time asked for.
        hold_for: Duration,
        /// The backend's minimum.
        minimum: Duration,
        /// The longest any backend accepts, [`MAX_HOLD_FOR`](crate::MAX_HOLD_FOR).
        maximum: Duration,
    },

    /// A backend builder setting is invalid.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The builder setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The lock or leadership was lost before it was released; `reason` says how. Returned
    /// by [`LockGuard::unlock`](crate::LockGuard::unlock) when the guard had already lost the
    /// lock, and what a [`LossReason`] converts into.
    #[error("lock {id} was lost: {reason}")]
    Lost {
        /// The lock or leader id.
        id: LockId,
        /// How it was lost.
        reason: LossReason,
    },

    /// The ZooKeeper session expired while the operation ran. Everything held through that
    /// session has been reported lost; the next operation opens a new session.
    #[error("zookeeper session expired")]
    SessionExpired,

    /// The engine could not be reached in time, or failed the operation.
    #[error("{backend} failed to {operation}")]
    Backend {
        /// `zookeeper`, `cassandra` or `memory`.
        backend: &'static str,
        /// What we asked of it, e.g. `create the lock node`.
        operation: &'static str,
        /// The engine's own error.
        #[source]
        source: BackendSource,
    },
}

impl SyncError {
    /// The platform kind this error converts into.
    pub fn kind(&self) -> Kind {
        match self {
            SyncError::Contended { .. } | SyncError::Lost { .. } => Kind::Conflict,
            SyncError::InvalidId { .. }
            | SyncError::InvalidNamespace { .. }
            | SyncError::InvalidHoldFor { .. }
            | SyncError::InvalidConfig { .. } => Kind::BadRequest,
            SyncError::SessionExpired | SyncError::Backend { .. } => Kind::InternalServerError,
        }
    }

    /// The dotted code this error converts into; one of the [`codes`].
    pub fn code(&self) -> &'static str {
        match self {
            SyncError::Contended { .. } => codes::CONTENDED,
            SyncError::InvalidId { .. } => codes::INVALID_ID,
            SyncError::InvalidNamespace { .. } => codes::INVALID_NAMESPACE,
            SyncError::InvalidHoldFor { .. } => codes::INVALID_HOLD_FOR,
            SyncError::InvalidConfig { .. } => codes::INVALID_CONFIG,
            SyncError::Lost { .. } => codes::LOST,
            SyncError::SessionExpired => codes::SESSION_EXPIRED,
            SyncError::Backend { .. } => codes::BACKEND,
        }
    }

    /// Whether trying again later can succeed. Invalid ids, namespaces, hold times and
    /// settings are permanent; contention, loss and engine failures are transient.
    pub fn is_transient(&self) -> bool {
        !matches!(self.kind(), Kind::BadRequest)
    }

    /// An engine failure, keeping the engine's error as the source.
    #[cfg_attr(
        not(any(feature = "zookeeper", feature = "cassandra")),
        allow(dead_code)
    )]
    pub(crate) fn backend(
        backend: &'static str,
        operation: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SyncError::Backend {
            backend,
            operation,
            source: Arc::new(source),
        }
    }

    /// An engine failure described by a message rather than an engine error.
    pub(crate) fn backend_message(
        backend: &'static str,
        operation: &'static str,
        message: impl Into<String>,
    ) -> Self {
        SyncError::Backend {
            backend,
            operation,
            source: Arc::new(Message(message.into())),
        }
    }
}

/// A plain message used as the source of a [`SyncError::Backend`].
#[derive(Debug)]
struct Message(String);

impl std::fmt::Display for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

impl From<SyncError> for Error {
    /// Maps to the kind and code in [`SyncError`]'s table; the `SyncError` is kept as the
    /// source (in process only).
    fn from(error: SyncError) -> Self {
        Error::new(error.kind(), error.code(), error.to_string()).with_source(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_variant() -> Vec<SyncError> {
        let id = LockId::new("billing/close").expect("a valid id");
        vec![
            SyncError::Contended {
                id: id.clone(),
                waited: Duration::from_secs(1),
            },
            SyncError::InvalidId {
                id: String::new(),
                reason: "empty",
            },
            SyncError::InvalidNamespace {
                namespace: String::new(),
                reason: "empty",
            },
            SyncError::InvalidHoldFor {
                hold_for: Duration::ZERO,
                minimum: Duration::from_secs(1),
                maximum: crate::MAX_HOLD_FOR,
            },
            SyncError::InvalidConfig {
                field: "session_timeout",
                reason: "zero".into(),
            },
            SyncError::Lost {
                id,
                reason: LossReason::SessionExpired,
            },
            SyncError::SessionExpired,
            SyncError::backend_message("zookeeper", "connect", "refused"),
        ]
    }

    #[test]
    fn every_variant_converts_to_its_kind_and_code() {
        let expected = [
            (Kind::Conflict, codes::CONTENDED),
            (Kind::BadRequest, codes::INVALID_ID),
            (Kind::BadRequest, codes::INVALID_NAMESPACE),
            (Kind::BadRequest, codes::INVALID_HOLD_FOR),
            (Kind::BadRequest, codes::INVALID_CONFIG),
            (Kind::Conflict, codes::LOST),
            (Kind::InternalServerError, codes::SESSION_EXPIRED),
            (Kind::InternalServerError, codes::BACKEND),
        ];
        for (error, (kind, code)) in every_variant().into_iter().zip(expected) {
            let platform = Error::from(error.clone());
            assert_eq!((platform.kind(), platform.code()), (kind, code), "{error}");
            assert!(std::error::Error::source(&platform).is_some());
        }
    }

    #[test]
    fn only_invalid_input_is_permanent() {
        let permanent: Vec<_> = every_variant()
            .into_iter()
            .filter(|e| !e.is_transient())
            .map(|e| e.code())
            .collect();
        assert_eq!(
            permanent,
            [
                codes::INVALID_ID,
                codes::INVALID_NAMESPACE,
                codes::INVALID_HOLD_FOR,
                codes::INVALID_CONFIG
            ]
        );
    }

    #[test]
    fn sync_error_is_send_sync_clone_and_static() {
        fn assert_bounds<T: Send + Sync + Clone + 'static + std::error::Error>() {}
        assert_bounds::<SyncError>();
    }

    #[test]
    fn messages_are_lowercase_phrases_without_a_period() {
        for error in every_variant() {
            let text = error.to_string();
            assert!(!text.ends_with('.'), "{text}");
            assert!(text.starts_with(|c: char| !c.is_uppercase()), "{text}");
        }
    }
}
