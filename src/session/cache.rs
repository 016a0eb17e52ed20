//! The session cache: decoded sessions of a shared store (Redis), kept in this process so
//! that a request with a session costs no round trip.
//!
//! What it promises: a session read from the store is served from here until `window`
//! after that read was sent, so an ending made anywhere (another instance's logout, an
//! operator's revocation, the store's own expiry or restart) is seen here within `window`
//! whatever happens to the network. Within that bound it is kept true by the revocation
//! bus: an ending announced on this instance is forgotten at once, one announced on another
//! instance as soon as its pub/sub message arrives. The cache serves nothing until the bus
//! is subscribed; a lost subscription empties it and it serves nothing again until the
//! subscription is back.
//!
//! A read races an ending: a session read just before its deletion and stored here just
//! after the announcement would be served stale for a whole window. Every forgetting bumps a
//! generation; a read whose generation changed while it was in flight is not kept.
//!
//! Entries are bounded by count and by bytes: each weighs its approximate size, and at least
//! `max_bytes / max_entries`, so neither bound can be passed.

use super::state::{now_secs, SessionId, UserSession};
use super::{codec, SessionStore, StoreError};
use crate::config::SessionCacheConfig;
use crate::metrics;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The field of the `session.lookup` span that says whether the cache answered.
const CACHE_FIELD: &str = "bff.session.cache";

/// Decoded sessions by storage-key hash (see [`super::codec::key_hash`]).
pub struct SessionCache {
    /// Each session with the moment its read was sent; shared, so a hit copies nothing.
    entries: moka::sync::Cache<String, (Instant, Arc<UserSession>)>,
    generation: AtomicU64,
    window: Duration,
    /// Whether endings are being heard (the bus is subscribed).
    trusted: AtomicBool,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("window", &self.window)
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

/// A read from the store as the cache sees it: when it was sent, and the cache's
/// generation then.
#[derive(Debug, Clone, Copy)]
pub struct Read {
    generation: u64,
    sent: Instant,
}

/// What one entry costs besides its session: the cache's own bookkeeping for it (`moka`'s
/// entry, access-order and expiry nodes), its key (a 64-character hash) and the `Arc`
/// holding the session. Measured with `bench/memsessions.rs` (bench/RESULTS.md).
const ENTRY_OVERHEAD: usize = 560;

/// What a `serde_json` object's tree costs beyond its keys and values: one B-tree node
/// (11 slots of a `String` key and a `Value`) per up to 8 entries (nodes are rarely full).
const OBJECT_NODE: usize = 11 * (24 + 32) + 16;

/// The approximate memory a cached session takes, in bytes: the entry, the session, and
/// what its strings and claims hold on the heap. `max_bytes` bounds the sum of these, so
/// it is meant to be close to what the process's resident size grows by.
fn weight(session: &UserSession) -> usize {
    let t = &session.tokens;
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::capacity);
    ENTRY_OVERHEAD
        + std::mem::size_of::<UserSession>()
        + session.sub.capacity()
        + opt(&session.sid)
        + json_heap(&session.claims)
        + t.access_token.capacity()
        + opt(&t.refresh_token)
        + opt(&t.id_token)
        + opt(&session.client_addr)
        + opt(&session.user_agent)
        + session
            .route_tokens
            .iter()
            .map(|(k, t)| k.capacity() + t.access_token.capacity() + OBJECT_NODE / 4)
            .sum::<usize>()
        + session.dpop_key.as_ref().map_or(0, |_| 256)
}

