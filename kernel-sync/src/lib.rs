//! Distributed locks and leader election, with fencing tokens and loss signals.
//!
//! `kernel-sync` defines two seams, [`LockBackend`] (mutual exclusion on named locks) and
//! [`Election`] (one leader at a time), and ships three backends: [`ZkLockBackend`] (H2's
//! region locks and region leaders, on ZooKeeper), [`CassandraGlobalLock`] (H2's global lock,
//! on Cassandra lightweight transactions) and [`MemoryLockBackend`] (one process: the embedded
//! default). Services take locks through one API whatever the backend:
//! `backend.lock(id).wait_for(d).hold_for(d).acquire().await` gives a [`LockGuard`], and
//! `backend.leader(id).await` a [`Leadership`]. It depends on `kernel-errors` (every
//! [`SyncError`] converts into the platform [`kernel_errors::Error`]) and `kernel-inst` (H2's
//! `sync.*` metrics go through the user's [`kernel_inst::Instrumenter`]). A service depends on
//! it directly: the umbrella `kernel` crate does not re-export it.
//!
//! What H2 lacked, and every guard here has:
//! * a [`FencingToken`] that strictly increases across successive holders, for the protected
//!   resource to refuse writes from a holder that lost the lock while paused;
//! * a loss signal ([`LockGuard::lost`], [`Leadership::rescinded`]) that fires when the lock
//!   is lost before unlock: node deleted, session expired or suspended too long, refresh
//!   failed, hold time exceeded.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), kernel_sync::SyncError> {
//! use std::time::Duration;
//! use kernel_sync::{ElectionExt, FencingToken, LockBackendExt, MemoryLockBackend, Namespace};
//!
//! let backend = MemoryLockBackend::new(Namespace::new("com.example.billing")?);
//!
//! let guard = backend
//!     .lock("nightly-close")
//!     .wait_for(Duration::from_secs(5))
//!     .hold_for(Duration::from_secs(60))
//!     .acquire()
//!     .await?;
//! assert!(guard.fencing_token() > FencingToken::ZERO);
//! tokio::select! {
//!     reason = guard.lost() => panic!("lost the lock: {reason}"),
//!     () = async { /* close the books, sending guard.fencing_token() with each write */ } => {}
//! }
//! guard.unlock().await?;
//!
//! let leadership = backend.leader("scheduler").await?;
//! leadership.rescind().await;
//! # Ok(()) }
//! ```
//!
//! With ZooKeeper or Cassandra only the backend changes (and the ids now exclude other
//! processes): see [`ZkLockBackend`] and [`CassandraGlobalLock`].
//!
//! [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md) in the repository explains each guarantee and its limits, and what differs
//! from H2.
//!
//! # Feature flags
//! | feature | enables | default |
//! |---|---|---|
//! | `zookeeper` | [`ZkLockBackend`]: region locks and leader election (zookeeper-client) | yes |
//! | `cassandra` | [`CassandraGlobalLock`]: the global lock (scylla) | yes |
//!
//! Both are on by default because the platform's services use both kinds of lock, as H2's
//! did; [`MemoryLockBackend`] needs no feature.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc(test(attr(deny(warnings))))]

mod backend;
#[cfg(feature = "cassandra")]
mod cassandra;
pub mod codes;
mod config;
mod error;
mod fencing;
mod guard;
mod id;
mod loss;
mod memory;
mod metrics;
mod secret;
#[cfg(feature = "zookeeper")]
mod zookeeper;

pub use backend::{
    DEFAULT_WAIT_FOR, Election, ElectionExt, LockBackend, LockBackendExt, LockRequest, LockSpec,
    MAX_HOLD_FOR,
};
pub(crate) use backend::{REGION_DEFAULT_HOLD_FOR, REGION_MIN_HOLD_FOR, after};
#[cfg(feature = "cassandra")]
#[cfg_attr(docsrs, doc(cfg(feature = "cassandra")))]
pub use cassandra::{CassandraGlobalLock, CassandraGlobalLockBuilder};
pub use config::SyncConfig;
pub use error::{BackendSource, SyncError};
pub use fencing::FencingToken;
pub use guard::{GuardControl, Leadership, LockGuard, ReleaseRequest};
pub use id::{LockId, MAX_ID_LEN, MAX_NAMESPACE_LEN, Namespace};
pub use loss::{LossReason, LossSignal};
pub use memory::MemoryLockBackend;
/// The Cassandra driver the global lock is built on, for
/// [`CassandraGlobalLockBuilder::session_builder`].
#[cfg(feature = "cassandra")]
#[cfg_attr(docsrs, doc(cfg(feature = "cassandra")))]
pub use scylla;
pub use secret::Secret;
#[cfg(feature = "zookeeper")]
#[cfg_attr(docsrs, doc(cfg(feature = "zookeeper")))]
pub use zookeeper::{ZkLockBackend, ZkLockBackendBuilder};
