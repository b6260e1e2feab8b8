//! [`Error`]: one failed call, with its kind, code, description and context.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use crate::Kind;

/// The source of an [`Error`]: any error, shared so that `Error` stays `Clone`.
type Source = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// A failed call: a [`Kind`], a dotted code, a description, context, and an optional source.
///
/// This is the one error type of the platform. Handlers return it, clients receive it (decoded
/// from the error reply), and every crate's own error converts into it at the boundary. Callers
/// match on [`kind`](Error::kind) and [`code`](Error::code), never on the text.
///
/// The **code** is a dotted string that names the condition precisely enough for a dashboard or
/// an alert: `com.example.users.get.missing`, `kernel.client.timeout`. The **description** is for
/// humans. **Context** is a list of strings, most general first (the service and endpoint, a
/// user id), that travels with the error over the wire.
///
/// The contents are boxed, so `Result<T, Error>` is one pointer wider than `T` at most.
///
/// ```
/// use kernel_errors::{Error, Kind};
///
/// let error = Error::not_found("com.example.users.get.missing", "user 42 not found")
///     .with_context("com.example.users");
/// assert_eq!(error.kind(), Kind::NotFound);
/// assert_eq!(error.code(), "com.example.users.get.missing");
/// assert_eq!(error.http_status(), 404);
/// assert!(!error.is_retryable());
/// assert_eq!(
///     error.to_string(),
///     "not found (com.example.users.get.missing): user 42 not found"
/// );
/// ```
#[derive(Clone)]
pub struct Error(Box<Inner>);

#[derive(Clone)]
struct Inner {
    kind: Kind,
    code: Cow<'static, str>,
    description: String,
    context: Vec<String>,
    source: Option<Source>,
}

/// Defines one constructor per kind, so that call sites read as the condition they report.
macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $kind:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(code: impl Into<Cow<'static, str>>, description: impl Into<String>) -> Self {
                Self::new(Kind::$kind, code, description)
            }
        )*
    };
}

impl Error {
    /// An error of any kind; prefer the constructor named after the kind.
    pub fn new(
        kind: Kind,
        code: impl Into<Cow<'static, str>>,
        description: impl Into<String>,
    ) -> Self {
        Error(Box::new(Inner {
            kind,
            code: code.into(),
            description: description.into(),
            context: Vec::new(),
            source: None,
        }))
    }

    constructors! {
        /// The server failed: a bug, a panic, a dependency that is down.
        internal_server_error => InternalServerError;
        /// The request was malformed or invalid.
        bad_request => BadRequest;
        /// The request needs a valid session and has none.
        unauthorized => Unauthorized;
        /// The caller lacks the role the endpoint requires.
        forbidden => Forbidden;
        /// The thing asked for does not exist.
        not_found => NotFound;
        /// The request conflicts with the current state.
        conflict => Conflict;
        /// A reply could not be decoded, or had the wrong type.
        bad_response => BadResponse;
        /// No reply arrived before the deadline.
        timeout => Timeout;
        /// The client's circuit breaker for the endpoint is open.
        circuit_broken => CircuitBroken;
        /// The server shed the request: the caller's share of its capacity is used up.
        overloaded => Overloaded;
        /// Nobody serves the service: no queue is bound for it.
        no_route => NoRoute;
        /// The connection to the broker dropped while the call was in flight.
        connection_lost => ConnectionLost;
    }

    /// Adds one entry of context (most general first) and returns the error.
    #[must_use]
    pub fn with_context(mut self, context: impl Into<String>) -> Self {
        self.0.context.push(context.into());
        self
    }

    /// Records the underlying error. It is kept in process for logs and
    /// [`source`](std::error::Error::source); it does not cross the wire.
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.0.source = Some(Arc::from(source.into()));
        self
    }

    /// What sort of failure this is.
    pub fn kind(&self) -> Kind {
        self.0.kind
    }

    /// The dotted code naming the condition.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The human-readable description.
    pub fn description(&self) -> &str {
        &self.0.description
    }

    /// The context entries, most general first.
    pub fn context(&self) -> &[String] {
        &self.0.context
    }

    /// The HTTP status for this error's kind.
    pub fn http_status(&self) -> u16 {
        self.0.kind.http_status()
    }

    /// Whether a client may retry the call; see [`Kind::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        self.0.kind.is_retryable()
    }

    /// Whether the failure counts against a circuit breaker; see [`Kind::trips_breaker`].
    pub fn trips_breaker(&self) -> bool {
        self.0.kind.trips_breaker()
    }
}

impl fmt::Display for Error {
    /// `<kind> (<code>): <description>`, e.g. `timeout (kernel.client.timeout): no reply in 2s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.0.kind, self.0.code, self.0.description
        )
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Error");
        debug
            .field("kind", &self.0.kind)
            .field("code", &self.0.code)
            .field("description", &self.0.description);
        if !self.0.context.is_empty() {
            debug.field("context", &self.0.context);
        }
        if let Some(source) = &self.0.source {
            debug.field("source", source);
        }
        debug.finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer_wide() {
        assert_eq!(size_of::<Error>(), size_of::<usize>());
        assert_eq!(size_of::<Result<(), Error>>(), size_of::<usize>());
    }

    #[test]
    fn error_is_send_sync_and_static() {
        fn assert_bounds<T: Send + Sync + 'static + std::error::Error>() {}
        assert_bounds::<Error>();
    }

    #[test]
    fn each_constructor_sets_its_kind() {
        let built = [
            Error::internal_server_error("c", "d"),
            Error::bad_request("c", "d"),
            Error::unauthorized("c", "d"),
            Error::forbidden("c", "d"),
            Error::not_found("c", "d"),
            Error::conflict("c", "d"),
            Error::bad_response("c", "d"),
            Error::timeout("c", "d"),
            Error::circuit_broken("c", "d"),
            Error::overloaded("c", "d"),
            Error::no_route("c", "d"),
            Error::connection_lost("c", "d"),
        ];
        let kinds: Vec<_> = built.iter().map(Error::kind).collect();
        assert_eq!(kinds, Kind::ALL);
    }

    #[test]
    fn source_is_kept_and_exposed() {
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "pipe closed");
        let error =
            Error::connection_lost("kernel.transport.closed", "broker went away").with_source(io);
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(source.to_string(), "pipe closed");
        assert!(format!("{error:?}").contains("pipe closed"));
    }

    #[test]
    fn codes_may_be_static_or_owned() {
        let endpoint = "get";
        let owned = Error::bad_request(format!("com.example.users.{endpoint}.invalid"), "no id");
        assert_eq!(owned.code(), "com.example.users.get.invalid");
        let fixed = Error::bad_request("com.example.users.get.invalid", "no id");
        assert_eq!(fixed.code(), owned.code());
    }
}