/// The heap memory a JSON value holds (its own inline size is its parent's).
fn json_heap(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => s.capacity(),
        Value::Array(a) => {
            a.capacity() * std::mem::size_of::<Value>() + a.iter().map(json_heap).sum::<usize>()
        }
        Value::Object(m) => {
            m.len().div_ceil(8) * OBJECT_NODE
                + m.iter()
                    .map(|(k, v)| k.capacity() + json_heap(v))
                    .sum::<usize>()
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

impl SessionCache {
    /// A cache as `config` says; `None` when its window is zero (no cache).
    pub fn new(config: &SessionCacheConfig) -> Option<Self> {
        if config.window.is_zero() || config.max_entries == 0 {
            return None;
        }
        let floor = u32::try_from(config.max_bytes / config.max_entries)
            .unwrap_or(u32::MAX)
            .max(1);
        let entries = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes.max(1))
            .weigher(move |_: &String, (_, s): &(Instant, Arc<UserSession>)| {
                u32::try_from(weight(s)).unwrap_or(u32::MAX).max(floor)
            })
            .time_to_live(config.window)
            .build();
        Some(SessionCache {
            entries,
            generation: AtomicU64::new(0),
            window: config.window,
            trusted: AtomicBool::new(false),
        })
    }

    /// The generation to pass to [`Self::keep`] for a read starting now.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// What [`Self::keep`] needs of a read about to be sent: its generation and the moment.
    pub fn read_starts(&self) -> Read {
        Read {
            generation: self.generation(),
            sent: Instant::now(),
        }
    }

    /// Starts serving (endings are heard from now on) or stops (they may be missed), emptied
    /// either way: nothing read while endings could be missed is kept.
    pub fn trust(&self, heard: bool) {
        self.trusted.store(false, Ordering::Release);
        self.clear();
        self.trusted.store(heard, Ordering::Release);
    }

    /// The session under `hash` if it was read from the store less than a window ago and
    /// endings are being heard.
    pub fn get(&self, hash: &str) -> Option<Arc<UserSession>> {
        let found = if self.trusted.load(Ordering::Acquire) {
            self.entries
                .get(hash)
                .filter(|(sent, _)| sent.elapsed() < self.window)
                .map(|(_, s)| s)
        } else {
            None
        };
        if found.is_some() {
            metrics::CACHE_HIT.inc();
        } else {
            metrics::CACHE_MISS.inc();
        }
        found
    }

    /// Keeps `session`, read from the store under `hash` by `read`, unless something was
    /// forgotten since the read was sent (it might have been this one).
    pub fn keep(&self, hash: String, session: Arc<UserSession>, read: Read) {
        if !self.trusted.load(Ordering::Acquire) || self.generation() != read.generation {
            return;
        }
        self.entries.insert(hash.clone(), (read.sent, session));
        // A forgetting between the check and the insert may have missed this entry.
        if self.generation() != read.generation {
            self.entries.invalidate(&hash);
        }
    }

    /// Forgets the sessions under `hashes` (they ended or changed).
    pub fn forget(&self, hashes: &[String]) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for hash in hashes {
            self.entries.invalidate(hash);
        }
    }

    /// Forgets everything (the announcements of endings may have been missed).
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
        metrics::SESSION_CACHE_CLEARS.inc();
    }

    /// How many sessions are held (approximate: expired entries leave lazily).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// Longest a session read from the store is served from here.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The approximate bytes held, as `max_bytes` counts them.
    pub fn weighted_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

impl SessionStore {
    /// A live session, from the cache when it was read from the store less than a window
    /// ago (its idle timeout then slid at that read), else as [`SessionStore::get`] reads
    /// it. The absolute end is checked either way. Shared, not copied: a request that
    /// changes the session clones it. For reads that decide a write (a refresh), use
    /// [`SessionStore::get`].
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get_cached(&self, id: &SessionId) -> Result<Option<Arc<UserSession>>, StoreError> {
        let Some(cache) = self.revocations.cache() else {
            return Ok(self.get(id).await?.map(Arc::new));
        };
        let hash = codec::KeyHash::of(id);
        let hash = hash.as_str();
        if let Some(session) = cache.get(hash) {
            if session.expires_at > now_secs() {
                crate::telemetry::record_current(CACHE_FIELD, "hit");
                return Ok(Some(session));
            }
        }
        crate::telemetry::record_current(CACHE_FIELD, "miss");
        let read = cache.read_starts();
        let found = self.get_hashed(id, hash).await?.map(Arc::new);
        if let Some(session) = &found {
            cache.keep(hash.to_owned(), Arc::clone(session), read);
        }
        Ok(found)
    }

