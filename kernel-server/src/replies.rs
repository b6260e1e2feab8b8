//! [`ReplyCache`]: retried requests are answered once.
//!
//! A client retries with the same message id. The instance that took the first attempt keeps
//! a note of it, keyed by `(reply_to, message_id)`, for at least [`REPLY_CACHE_TTL`]:
//!
//! ```text
//! first arrival ─────────────────────► run the handler, send the reply, keep a copy
//! again, while the first still runs ─► drop it: the first's reply answers the call
//! again, after the first answered ───► send the kept reply again; the handler does not run
//! ```
//!
//! The key includes `reply_to` so that nobody but the caller can fetch a kept reply by
//! guessing its id. The cache is per instance: a retry that another instance takes (competing
//! consumers) runs there.
//!
//! # Generations: memory that comes back
//!
//! Notes are kept in generations of [`REPLY_CACHE_GENERATION`] each: a hash map from a 128-bit
//! key to a slot, and one buffer holding the kept reply payloads back to back. A note costs no
//! allocation of its own, and a generation older than the window is dropped whole, two large
//! allocations the allocator hands back to the system, so a burst of calls does not leave the
//! process larger once its window has passed. (A general cache with an allocation or more per
//! entry, as this was, left a service at 14 times its idle size after 100,000 calls, window
//! passed or not: the freed entries were scattered through the heap.) A note is dropped
//! between [`REPLY_CACHE_TTL`] and [`REPLY_CACHE_TTL`] + 2 × [`REPLY_CACHE_GENERATION`] after
//! it was made; the serving loop calls [`ReplyCache::expire`] every half generation, so an
//! idle service lets go too.
//!
//! The key is a keyed hash of `(reply_to, message_id)` with a random key per process: 16 bytes
//! however long the ids are. Two requests share a key by chance once in about 10²⁷ at a
//! million notes, and a publisher who does not know the process's key cannot aim for it.
//!
//! Notes are bounded in bytes ([`REPLY_CACHE_MAX_BYTES`], counting each note's payload and
//! [`REPLY_CACHE_ENTRY_OVERHEAD`]): over the budget, the oldest generations go first. A new
//! note is always admitted: a flood of unique message ids pushes older notes out, but cannot
//! stop the cache from remembering the requests that arrive next (a frequency-based admission
//! policy would refuse them, and silently stop deduplicating ordinary retries). A reply larger
//! than a quarter of the budget is not kept: its retry runs again.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kernel_transport::{ContentType, Envelope, MessageType};

/// How long, at least, an instance remembers a request it answered.
pub const REPLY_CACHE_TTL: Duration = Duration::from_secs(60);
/// How long one generation of notes takes new ones (see the module docs).
pub const REPLY_CACHE_GENERATION: Duration = Duration::from_secs(5);
/// The most an instance's reply cache holds, in bytes (the oldest generations go first).
pub const REPLY_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;
/// What one note is counted as beyond its reply payload: its key, its slot and its share of
/// the hash table.
pub const REPLY_CACHE_ENTRY_OVERHEAD: u32 = 64;

/// How much the dropped generations must have counted for before [`ReplyCache::expire`]
/// hands their memory back to the system.
const GIVE_BACK_AFTER: u64 = 1024 * 1024;

/// Hands freed heap memory back to the system. glibc keeps what a process freed for its next
/// allocations, except at the very top of its heaps, and with its sliding mmap threshold even a
/// generation's large tables may come from those heaps after a while: without this, a service
/// stays at its peak size after a burst. Elsewhere (musl, other allocators, other systems) the
/// allocator decides and this does nothing.
#[cfg_attr(
    all(target_os = "linux", target_env = "gnu"),
    expect(unsafe_code, reason = "malloc_trim is a C function")
)]
fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes the allocator's own locks and only releases pages that hold
    // no live allocation; it has no preconditions on its caller.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// glibc's own defaults for its trim and mmap thresholds (128 KiB), which
/// [`fix_malloc_thresholds`] makes final.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const THRESHOLD: libc::c_int = 128 * 1024;

