//! [`ReplyCache`]: retried requests are answered once.
//!
//! A client retries with the same message id. The instance that took the first attempt keeps
//! a note of it, keyed by `(reply_to, message_id)`, for [`REPLY_CACHE_TTL`]:
//!
//! ```text
//! first arrival ─────────────────────► run the handler, send the reply, keep a copy
//! again, while the first still runs ─► drop it: the first's reply answers the call
//! again, after the first answered ───► send the kept reply again; the handler does not run
//! ```
//!
//! The key includes `reply_to` so that nobody but the caller can fetch a kept reply by
//! guessing its id. The cache is per instance: a retry that another instance takes (competing
//! consumers) runs there. Entries are bounded in bytes ([`REPLY_CACHE_MAX_BYTES`], counting
//! each entry's ids, reply payload and [`REPLY_CACHE_ENTRY_OVERHEAD`]) and time, and evicted
//! least recently used first. A new entry is always admitted: a flood of unique message ids
//! pushes older entries out, but cannot stop the cache from remembering the requests that
//! arrive next (a frequency-based admission policy would refuse them, and silently stop
//! deduplicating ordinary retries).

use std::sync::Arc;
use std::time::Duration;

use kernel_transport::Envelope;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

/// How long an instance remembers a request it answered.
pub const REPLY_CACHE_TTL: Duration = Duration::from_secs(60);
/// The most an instance's reply cache holds, in bytes (the least recently used go first).
pub const REPLY_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// What one entry is counted as beyond its ids and reply payload.
pub const REPLY_CACHE_ENTRY_OVERHEAD: u32 = 256;

/// What to do with an arriving request.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The first arrival: run it, then [`ReplyCache::answered`].
    First,
    /// Another attempt while the first runs: drop it.
    InFlight,
    /// Another attempt after the first was answered: send this again.
    Answered(Arc<Envelope>),
}

/// Requests an instance has taken recently, and their replies once sent.
#[derive(Debug)]
pub(crate) struct ReplyCache {
    entries: Cache<(String, String), Option<Arc<Envelope>>>,
}

impl ReplyCache {
    pub(crate) fn new() -> Self {
        Self::with_max_bytes(REPLY_CACHE_MAX_BYTES)
    }

    fn with_max_bytes(max_bytes: u64) -> Self {
        ReplyCache {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(weigh)
                .eviction_policy(EvictionPolicy::lru())
                .time_to_live(REPLY_CACHE_TTL)
                .build(),
        }
    }

    /// Records the arrival of `request` and says what to do with it. Requests without a
    /// message id or a reply queue are always [`Seen::First`] (there is nothing to match).
    pub(crate) fn arrive(&self, request: &Envelope) -> Seen {
        if request.message_id.is_empty() || request.reply_to.is_empty() {
            return Seen::First;
        }
        let entry = self.entries.entry(key(request)).or_insert_with(|| None);
        if entry.is_fresh() {
            return Seen::First;
        }
        match entry.into_value() {
            None => Seen::InFlight,
            Some(reply) => Seen::Answered(reply),
        }
    }

    /// Keeps the reply sent for `request`, for retries of it.
    pub(crate) fn answered(&self, request: &Envelope, reply: &Envelope) {
        if !request.message_id.is_empty() && !request.reply_to.is_empty() {
            self.entries
                .insert(key(request), Some(Arc::new(reply.clone())));
        }
    }

    /// Forgets `request` (its handling failed before a reply existed), so a retry runs again.
    pub(crate) fn forget(&self, request: &Envelope) {
        self.entries.invalidate(&key(request));
    }
}

fn weigh((reply_to, message_id): &(String, String), reply: &Option<Arc<Envelope>>) -> u32 {
    let payload = reply.as_ref().map_or(0, |reply| reply.payload.len());
    u32::try_from(reply_to.len() + message_id.len() + payload)
        .unwrap_or(u32::MAX)
        .saturating_add(REPLY_CACHE_ENTRY_OVERHEAD)
}

fn key(request: &Envelope) -> (String, String) {
    (request.reply_to.clone(), request.message_id.clone())
}

#[cfg(test)]
mod tests {
    use kernel_transport::ContentType;

    use super::*;

    fn request(id: &str, reply_to: &str) -> Envelope {
        let mut request = Envelope::request("svc", "ep", ContentType::Protobuf, Default::default());
        request.message_id = id.into();
        request.reply_to = reply_to.into();
        request
    }

    #[test]
    fn first_then_in_flight_then_answered() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        assert!(matches!(cache.arrive(&r), Seen::First));
        assert!(matches!(cache.arrive(&r), Seen::InFlight));
        let reply = r.reply(ContentType::Protobuf, "ok".into());
        cache.answered(&r, &reply);
        match cache.arrive(&r) {
            Seen::Answered(kept) => assert_eq!(*kept, reply),
            other => panic!("expected the kept reply, got {other:?}"),
        }
    }

    #[test]
    fn the_same_id_from_another_caller_is_a_new_request() {
        let cache = ReplyCache::new();
        assert!(matches!(
            cache.arrive(&request("m-1", "instance-a")),
            Seen::First
        ));
        assert!(matches!(
            cache.arrive(&request("m-1", "instance-b")),
            Seen::First
        ));
    }

    #[test]
    fn a_flood_of_unique_ids_does_not_stop_dedupe_of_the_next_request() {
        let cache = ReplyCache::with_max_bytes(64 * 1024);
        for n in 0..5_000 {
            let flood = request(&format!("flood-{n}"), "instance-x");
            assert!(matches!(cache.arrive(&flood), Seen::First));
            if n % 100 == 0 {
                cache.entries.run_pending_tasks();
            }
        }
        cache.entries.run_pending_tasks();
        assert!(
            cache.entries.weighted_size() <= 64 * 1024,
            "over budget: {}",
            cache.entries.weighted_size()
        );
        let ordinary = request("m-1", "instance-a");
        assert!(matches!(cache.arrive(&ordinary), Seen::First));
        let reply = ordinary.reply(ContentType::Protobuf, "ok".into());
        cache.answered(&ordinary, &reply);
        cache.entries.run_pending_tasks();
        assert!(
            matches!(cache.arrive(&ordinary), Seen::Answered(_)),
            "the retry was not deduplicated"
        );
    }

    #[test]
    fn forgotten_and_anonymous_requests_run_again() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        assert!(matches!(cache.arrive(&r), Seen::First));
        cache.forget(&r);
        assert!(matches!(cache.arrive(&r), Seen::First));
        let anonymous = request("", "instance-a");
        assert!(matches!(cache.arrive(&anonymous), Seen::First));
        assert!(matches!(cache.arrive(&anonymous), Seen::First));
    }
}
