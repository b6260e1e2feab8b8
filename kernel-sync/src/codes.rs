//! The dotted codes a [`SyncError`](crate::SyncError) carries once converted into the platform
//! [`Error`](kernel_errors::Error).
//!
//! Match on these (and on the [`Kind`](kernel_errors::Kind)), never on the description.

/// Someone else held the lock for the whole `wait_for`.
/// Kind [`Conflict`](kernel_errors::Kind::Conflict).
pub const CONTENDED: &str = "kernel.sync.contended";

/// A lock or leader id is empty, too long, or has a character outside the allowed set.
/// Kind [`BadRequest`](kernel_errors::Kind::BadRequest).
pub const INVALID_ID: &str = "kernel.sync.invalidid";

/// A namespace (the service name locks are kept under) is invalid.
/// Kind [`BadRequest`](kernel_errors::Kind::BadRequest).
pub const INVALID_NAMESPACE: &str = "kernel.sync.invalidnamespace";

/// `hold_for` is below the backend's minimum.
/// Kind [`BadRequest`](kernel_errors::Kind::BadRequest).
pub const INVALID_HOLD_FOR: &str = "kernel.sync.invalidholdfor";

/// A backend setting (session timeout, suspension grace, replication) is invalid.
/// Kind [`BadRequest`](kernel_errors::Kind::BadRequest).
pub const INVALID_CONFIG: &str = "kernel.sync.invalidconfig";

/// The lock or leadership was lost before it was released: node deleted, session expired,
/// connection suspended too long, refresh failed, or hold time exceeded.
/// Kind [`Conflict`](kernel_errors::Kind::Conflict).
pub const LOST: &str = "kernel.sync.lost";

/// The ZooKeeper session expired during the operation; the next operation opens a new one.
/// Kind [`InternalServerError`](kernel_errors::Kind::InternalServerError).
pub const SESSION_EXPIRED: &str = "kernel.sync.sessionexpired";

/// The engine could not be reached, or failed the operation.
/// Kind [`InternalServerError`](kernel_errors::Kind::InternalServerError).
pub const BACKEND: &str = "kernel.sync.backend";