/// Keeps glibc's trim and mmap thresholds at their defaults for the life of the process,
/// unless the operator set an option of glibc's malloc through the environment
/// (`MALLOC_TRIM_THRESHOLD_`, `MALLOC_MMAP_THRESHOLD_`, or any `glibc.malloc.` tunable in
/// `GLIBC_TUNABLES`). A program that calls `mallopt` itself should do so after building its
/// services.
///
/// Left to itself, glibc raises the trim threshold to twice the largest block it returned
/// with `munmap` (a generation's hash table after a burst: megabytes). A thread's heap then
/// keeps its free top for good, and [`give_back_memory`] cannot help: `malloc_trim` releases
/// free pages inside every heap but the free top of the main heap only. Measured with
/// `cargo xtask bench memory` (100,000 calls at concurrency 64, then the window): resident
/// size 1.22 × idle without this, 1.06 to 1.10 × with it. Setting either threshold stops glibc
/// sliding both, so both are set: blocks over 128 KiB are always mapped afresh, as they are in
/// any process until it frees its first one.
#[cfg_attr(
    all(target_os = "linux", target_env = "gnu"),
    expect(unsafe_code, reason = "mallopt is a C function")
)]
fn fix_malloc_thresholds() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let set_by_operator = std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_some()
                || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
                || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."));
            if !set_by_operator {
                // SAFETY: `mallopt` takes the allocator's lock and changes settings that apply
                // to later allocations and frees; it has no preconditions on its caller.
                unsafe {
                    libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD);
                    libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD);
                }
            }
        });
    }
}

/// What to do with an arriving request.
#[derive(Debug)]
pub(crate) enum Seen {
    /// The first arrival: run it, then [`ReplyCache::answered`] (or [`ReplyCache::forget`])
    /// with this ticket.
    First(Ticket),
    /// Another attempt while the first runs: drop it.
    InFlight,
    /// Another attempt after the first was answered: send this again.
    Answered(Kept),
}

/// Names a first arrival's note, so that its answer finds the note without hashing the
/// request's ids again; none for a request without a message id or a reply queue.
#[derive(Debug)]
pub(crate) struct Ticket(Option<u128>);

/// A kept reply, to send again to a retry of the request it answered.
#[derive(Debug)]
pub(crate) struct Kept {
    error: bool,
    content_type: ContentType,
    payload: Bytes,
}

impl Kept {
    /// The reply to `retry` (a retry of the request this answered): the same answer,
    /// addressed as the retry asks.
    pub(crate) fn reply_to(self, retry: &Envelope) -> Envelope {
        if self.error {
            retry.error_reply(self.content_type, self.payload)
        } else {
            retry.reply(self.content_type, self.payload)
        }
    }
}

/// Requests an instance has taken recently, and their replies once sent.
#[derive(Debug)]
pub(crate) struct ReplyCache {
    keys: (RandomState, RandomState),
    max_bytes: u64,
    generations: Mutex<Generations>,
}

/// The generations, oldest first; the last takes new notes.
#[derive(Debug)]
struct Generations {
    list: VecDeque<Generation>,
    bytes: u64,
    /// What the generations dropped since the last [`ReplyCache::expire`] counted for.
    dropped: u64,
}

#[derive(Debug)]
struct Generation {
    /// When it began to take notes.
    started: Instant,
    notes: HashMap<u128, Note, BuildHasherDefault<KeyHasher>>,
    /// The kept payloads, back to back.
    payloads: Vec<u8>,
    /// What its notes count for against the budget.
    bytes: u64,
}

#[derive(Debug, Clone)]
enum Note {
    InFlight,
    Answered {
        error: bool,
        content_type: ContentType,
        /// Where its payload is in the generation's buffer (which never outgrows the budget,
        /// a `u32`: [`REPLY_CACHE_MAX_BYTES`] is less).
        payload: Range<u32>,
    },
}

impl ReplyCache {
    pub(crate) fn new() -> Self {
        Self::with_max_bytes(REPLY_CACHE_MAX_BYTES)
    }

