//! [`Failure`]: why a command failed, and the exit code that says so.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | [`EXIT_ERROR`] 1 | an error reply, or any failure not listed below |
//! | [`EXIT_USAGE`] 2 | a usage or configuration mistake |
//! | [`EXIT_UNREACHABLE`] 3 | nobody answered: timeout, no route, connection lost |
//! | [`EXIT_SCHEMA`] 4 | `call --check`: the request or response does not match the schema |

use std::fmt;

use kernel_errors::{Error, Kind};

use crate::check::SchemaViolation;
use crate::colour::{BAD, Paint};

/// Exit code of an error reply, or any failure not listed below.
pub(crate) const EXIT_ERROR: u8 = 1;
/// Exit code of a usage or configuration mistake (bad JSON, no broker URL, no session).
pub(crate) const EXIT_USAGE: u8 = 2;
/// Exit code when nobody answered: timeout, no route, connection lost.
pub(crate) const EXIT_UNREACHABLE: u8 = 3;
/// Exit code of `call --check` when the request (then not sent) or the response does not
/// match the endpoint's JSON Schema.
pub(crate) const EXIT_SCHEMA: u8 = 4;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The user asked for something that cannot be done as asked.
    Usage(String),
    /// A platform error: an error reply, or the client's own (timeout, no route).
    Platform(Error),
    /// `call --check` found the request or the response at odds with the endpoint's schema.
    Schema(SchemaViolation),
    /// Anything else (a file that cannot be written).
    Other(String),
    /// A failure whose JSON the command has already printed (bench's report): with `--json`
    /// nothing more goes to stdout; the exit code and the stderr line are the inner one's.
    Reported(Box<Failure>),
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
            Failure::Schema(_) => EXIT_SCHEMA,
            Failure::Platform(_) | Failure::Other(_) => EXIT_ERROR,
            Failure::Reported(inner) => inner.exit_code(),
        }
    }

    /// The failure as one line for stderr: `KIND (code): description` for a platform error,
    /// the kind coloured if `paint` is on.
    pub(crate) fn render(&self, paint: Paint) -> String {
        match self {
            Failure::Usage(message) | Failure::Other(message) => message.clone(),
            Failure::Schema(violation) => violation.to_string(),
            Failure::Reported(inner) => inner.render(paint),
            Failure::Platform(error) => format!(
                "{} ({}): {}",
                paint.paint(error.kind().as_str(), BAD),
                error.code(),
                error.description()
            ),
        }
    }

    /// What `--json` prints on stdout for this failure, if anything: a platform error as
    /// `{"kind", "code", "description"}`, a schema violation as `{"kind":
    /// "SCHEMA_VIOLATION", "side", "service", "endpoint", "violations"}`.
    pub(crate) fn json(&self) -> Option<serde_json::Value> {
        match self {
            Failure::Platform(error) => Some(serde_json::json!({
                "kind": error.kind().as_str(),
                "code": error.code(),
                "description": error.description(),
            })),
            Failure::Schema(violation) => Some(violation.json()),
            Failure::Usage(_) | Failure::Other(_) | Failure::Reported(_) => None,
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

impl From<SchemaViolation> for Failure {
    fn from(violation: SchemaViolation) -> Self {
        Failure::Schema(violation)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(Paint::OFF))
    }
}
