//! [`FencingToken`]: a number that only goes up, for the shared resource to check.

use std::fmt;

/// A number that strictly increases across successive holders of one lock (or successive
/// leaders of one election), so that the resource the lock protects can refuse a stale
/// holder's writes.
///
/// A lock alone cannot stop a holder that was paused (GC, swap, a stopped VM, a long network
/// delay) past the moment it lost the lock and then carries on writing. The resource can: it
/// remembers the highest token it has seen and rejects writes carrying a lower one
/// (Kleppmann, "How to do distributed locking", 2016). Send the token with every write made
/// under the lock and have the store compare it; a token that passes the check proves the
/// writer was the latest holder *as far as this store knows*.
///
/// Where the numbers come from, per backend:
///
/// | backend | token | why it increases |
/// |---|---|---|
/// | [`ZkLockBackend`](crate::ZkLockBackend) | the `czxid` (creation transaction id) of the holder's lock node | successive holders own successively created nodes, and ZooKeeper's transaction ids only grow |
/// | [`CassandraGlobalLock`](crate::CassandraGlobalLock) | the row's `fence` column, advanced by compare-and-set in the same lightweight transaction that grants the lock | each grant moves it from the value read to that value plus one, or does not apply |
/// | [`MemoryLockBackend`](crate::MemoryLockBackend) | a counter in the backend, taken under the lock table's mutex | one process, one counter |
///
/// Tokens of different locks are not comparable in general (on ZooKeeper and in memory they
/// happen to share one sequence; on Cassandra each lock has its own). Tokens may skip values.
///
/// # Example: a store that checks the token
///
/// ```
/// use std::collections::HashMap;
/// use kernel_sync::FencingToken;
///
/// /// A key-value store that keeps, per key, the highest token that wrote it.
/// #[derive(Default)]
/// struct FencedStore {
///     rows: HashMap<String, (FencingToken, String)>,
/// }
///
/// impl FencedStore {
///     /// The write of a holder whose token is lower than one already seen is refused.
///     fn put(&mut self, key: &str, token: FencingToken, value: &str) -> Result<(), String> {
///         match self.rows.get(key) {
///             Some((seen, _)) if token < *seen => {
///                 Err(format!("stale token {token}: {seen} already wrote {key}"))
///             }
///             _ => {
///                 self.rows.insert(key.to_owned(), (token, value.to_owned()));
///                 Ok(())
///             }
///         }
///     }
/// }
///
/// let mut store = FencedStore::default();
/// let (paused_holder, next_holder) = (FencingToken::new(33), FencingToken::new(34));
/// store.put("ledger", next_holder, "closed by 34").unwrap();
/// // The holder with 33 wakes from a long pause and tries to write: refused.
/// assert!(store.put("ledger", paused_holder, "closed by 33").is_err());
/// ```
///
/// In Cassandra the same check is a lightweight transaction,
/// `UPDATE ledger SET value = ?, fence = ? WHERE key = ? IF fence <= ?`; in SQL it is
/// `UPDATE ledger SET value = $1, fence = $2 WHERE key = $3 AND fence <= $2` (not applied, or
/// zero rows updated, means a newer holder got there first). [`docs/sync.md`](https://github.com/kernel-platform/kernel/blob/main/docs/sync.md) discusses what the
/// token does not protect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Below every token a backend hands out.
    pub const ZERO: FencingToken = FencingToken(0);

    /// A token with the given value (for stores that read one back, and for tests).
    pub const fn new(value: u64) -> Self {
        FencingToken(value)
    }

    /// The value, to send along with writes.
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<FencingToken> for u64 {
    fn from(token: FencingToken) -> u64 {
        token.0
    }
}