    fn with_max_bytes(max_bytes: u64) -> Self {
        fix_malloc_thresholds();
        ReplyCache {
            keys: (RandomState::new(), RandomState::new()),
            max_bytes,
            generations: Mutex::new(Generations {
                list: VecDeque::from([Generation::new(Instant::now())]),
                bytes: 0,
                dropped: 0,
            }),
        }
    }

    /// Records the arrival of `request` and says what to do with it. Requests without a
    /// message id or a reply queue are always [`Seen::First`] (there is nothing to match).
    pub(crate) fn arrive(&self, request: &Envelope) -> Seen {
        let Some(key) = self.key(request) else {
            return Seen::First(Ticket(None));
        };
        let mut generations = self.lock();
        generations.rotate(Instant::now());
        match generations.find(key) {
            Some(index) => match generations.list[index].kept(key) {
                None => Seen::InFlight,
                Some(kept) => Seen::Answered(kept),
            },
            None => {
                let overhead = u64::from(REPLY_CACHE_ENTRY_OVERHEAD);
                generations.make_room(overhead, self.max_bytes);
                let newest = generations.newest();
                generations.charge(newest, overhead);
                generations.list[newest].notes.insert(key, Note::InFlight);
                Seen::First(Ticket(Some(key)))
            }
        }
    }

    /// Keeps the reply sent for the request `ticket` names, for retries of it.
    pub(crate) fn answered(&self, ticket: Ticket, reply: &Envelope) {
        let Ticket(Some(key)) = ticket else {
            return;
        };
        let mut generations = self.lock();
        let weight = reply.payload.len() as u64;
        if weight > self.max_bytes / 4 {
            generations.remove(key);
            return;
        }
        let overhead = u64::from(REPLY_CACHE_ENTRY_OVERHEAD);
        generations.make_room(weight + overhead, self.max_bytes);
        // The note stays in its generation (it expires as from the arrival); one that the
        // budget pushed out meanwhile is made again in the newest.
        let index = generations.find(key).unwrap_or_else(|| {
            let newest = generations.newest();
            generations.charge(newest, overhead);
            newest
        });
        generations.charge(index, weight);
        generations.list[index].keep(key, reply);
    }

    /// Forgets the request `ticket` names (its handling failed before a reply existed), so
    /// a retry runs again.
    pub(crate) fn forget(&self, ticket: Ticket) {
        if let Ticket(Some(key)) = ticket {
            self.lock().remove(key);
        }
    }

    /// Drops the generations whose notes are all older than the window, and hands the memory
    /// of what was dropped since the last call back to the system once it adds up to
    /// [`GIVE_BACK_AFTER`], or once the cache is empty (the end of a burst). The serving loop calls this every half [`REPLY_CACHE_GENERATION`]
    /// (arrivals rotate the generations too, but never spend time giving memory back).
    pub(crate) fn expire(&self) {
        let (dropped, empty) = {
            let mut generations = self.lock();
            generations.rotate(Instant::now());
            (
                std::mem::take(&mut generations.dropped),
                generations.bytes == 0,
            )
        };
        if dropped >= GIVE_BACK_AFTER || (dropped > 0 && empty) {
            // Off the serving loop: it walks the allocator's free lists.
            tokio::task::spawn_blocking(give_back_memory);
        }
    }

    fn key(&self, request: &Envelope) -> Option<u128> {
        if request.message_id.is_empty() || request.reply_to.is_empty() {
            return None;
        }
        let ids = (request.reply_to.as_str(), request.message_id.as_str());
        let high = self.keys.0.hash_one(ids);
        let low = self.keys.1.hash_one(ids);
        Some(u128::from(high) << 64 | u128::from(low))
    }

