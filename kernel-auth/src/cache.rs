//! The [`SessionCache`] seam and its in-memory default.

use std::fmt;
use std::time::{Duration, Instant};

/// What a cache knows of a session id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cached {
    /// The session's signed token (verified again on every read: a cache is not trusted).
    Token(String),
    /// The session is known not to exist (signed out, or the login service said so).
    Missing,
}

/// A cache failed (a remote cache could not be reached). The caller then asks the login
/// service, as if the cache had missed.
#[derive(Debug, thiserror::Error)]
#[error("session cache: {0}")]
pub struct CacheError(pub String);

/// Where verified sessions are kept between requests, shaped like `LockBackend`: two primitive
/// operations, everything else ([`Auth`](crate::Auth): expiry from the token, negative
/// caching, invalidation on sign-out, metrics) above it.
///
/// [`MemorySessionCache`] (moka) is the default; a shared cache (memcached, Redis) implements
/// the same two methods so that instances share what they know.
#[async_trait::async_trait]
pub trait SessionCache: Send + Sync + 'static {
    /// What is cached for `session_id`, if anything.
    ///
    /// # Errors
    /// [`CacheError`] if the cache cannot answer.
    async fn get(&self, session_id: &str) -> Result<Option<Cached>, CacheError>;

    /// Keeps `entry` for `session_id` for at most `ttl` (replacing what was there).
    ///
    /// # Errors
    /// [`CacheError`] if the cache cannot store it.
    async fn put(&self, session_id: &str, entry: Cached, ttl: Duration) -> Result<(), CacheError>;
}

impl fmt::Debug for dyn SessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionCache")
    }
}

/// The most sessions a [`MemorySessionCache`] keeps unless told otherwise.
pub const DEFAULT_CACHE_CAPACITY: u64 = 100_000;

/// An in-process [`SessionCache`] (moka): per-entry expiry, bounded in entries (least
/// recently used evicted first).
#[derive(Clone)]
pub struct MemorySessionCache {
    entries: moka::sync::Cache<String, (Cached, Instant)>,
}

impl fmt::Debug for MemorySessionCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySessionCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl Default for MemorySessionCache {
    fn default() -> Self {
        Self::new(DEFAULT_CACHE_CAPACITY)
    }
}

/// Each entry expires at the instant stored with it.
struct UntilStored;

impl moka::Expiry<String, (Cached, Instant)> for UntilStored {
    fn expire_after_create(
        &self,
        _: &String,
        (_, until): &(Cached, Instant),
        now: Instant,
    ) -> Option<Duration> {
        Some(until.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        (_, until): &(Cached, Instant),
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(until.saturating_duration_since(now))
    }
}

impl MemorySessionCache {
    /// A cache of at most `capacity` sessions.
    pub fn new(capacity: u64) -> Self {
        MemorySessionCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilStored)
                .build(),
        }
    }
}

#[async_trait::async_trait]
impl SessionCache for MemorySessionCache {
    async fn get(&self, session_id: &str) -> Result<Option<Cached>, CacheError> {
        Ok(self.entries.get(session_id).map(|(entry, _)| entry))
    }

    async fn put(&self, session_id: &str, entry: Cached, ttl: Duration) -> Result<(), CacheError> {
        if ttl.is_zero() {
            self.entries.invalidate(session_id);
        } else {
            let until = Instant::now() + ttl;
            self.entries.insert(session_id.to_owned(), (entry, until));
        }
        Ok(())
    }
}
