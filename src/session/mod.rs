//! Server-side sessions: what they hold, where they are kept, and how long they live.
//!
//! [`SessionStore`] is what the rest of the process uses. It seals each session for rest
//! (`codec`) under the current key of the at-rest key ring, names it by a hash of its id,
//! and keeps it in a [`Store`] backend: Redis ([`RedisStore`]) or the embedded
//! [`MemoryStore`]. Backends only see opaque keys, blobs,
//! TTLs and index names. Sessions end at their absolute expiry, or after `idle_timeout`
//! without use (the backend's TTL, slid forward as the session is used).
//! Beside sessions, `coordination` keeps the short-lived records that coordinate work:
//! login transactions, one-time claims, refresh locks and grace records. Every deletion of
//! a session is announced on the revocation bus (`events`: the store's pub/sub channel,
//! and in-process), so live connections of the session end on every instance.
//! `admin` is what the admin API sees of sessions: a user's sessions by handle (the hash
//! in the storage key), and deletion by handle.
//! `cache` keeps decoded sessions of a shared store in this process for a short window,
//! forgetting each as soon as the bus announces its end.
//! `rate` keeps the request-rate budgets of sessions and client addresses.
//! `rotation` is what a key-ring change needs: swapping the ring on reload, re-sealing a
//! record read under an older key, and counting the store by key.

mod admin;
mod cache;
mod codec;
mod coordination;
mod error;
mod events;
mod memory;
mod memory_index;
mod rate;
mod redis;
mod redis_error;
mod redis_rotation;
mod redis_sentinel;
mod rotation;
mod state;
#[cfg(test)]
mod test_support;

pub use self::redis::RedisStore;
pub use admin::{is_handle, SessionInfo};
pub use cache::SessionCache;
pub use error::StoreError;
pub use events::{Revocation, Revocations};
pub use memory::MemoryStore;
pub use rate::{gcra, Spender, Step, MAX_MEMORY_BUDGETS};
pub use rotation::{KeyCensus, OTHER_KEY};
pub use state::{now_secs, RouteToken, SessionId, Tokens, UserSession};

use crate::config::{Rate, SessionConfig, StoreConfig};
use crate::metrics;
use async_trait::async_trait;
use codec::Codec;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One stored session as a backend sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// Storage key.
    pub key: String,
    /// Sealed session.
    pub blob: Vec<u8>,
    /// Time to live.
    pub ttl: Duration,
    /// Index names the key joins (by `sid`, by `sub`).
    pub indexes: Vec<String>,
    /// Time to live of those indexes.
    pub index_ttl: Duration,
}

/// A session backend: keys with TTLs, plus indexes for deleting by claim.
///
/// Every method is one logical operation; a failure means the store could not be reached
/// or did not answer in time, never that a key was absent.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a record and adds its key to its indexes.
    async fn create(&self, record: &Record) -> Result<(), StoreError>;
    /// The blob and remaining TTL under `key`, if present.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, StoreError>;
    /// The blob under `key`, if present, setting its TTL to `ttl` in the same step (a
    /// sliding expiry: one round trip, one command).
    async fn get_sliding(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the blob of an existing key, keeping its TTL; false if absent.
    async fn update(&self, key: &str, blob: &[u8]) -> Result<bool, StoreError>;
    /// Replaces the blob under `key` with `blob`, keeping its TTL, if it still is
    /// `expected` (compare-and-set: a write in between wins); false when the blob changed
    /// or is gone. Re-seals a record under a new key.
    async fn reseal(&self, key: &str, expected: &[u8], blob: &[u8]) -> Result<bool, StoreError>;
    /// Adds a present `key` to `indexes` (kept `index_ttl`), as [`Store::create`] does.
    async fn join_indexes(
        &self,
        key: &str,
        indexes: &[String],
        index_ttl: Duration,
    ) -> Result<(), StoreError>;
    /// One step of a walk over the keys starting with `prefix` and ending with `suffix`:
    /// from `cursor` (0 to start), about `count` keys, giving the first `head` bytes of each
    /// value and the cursor to continue from, 0 when the walk is complete. A key present
    /// for the whole walk is seen at least once.
    async fn scan_heads(
        &self,
        prefix: &str,
        suffix: &str,
        cursor: u64,
        count: usize,
        head: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError>;
    /// Removes a key; false if absent.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Sets a present key's TTL.
    async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError>;
    /// Removes every key of an index, and the index; the keys that existed.
    async fn delete_index(&self, index: &str) -> Result<Vec<String>, StoreError>;
    /// The keys an index names (some may have expired since they joined it).
    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError>;
    /// Stores a short-lived blob under `key` (no indexes).
    async fn put(&self, key: &str, blob: &[u8], ttl: Duration) -> Result<(), StoreError>;
    /// Removes and returns the blob under `key`, atomically: two callers never both get it.
    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Takes the lock `key` for `ttl` if nobody holds it, remembering `token`.
    async fn lock(&self, key: &str, token: &[u8], ttl: Duration) -> Result<bool, StoreError>;
    /// Releases the lock `key` if `token` still holds it (compare-and-delete).
    async fn unlock(&self, key: &str, token: &[u8]) -> Result<(), StoreError>;
    /// Whether the store answers.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Spends one request of the rate budget under `key` (GCRA, one atomic step, the key
    /// expiring once the budget is whole again); `Some(wait)` when it is already spent.
    async fn rate(&self, key: &str, rate: Rate) -> Result<Option<Duration>, StoreError>;
    /// How many sessions the backend holds, when it can tell cheaply from inside this
    /// process (the memory store); `None` for a shared server.
    fn session_count(&self) -> Option<u64> {
        None
    }
    /// Which of `keys` still exist: one answer per key, in order.
    async fn exist(&self, keys: &[String]) -> Result<Vec<bool>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?.is_some());
        }
        Ok(out)
    }
    /// Sends `message` to every subscriber of `channel` on a shared server; a no-op for an
    /// in-process store (its one process hears announcements directly).
    async fn publish(&self, _channel: &str, _message: &[u8]) -> Result<(), StoreError> {
        Ok(())
    }
    /// Subscribes to `channel`: its messages until the subscription is lost (the stream
    /// ends). `None` for an in-process store, which has no other instances to hear.
    async fn subscribe(&self, _channel: &str) -> Result<Option<Messages>, StoreError> {
        Ok(None)
    }
}

