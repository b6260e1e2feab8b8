//! [`Failure`]: why a command failed, and the exit code that says so.

use std::fmt;

use kernel_errors::{Error, Kind};

/// Exit code of an error reply, or any failure not listed below.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code of a usage or configuration mistake (bad JSON, no broker URL, no session).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when nobody answered: timeout, no route, connection lost.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user asked for something that cannot be done as asked.
    Usage(String),
    /// A platform error: an error reply, or the client's own (timeout, no route).
    Platform(Error),
    /// Anything else (a file that cannot be written).
    Other(String),
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Failure::Usage(message.into())
    }

    pub(crate) fn other(message: impl fmt::Display) -> Self {
        Failure::Other(message.to_string())
    }

    /// The process exit code.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Platform(error) if unreachable(error) => EXIT_UNREACHABLE,
            Failure::Platform(_) | Failure::Other(_) => EXIT_ERROR,
        }
    }
}

/// Nobody answered: the call never got a reply.
fn unreachable(error: &Error) -> bool {
    matches!(
        error.kind(),
        Kind::Timeout | Kind::NoRoute | Kind::ConnectionLost | Kind::CircuitBroken
    )
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::Platform(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Other(message) => f.write_str(message),
            Failure::Platform(error) => write!(
                f,
                "{} ({}): {}",
                error.kind().as_str(),
                error.code(),
                error.description()
            ),
        }
    }
}

/// The error as JSON, for `--json`: `{"kind", "code", "description"}`.
pub(crate) fn error_json(error: &Error) -> serde_json::Value {
    serde_json::json!({
        "kind": error.kind().as_str(),
        "code": error.code(),
        "description": error.description(),
    })
}