    fn lock(&self) -> MutexGuard<'_, Generations> {
        // Every update leaves the notes consistent, so a panic elsewhere while the lock was
        // held (there is none to expect) does not make them unusable.
        self.generations
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Generations {
    fn newest(&self) -> usize {
        self.list.len() - 1
    }

    /// Starts a new generation when the newest has taken notes for a generation's time, and
    /// drops the oldest while every note in it is older than the window (it stopped taking
    /// notes when the next one started).
    fn rotate(&mut self, now: Instant) {
        let newest = &self.list[self.newest()];
        if !newest.notes.is_empty() && now.duration_since(newest.started) >= REPLY_CACHE_GENERATION
        {
            self.list.push_back(Generation::new(now));
        }
        while self.list.len() > 1 && now.duration_since(self.list[1].started) >= REPLY_CACHE_TTL {
            self.drop_oldest(now);
        }
    }

    /// Drops the oldest generations until `weight` more fits in `max_bytes` (all of them, the
    /// newest too, if need be: a new note is always admitted).
    fn make_room(&mut self, weight: u64, max_bytes: u64) {
        while self.bytes + weight > max_bytes && self.bytes > 0 {
            self.drop_oldest(Instant::now());
        }
    }

    fn drop_oldest(&mut self, now: Instant) {
        if self.list.len() == 1 {
            self.list.push_back(Generation::new(now));
        }
        if let Some(oldest) = self.list.pop_front() {
            self.bytes -= oldest.bytes;
            self.dropped += oldest.bytes;
        }
    }

    fn charge(&mut self, index: usize, weight: u64) {
        self.list[index].bytes += weight;
        self.bytes += weight;
    }

    /// The generation holding a note for `key`, if any.
    fn find(&self, key: u128) -> Option<usize> {
        self.list.iter().rposition(|g| g.notes.contains_key(&key))
    }

    /// Removes the note for `key`. What it counted stays counted until its generation goes:
    /// its payload, if any, stays in the generation's buffer until then.
    fn remove(&mut self, key: u128) {
        if let Some(index) = self.find(key) {
            self.list[index].notes.remove(&key);
        }
    }
}

impl Generation {
    fn new(started: Instant) -> Self {
        Generation {
            started,
            notes: HashMap::default(),
            payloads: Vec::new(),
            bytes: 0,
        }
    }

    /// The reply kept for `key`; `None` if it is still in flight (or unknown).
    fn kept(&self, key: u128) -> Option<Kept> {
        match self.notes.get(&key)? {
            Note::InFlight => None,
            Note::Answered {
                error,
                content_type,
                payload,
            } => Some(Kept {
                error: *error,
                content_type: *content_type,
                payload: Bytes::copy_from_slice(
                    &self.payloads[payload.start as usize..payload.end as usize],
                ),
            }),
        }
    }

