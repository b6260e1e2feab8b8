//! [`InvalidConfig`]: a configuration value out of range, named by its key.

use crate::Error;

/// The code of every configuration error: a file that does not parse, a value of the wrong
/// type, or one out of range.
pub const INVALID_CONFIG: &str = "kernel.config.invalid";

/// A configuration value out of range: its key (as written in `kernel.toml`, e.g.
/// `client.breaker.threshold`), the value, and what it must be. Each crate's configuration
/// section checks its own values; converts into the platform [`Error`]
/// (`InternalServerError`, [`INVALID_CONFIG`]).
///
/// ```
/// use kernel_errors::{Error, InvalidConfig};
///
/// let invalid = InvalidConfig::new("threshold", 1.5, "in (0, 1]").within("client.breaker");
/// assert_eq!(invalid.to_string(), "client.breaker.threshold = 1.5: must be in (0, 1]");
/// let error = Error::from(invalid);
/// assert_eq!(error.code(), "kernel.config.invalid");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key} = {value}: must be {expected}")]
pub struct InvalidConfig {
    /// The dotted key.
    pub key: String,
    /// The value, as configured.
    pub value: String,
    /// What it must be.
    pub expected: String,
}

impl InvalidConfig {
    /// `key` has `value`, which is not `expected`.
    pub fn new(key: impl Into<String>, value: impl ToString, expected: impl Into<String>) -> Self {
        InvalidConfig {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }

    /// The same error with its key inside `section` (`section.key`).
    #[must_use]
    pub fn within(mut self, section: &str) -> Self {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

impl From<InvalidConfig> for Error {
    fn from(invalid: InvalidConfig) -> Self {
        Error::internal_server_error(INVALID_CONFIG, invalid.to_string())
    }
}