/// The messages of a pub/sub subscription.
pub type Messages = futures_util::stream::BoxStream<'static, Vec<u8>>;

/// Sessions over a backend: sealing, naming, expiry, sliding idle timeout, metrics.
#[derive(Clone)]
pub struct SessionStore {
    backend: Arc<dyn Store>,
    codec: Arc<arc_swap::ArcSwap<Codec>>,
    lifetimes: Arc<arc_swap::ArcSwap<Lifetimes>>,
    op_timeout: Duration,
    revocations: Revocations,
}

/// Session lifetimes, swappable on configuration reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetimes {
    /// Sliding inactivity limit.
    pub idle: Duration,
    /// Hard limit from login.
    pub absolute: Duration,
}

impl std::fmt::Debug for SessionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionStore")
            .field("lifetimes", &**self.lifetimes.load())
            .finish_non_exhaustive()
    }
}

/// Runs one backend call, recording its latency and any failure.
async fn timed<T>(
    op: &'static str,
    fut: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let span = crate::current_child_span!("store", db.operation = op);
    let out = tracing::Instrument::instrument(fut, span).await;
    let elapsed = started.elapsed().as_secs_f64();
    if op == "get" {
        metrics::STORE_GET.observe(elapsed);
    } else {
        metrics::STORE_DURATION
            .with_label_values(&[op])
            .observe(elapsed);
    }
    if out.is_err() {
        metrics::STORE_ERRORS.with_label_values(&[op]).inc();
    }
    out
}

impl SessionStore {
    /// The store the config names: Redis, or the in-memory store.
    ///
    /// # Errors
    /// The Redis URL does not parse (validation normally catches this first).
    pub fn from_config(config: &SessionConfig) -> Result<Self, StoreError> {
        let (backend, prefix): (Arc<dyn Store>, &str) = match &config.store {
            StoreConfig::Memory { max_sessions } => {
                (Arc::new(MemoryStore::new(*max_sessions)), "bffgate:")
            }
            StoreConfig::Redis {
                mode,
                key_prefix,
                timeout,
                ca_pem,
                ..
            } => (
                Arc::new(RedisStore::new(mode, *timeout, ca_pem.as_deref())?),
                key_prefix.as_str(),
            ),
        };
        Ok(Self::with_backend(backend, config, prefix))
    }

    /// Sessions over any backend.
    pub fn with_backend(backend: Arc<dyn Store>, config: &SessionConfig, prefix: &str) -> Self {
        SessionStore {
            backend,
            codec: Arc::new(arc_swap::ArcSwap::from_pointee(Codec::new(
                &config.at_rest_keys,
                prefix,
            ))),
            op_timeout: match &config.store {
                StoreConfig::Redis { timeout, .. } => *timeout,
                StoreConfig::Memory { .. } => Duration::ZERO,
            },
            lifetimes: Arc::new(arc_swap::ArcSwap::from_pointee(Lifetimes {
                idle: config.idle_timeout,
                absolute: config.absolute_timeout,
            })),
            revocations: Revocations::new(
                events::channel_name(prefix),
                match &config.store {
                    StoreConfig::Redis { cache, .. } => SessionCache::new(cache).map(Arc::new),
                    StoreConfig::Memory { .. } => None,
                },
            ),
        }
    }