    fn keep(&mut self, key: u128, reply: &Envelope) {
        let at = |offset: usize| u32::try_from(offset).unwrap_or(u32::MAX);
        let start = at(self.payloads.len());
        self.payloads.extend_from_slice(&reply.payload);
        let note = Note::Answered {
            error: reply.message_type == MessageType::Error,
            content_type: reply.content_type,
            payload: start..at(self.payloads.len()),
        };
        self.notes.insert(key, note);
    }
}

/// Hashes a note's key for the generation's map by taking its low half: the key is already a
/// keyed hash of the ids, so hashing it again would only cost time (an arrival looks in every
/// generation).
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used (the keys are `u128`); anything else is folded in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        // Truncation intended: the low 64 bits of a uniform hash are a uniform hash.
        self.0 = key as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, reply_to: &str) -> Envelope {
        let mut request = Envelope::request("svc", "ep", ContentType::Protobuf, Default::default());
        request.message_id = id.into();
        request.reply_to = reply_to.into();
        request
    }

    /// Arrives `request`, which must be a first arrival, and hands back its ticket.
    fn first(cache: &ReplyCache, request: &Envelope) -> Ticket {
        match cache.arrive(request) {
            Seen::First(ticket) => ticket,
            other => panic!("expected a first arrival, got {other:?}"),
        }
    }

    #[test]
    fn first_then_in_flight_then_answered() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        let ticket = first(&cache, &r);
        assert!(matches!(cache.arrive(&r), Seen::InFlight));
        let reply = r.reply(ContentType::Protobuf, "ok".into());
        cache.answered(ticket, &reply);
        match cache.arrive(&r) {
            Seen::Answered(kept) => assert_eq!(kept.reply_to(&r), reply),
            other => panic!("expected the kept reply, got {other:?}"),
        }
    }

    #[test]
    fn an_error_reply_is_kept_as_an_error_reply() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        let ticket = first(&cache, &r);
        let reply = r.error_reply(ContentType::Json, "{}".into());
        cache.answered(ticket, &reply);
        match cache.arrive(&r) {
            Seen::Answered(kept) => assert_eq!(kept.reply_to(&r), reply),
            other => panic!("expected the kept error reply, got {other:?}"),
        }
    }

    #[test]
    fn the_same_id_from_another_caller_is_a_new_request() {
        let cache = ReplyCache::new();
        assert!(matches!(
            cache.arrive(&request("m-1", "instance-a")),
            Seen::First(_)
        ));
        assert!(matches!(
            cache.arrive(&request("m-1", "instance-b")),
            Seen::First(_)
        ));
    }

    #[test]
    fn a_flood_of_unique_ids_does_not_stop_dedupe_of_the_next_request() {
        let budget = 64 * 1024;
        let cache = ReplyCache::with_max_bytes(budget);
        for n in 0..5_000 {
            let flood = request(&format!("flood-{n}"), "instance-x");
            assert!(matches!(cache.arrive(&flood), Seen::First(_)));
            let bytes = cache.lock().bytes;
            assert!(bytes <= budget, "over budget: {bytes}");
        }
        let ordinary = request("m-1", "instance-a");
        let ticket = first(&cache, &ordinary);
        let reply = ordinary.reply(ContentType::Protobuf, "ok".into());
        cache.answered(ticket, &reply);
        assert!(
            matches!(cache.arrive(&ordinary), Seen::Answered(_)),
            "the retry was not deduplicated"
        );
    }

    #[test]
    fn a_reply_too_large_to_keep_lets_its_retry_run_again() {
        let cache = ReplyCache::with_max_bytes(1024);
        let r = request("m-1", "instance-a");
        let ticket = first(&cache, &r);
        cache.answered(ticket, &r.reply(ContentType::Protobuf, vec![0; 512].into()));
        assert!(matches!(cache.arrive(&r), Seen::First(_)));
    }

    #[test]
    fn forgotten_and_anonymous_requests_run_again() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        let ticket = first(&cache, &r);
        cache.forget(ticket);
        assert!(matches!(cache.arrive(&r), Seen::First(_)));
        let anonymous = request("", "instance-a");
        assert!(matches!(cache.arrive(&anonymous), Seen::First(_)));
        assert!(matches!(cache.arrive(&anonymous), Seen::First(_)));
    }

    #[test]
    fn notes_are_kept_for_the_window_and_dropped_whole_after_it() {
        let cache = ReplyCache::new();
        let r = request("m-1", "instance-a");
        let ticket = first(&cache, &r);
        cache.answered(ticket, &r.reply(ContentType::Protobuf, "ok".into()));
        let start = cache.lock().list[0].started;
        // Time passes in generations, with one note in each of the first few.
        let mut now = start;
        for step in 1..=12u32 {
            now = start + REPLY_CACHE_GENERATION * step;
            let mut generations = cache.lock();
            generations.rotate(now);
            if step < 4 {
                let key = step.into();
                generations
                    .list
                    .back_mut()
                    .map(|g| g.notes.insert(key, Note::InFlight));
            }
        }
        // At the window's end the first note is still there: its generation took notes
        // until a generation later.
        assert!(
            cache
                .lock()
                .find(cache.key(&r).unwrap_or_default())
                .is_some()
        );
        let mut generations = cache.lock();
        generations.rotate(start + REPLY_CACHE_TTL + REPLY_CACHE_GENERATION);
        assert_eq!(generations.find(cache.key(&r).unwrap_or_default()), None);
        // Later, everything goes, and the budget is clear again.
        generations.rotate(now + REPLY_CACHE_TTL * 2);
        assert_eq!(generations.list.len(), 1);
        assert!(generations.list[0].notes.is_empty());
        drop(generations);
    }
}
