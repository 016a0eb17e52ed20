//! Server-side sessions: what they hold, where they are kept, and how long they live.
//!
//! [`SessionStore`] is what the rest of the process uses. It seals each session for rest
//! (`codec`), names it by a hash of its id, and keeps it in a [`Store`] backend: Redis
//! ([`RedisStore`]) or the embedded [`MemoryStore`]. Backends only see opaque keys, blobs,
//! TTLs and index names. Sessions end at their absolute expiry, or after `idle_timeout`
//! without use (the backend's TTL, slid forward as the session is used).
//! Beside sessions, `coordination` keeps the short-lived records that coordinate work:
//! login transactions, one-time claims, refresh locks and grace records.

mod codec;
mod coordination;
mod error;
mod memory;
mod redis;
mod redis_error;
mod redis_sentinel;
mod state;

pub use self::redis::RedisStore;
pub use error::StoreError;
pub use memory::MemoryStore;
pub use state::{now_secs, SessionId, Tokens, UserSession};

use crate::config::{SessionConfig, StoreConfig};
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
    /// Removes a key; false if absent.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Sets a present key's TTL.
    async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError>;
    /// Removes every key of an index, and the index; how many keys existed.
    async fn delete_index(&self, index: &str) -> Result<usize, StoreError>;
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
    /// How many sessions the backend holds, when it can tell cheaply from inside this
    /// process (the memory store); `None` for a shared server.
    fn session_count(&self) -> Option<u64> {
        None
    }
}

/// Sessions over a backend: sealing, naming, expiry, sliding idle timeout, metrics.
#[derive(Clone)]
pub struct SessionStore {
    backend: Arc<dyn Store>,
    codec: Arc<Codec>,
    lifetimes: Arc<arc_swap::ArcSwap<Lifetimes>>,
    op_timeout: Duration,
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
            codec: Arc::new(Codec::new(&config.at_rest_key, prefix)),
            op_timeout: match &config.store {
                StoreConfig::Redis { timeout, .. } => *timeout,
                StoreConfig::Memory { .. } => Duration::ZERO,
            },
            lifetimes: Arc::new(arc_swap::ArcSwap::from_pointee(Lifetimes {
                idle: config.idle_timeout,
                absolute: config.absolute_timeout,
            })),
        }
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

    fn indexes(&self, s: &UserSession) -> Vec<String> {
        let mut v = vec![self.codec.index_name("sub", &s.sub)];
        if let Some(sid) = &s.sid {
            v.push(self.codec.index_name("sid", sid));
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
        let key = self.codec.storage_key(&s.id);
        let record = Record {
            blob: self.codec.seal(&key, s)?,
            ttl: self.ttl(s),
            indexes: self.indexes(s),
            index_ttl: self.lifetimes.load().absolute,
            key,
        };
        timed("create", self.backend.create(&record)).await
    }

    /// Loads a live session and restarts its idle timeout. `None` when it does not exist,
    /// has reached its absolute end (it is then deleted), or cannot be opened.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get(&self, id: &SessionId) -> Result<Option<UserSession>, StoreError> {
        let key = self.codec.storage_key(id);
        let idle = self.lifetimes.load().idle;
        // Reading a session is using it: its idle timeout restarts in the same command.
        let Some(blob) = timed("get", self.backend.get_sliding(&key, idle)).await? else {
            return Ok(None);
        };
        let Some(session) = self.codec.open(&key, id, &blob) else {
            tracing::warn!(
                "a stored session failed to open (at-rest key changed?); treating it as ended"
            );
            return Ok(None);
        };
        // The sliding TTL may run past the absolute end; the end is checked here.
        if session.expires_at <= now_secs() {
            let _ = timed("delete", self.backend.delete(&key)).await;
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Replaces a session's contents (e.g. new tokens), keeping its TTL; false if it ended.
    ///
    /// # Errors
    /// The backend failed, or what was to be stored could not be sealed
    /// ([`StoreError::Seal`]).
    pub async fn update(&self, s: &UserSession) -> Result<bool, StoreError> {
        let key = self.codec.storage_key(&s.id);
        let blob = self.codec.seal(&key, s)?;
        timed("update", self.backend.update(&key, &blob)).await
    }

    /// Resets a session's idle timeout now.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn touch(&self, s: &UserSession) -> Result<(), StoreError> {
        let key = self.codec.storage_key(&s.id);
        timed("touch", self.backend.touch(&key, self.ttl(s))).await
    }

    /// Deletes a session; false if it was already gone.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete(&self, id: &SessionId) -> Result<bool, StoreError> {
        timed("delete", self.backend.delete(&self.codec.storage_key(id))).await
    }

    /// Deletes every session of a provider session (`sid`); how many there were.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete_by_sid(&self, sid: &str) -> Result<usize, StoreError> {
        timed(
            "delete_index",
            self.backend
                .delete_index(&self.codec.index_name("sid", sid)),
        )
        .await
    }

    /// Deletes every session of a user (`sub`); how many there were.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete_by_sub(&self, sub: &str) -> Result<usize, StoreError> {
        timed(
            "delete_index",
            self.backend
                .delete_index(&self.codec.index_name("sub", sub)),
        )
        .await
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
    use crate::config::SecretKey;

    fn config() -> SessionConfig {
        SessionConfig {
            store: StoreConfig::Memory { max_sessions: 10 },
            at_rest_key: SecretKey::from_bytes([9; 32]),
            idle_timeout: Duration::from_secs(60),
            absolute_timeout: Duration::from_secs(3600),
            refresh_before_expiry: Duration::from_secs(30),
            refresh_lock_wait: Duration::from_secs(5),
        }
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