    /// How many sessions the cache holds; `None` without one.
    pub fn cached_sessions(&self) -> Option<u64> {
        self.revocations.cache().map(SessionCache::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_support;

    fn cache(window_ms: u64, max_entries: u64, max_bytes: u64) -> SessionCache {
        let c = SessionCache::new(&SessionCacheConfig {
            window: Duration::from_millis(window_ms),
            max_entries,
            max_bytes,
        })
        .expect("a cache");
        c.trust(true);
        c
    }

    fn session(sub: &str) -> Arc<UserSession> {
        Arc::new(test_support::session(sub))
    }

    #[test]
    fn a_zero_window_is_no_cache() {
        let off = SessionCacheConfig {
            window: Duration::ZERO,
            max_entries: 10,
            max_bytes: 1 << 20,
        };
        assert!(SessionCache::new(&off).is_none());
    }

    #[test]
    fn nothing_is_served_or_kept_while_endings_may_be_missed() {
        let c = cache(10_000, 10, 1 << 20);
        c.keep("h".into(), session("u"), c.read_starts());
        c.trust(false);
        assert_eq!(c.get("h"), None);
        c.keep("h".into(), session("u"), c.read_starts());
        c.trust(true);
        assert_eq!(c.get("h"), None);
    }

    #[test]
    fn entries_live_one_window() {
        let c = cache(50, 10, 1 << 20);
        let s = session("u");
        c.keep("h".into(), s.clone(), c.read_starts());
        assert_eq!(c.get("h"), Some(s));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(c.get("h"), None);
    }

    #[test]
    fn forgotten_entries_are_gone_and_a_read_in_flight_is_not_kept() {
        let c = cache(10_000, 10, 1 << 20);
        let s = session("u");
        c.keep("a".into(), s.clone(), c.read_starts());
        c.keep("b".into(), s.clone(), c.read_starts());
        let before = c.read_starts();
        c.forget(&["a".into()]);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("b"), Some(s.clone()));
        // Read before the forgetting, answered after it: not kept.
        c.keep("a".into(), s.clone(), before);
        assert_eq!(c.get("a"), None);
        c.clear();
        assert_eq!(c.get("b"), None);
        assert!(c.is_empty());
    }

    #[test]
    fn entries_are_bounded_by_count_and_bytes() {
        let by_count = cache(10_000, 5, 1 << 30);
        for i in 0..50 {
            by_count.keep(format!("k{i}"), session("u"), by_count.read_starts());
        }
        assert!(by_count.len() <= 5, "{}", by_count.len());
        let one = u64::try_from(weight(&session("u"))).expect("small");
        let by_bytes = cache(10_000, 1_000, one * 3);
        for i in 0..50 {
            by_bytes.keep(format!("k{i}"), session("u"), by_bytes.read_starts());
        }
        assert!(by_bytes.len() <= 3, "{}", by_bytes.len());
    }

    #[test]
    fn claims_weigh_their_tree_not_their_text() {
        let three = serde_json::json!({"sub": "u", "name": "Ada", "email": "ada@example.com"});
        let text = three.to_string().len();
        let heap = json_heap(&three);
        assert!(heap >= OBJECT_NODE + 3 + 4 + 5 + 1 + 3 + 15, "{heap}");
        assert!(heap > 5 * text, "{heap} for {text} bytes of text");
        let nested = serde_json::json!({"groups": ["a", "b"], "address": {"city": "Paris"}});
        assert_eq!(
            json_heap(&nested),
            OBJECT_NODE
                + "groups".len()
                + 2 * std::mem::size_of::<serde_json::Value>()
                + 2
                + "address".len()
                + OBJECT_NODE
                + "city".len()
                + "Paris".len()
        );
        assert_eq!(json_heap(&serde_json::json!({})), 0);
    }
}
