//! The platform error: what failed, how to name it, and what a caller should do about it.
//!
//! `kernel-errors` sits just above `kernel-proto`. Every other crate returns [`Error`] at its
//! public boundary (converting its own error types into it), handlers return it, and clients
//! receive it decoded from error replies. An error has a [`Kind`], which decides its HTTP
//! status, whether a client retries it and whether it trips a circuit breaker, and a dotted
//! code that names the exact condition.
//!
//! ```
//! use kernel_errors::{Error, Kind};
//! use kernel_proto::platform::PlatformError;
//!
//! fn find_user(id: u64) -> Result<String, Error> {
//!     Err(Error::not_found("com.example.users.get.missing", format!("user {id} not found")))
//! }
//!
//! let error = find_user(42).unwrap_err();
//! assert_eq!(error.kind(), Kind::NotFound);
//! assert!(!error.is_retryable() && !error.trips_breaker());
//!
//! // What an error reply carries, and what the caller decodes from it.
//! let on_the_wire = PlatformError::from(&error);
//! assert_eq!(on_the_wire.http_code, 404);
//! let received = Error::from(on_the_wire);
//! assert_eq!(received.code(), "com.example.users.get.missing");
//! ```
//!
//! See [`docs/errors.md`](https://github.com/kernel-platform/kernel/blob/main/docs/errors.md) in the repository for the codes the kernel itself raises and the wire
//! mapping.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod config;
mod error;
mod kind;
pub mod wire;

pub use config::{INVALID_CONFIG, InvalidConfig};
pub use error::Error;
pub use kind::{Kind, UnknownKind};

/// A result whose error is the platform [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