    /// The bus on which every deletion of a session is announced.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }

    /// Relays other instances' revocations into [`Self::revocations`] until `stop`
    /// resolves; returns at once on an in-process store.
    pub async fn relay_revocations(&self, stop: impl std::future::Future<Output = ()>) {
        self.revocations
            .listen(Arc::clone(&self.backend), stop)
            .await;
    }

    /// The hash that names a session on the revocation bus (its storage key's).
    pub fn key_hash(&self, id: &SessionId) -> String {
        codec::key_hash(id)
    }

    /// Which of the sessions named by `hashes` still exist (one answer each, in order).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn exist(&self, hashes: &[String]) -> Result<Vec<bool>, StoreError> {
        let keys: Vec<String> = hashes
            .iter()
            .map(|h| self.codec.load().storage_key_of_hash(h))
            .collect();
        timed("exist", self.backend.exist(&keys)).await
    }

    /// Announces deleted storage keys on the revocation bus.
    async fn announce_keys(&self, keys: &[String]) {
        let hashes = keys.iter().filter_map(|k| codec::hash_of_key(k)).collect();
        self.revocations.announce(&*self.backend, hashes).await;
    }

    /// The absolute session timeout now in force.
    pub fn absolute_timeout(&self) -> Duration {
        self.lifetimes.load().absolute
    }

    /// The longest one store operation may take (the Redis timeout; zero in memory).
    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// TTL for a session now: the idle timeout, cut at its absolute end, at least 1 s.
    fn ttl(&self, s: &UserSession) -> Duration {
        let left = Duration::from_secs(s.expires_at.saturating_sub(now_secs()));
        self.lifetimes
            .load()
            .idle
            .min(left)
            .max(Duration::from_secs(1))
    }

    /// The indexes a session joins, named under the current key.
    fn indexes(codec: &Codec, s: &UserSession) -> Vec<String> {
        let mut v = vec![codec.index_name("sub", &s.sub)];
        if let Some(sid) = &s.sid {
            v.push(codec.index_name("sid", sid));
        }
        v
    }

    /// Applies new lifetimes (configuration reload). Existing sessions keep their absolute
    /// end; the idle limit applies from their next use.
    pub fn set_lifetimes(&self, lifetimes: Lifetimes) {
        self.lifetimes.store(Arc::new(lifetimes));
    }

    /// Stores a new session.
    ///
    /// # Errors
    /// The backend failed, or what was to be stored could not be sealed
    /// ([`StoreError::Seal`]).
    pub async fn create(&self, s: &UserSession) -> Result<(), StoreError> {
        let codec = self.codec.load();
        let key = codec.storage_key(&s.id);
        let record = Record {
            blob: codec.seal(&key, s)?,
            ttl: self.ttl(s),
            indexes: Self::indexes(&codec, s),
            index_ttl: self.lifetimes.load().absolute,
            key,
        };
        timed("create", self.backend.create(&record)).await
    }

    /// Loads a live session and restarts its idle timeout. `None` when it does not exist,
    /// has reached its absolute end (it is then deleted), or cannot be opened. A session
    /// sealed under an older key is re-sealed under the current one (see `rotation`).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        self.get_hashed(id, &codec::key_hash(id)).await
    }

    /// [`Self::get`] of session `id` whose storage-key hash is `hash` (already known).
    async fn get_hashed(
        &self,
        id: &SessionId,
        hash: &str,
    ) -> Result<Option<UserSession>, StoreError> {
        let codec = self.codec.load_full();
        let key = codec.storage_key_of_hash(hash);
        let idle = self.lifetimes.load().idle;
        // Reading a session is using it: its idle timeout restarts in the same command.
        let Some(blob) = timed("get", self.backend.get_sliding(&key, idle)).await? else {
            return Ok(None);
        };
        let Some((session, current)) = codec.open(&key, id, &blob) else {
            tracing::warn!(
                "a stored session failed to open (sealed by a key not in the at-rest ring?); treating it as ended"
            );
            return Ok(None);
        };
        // The sliding TTL may run past the absolute end; the end is checked here.
        if session.expires_at <= now_secs() {
            if let Ok(true) = timed("delete", self.backend.delete(&key)).await {
                self.announce_keys(&[key]).await;
            }
            return Ok(None);
        }
        if !current {
            self.reseal(&codec, key, &session, &blob).await;
        }
        Ok(Some(session))
    }

    /// Replaces a session's contents (e.g. new tokens), keeping its TTL; false if it ended.
    ///
    /// # Errors
    /// The backend failed, or what was to be stored could not be sealed
    /// ([`StoreError::Seal`]).
    pub async fn update(&self, s: &UserSession) -> Result<bool, StoreError> {
        let codec = self.codec.load_full();
        let key = codec.storage_key(&s.id);
        let blob = codec.seal(&key, s)?;
        let updated = timed("update", self.backend.update(&key, &blob)).await?;
        if updated {
            self.revocations
                .announce_changed(&*self.backend, &s.id)
                .await;
        }
        if updated && codec.key_ids().nth(1).is_some() {
            // During a rotation: the session may be indexed under an older key's names only.
            self.join_current_indexes(&codec, &key, s).await;
        }
        Ok(updated)
    }

    /// Resets a session's idle timeout now.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn touch(&self, s: &UserSession) -> Result<(), StoreError> {
        let key = self.codec.load().storage_key(&s.id);
        timed("touch", self.backend.touch(&key, self.ttl(s))).await
    }

    /// Deletes a session; false if it was already gone. Its end is announced on the
    /// revocation bus either way (another instance may hold connections of a session that
    /// expired).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        let key = self.codec.load().storage_key(id);
        let existed = timed("delete", self.backend.delete(&key)).await?;
        self.announce_keys(&[key]).await;
        Ok(existed)
    }

    /// Deletes every session of a provider session (`sid`); how many there were. Each is
    /// announced on the revocation bus.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete_by_sid(&self, sid: &str) -> Result<usize, StoreError> {
        self.delete_indexed("sid", sid).await
    }

    /// Deletes every session of a user (`sub`); how many there were. Each is announced on
    /// the revocation bus.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        self.delete_indexed("sub", sub).await
    }

    /// Deletes the sessions of the `kind` index of `value` under the name of every key of
    /// the ring (sessions created before a rotation are indexed under an older key's name),
    /// announcing each one deleted.
    async fn delete_indexed(&self, kind: &str, value: &str) -> Result<usize, StoreError> {
        let names = self.codec.load().index_names(kind, value);
        let mut deleted = Vec::new();
        for name in &names {
            deleted.extend(timed("delete_index", self.backend.delete_index(name)).await?);
        }
        self.announce_keys(&deleted).await;
        Ok(deleted.len())
    }

    /// How many sessions an in-process backend holds (`None` for Redis).
    pub fn local_session_count(&self) -> Option<u64> {
        self.backend.session_count()
    }

    /// Whether the backend answers.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn ping(&self) -> Result<(), StoreError> {
        timed("ping", self.backend.ping()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SessionConfig {
        test_support::config(&[("k", 9)], 10)
    }

    fn session(sub: &str, sid: Option<&str>) -> UserSession {
        let tokens = Tokens {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            id_token: None,
            access_expires_at: Some(5),
            refresh_expires_at: None,
        };
        UserSession::new(
            sub.into(),
            sid.map(Into::into),
            serde_json::json!({"n": 1}),
            tokens,
            &config(),
        )
    }

    #[tokio::test]
    async fn memory_round_trip_and_indexes() {
        let store = SessionStore::from_config(&config()).expect("memory store");
        let a = session("u1", Some("p1"));
        let b = session("u1", Some("p2"));
        let c = session("u2", Some("p1"));
        for s in [&a, &b, &c] {
            store.create(s).await.expect("create");
        }
        assert_eq!(store.get(&a.id).await.expect("get"), Some(a.clone()));
        let mut a2 = a.clone();
        a2.tokens.access_token = "at2".into();
        assert!(store.update(&a2).await.expect("update"));
        assert_eq!(
            store.get(&a.id).await.expect("get").map(|s| s.tokens),
            Some(a2.tokens)
        );
        assert_eq!(store.delete_by_sid("p1").await.expect("by sid"), 2);
        assert_eq!(store.get(&c.id).await.expect("get"), None);
        assert_eq!(store.get(&b.id).await.expect("get"), Some(b.clone()));
        assert_eq!(store.delete_by_sub("u1").await.expect("by sub"), 1);
        assert!(!store.delete(&b.id).await.expect("delete"));
    }

    #[tokio::test]
    async fn past_absolute_end_reads_as_gone() {
        let store = SessionStore::from_config(&config()).expect("memory store");
        let mut s = session("u", None);
        s.expires_at = now_secs() - 1;
        store.create(&s).await.expect("create");
        assert_eq!(store.get(&s.id).await.expect("get"), None);
    }

    #[test]
    fn debug_never_prints_tokens() {
        let s = session("u", None);
        let text = format!("{s:?}");
        assert!(
            !text.contains("\"at\"") && !text.contains("\"rt\""),
            "{text}"
        );
    }
}
