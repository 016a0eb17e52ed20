//! The embedded store: bounded (least recently used go first) and expiring, for single
//! instances and development. Sessions do not survive a restart.

use super::memory_index::IndexMap;
use super::rate::{MemoryBudgets, MAX_MEMORY_BUDGETS};
use super::{Record, Store, StoreError};
use crate::config::Rate;
use async_trait::async_trait;
use moka::sync::Cache;
use moka::Expiry;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone)]
struct Entry {
    blob: Arc<[u8]>,
    expires: Instant,
    indexes: Arc<[Arc<str>]>,
}

struct PerEntry;

impl Expiry<Arc<str>, Entry> for PerEntry {
    fn expire_after_create(&self, _: &Arc<str>, e: &Entry, now: Instant) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &Arc<str>,
        e: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(e.expires.saturating_duration_since(now))
    }
}

type Indexes = Arc<Mutex<IndexMap>>;

/// In-process session store.
pub struct MemoryStore {
    cache: Cache<Arc<str>, Entry>,
    indexes: Indexes,
    budgets: MemoryBudgets,
}

impl MemoryStore {
    /// A store keeping at most `max_sessions` sessions.
    pub fn new(max_sessions: u64) -> Self {
        let indexes: Indexes = Arc::default();
        let on_evict = Arc::clone(&indexes);
        let cache = Cache::builder()
            .max_capacity(max_sessions)
            .expire_after(PerEntry)
            .eviction_listener(move |key: Arc<Arc<str>>, entry: Entry, cause| {
                // Keep the indexes as bounded as the sessions they point at. A replaced
                // entry (update, touch) is still there.
                if cause == moka::notification::RemovalCause::Replaced {
                    return;
                }
                if let Ok(mut idx) = on_evict.lock() {
                    for name in entry.indexes.iter() {
                        idx.remove(name, &key);
                    }
                }
            })
            .build();
        MemoryStore {
            cache,
            indexes,
            budgets: MemoryBudgets::new(MAX_MEMORY_BUDGETS),
        }
    }

    fn index_lock(&self) -> Result<std::sync::MutexGuard<'_, IndexMap>, StoreError> {
        self.indexes
            .lock()
            .map_err(|_| StoreError::Unavailable("memory index lock poisoned".into()))
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, r: &Record) -> Result<(), StoreError> {
        let key: Arc<str> = Arc::from(r.key.as_str());
        let names: Arc<[Arc<str>]> = {
            let mut idx = self.index_lock()?;
            r.indexes
                .iter()
                .map(|name| idx.insert(name, &key))
                .collect()
        };
        self.cache.insert(
            key,
            Entry {
                blob: r.blob.as_slice().into(),
                expires: deadline(r.ttl),
                indexes: names,
            },
        );
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Duration)>, StoreError> {
        Ok(self.cache.get(key).and_then(|e| {
            let left = e.expires.saturating_duration_since(Instant::now());
            (!left.is_zero()).then(|| (e.blob.to_vec(), left))
        }))
    }

    async fn get_sliding(&self, key: &str, ttl: Duration) -> Result<Option<Vec<u8>>, StoreError> {
        let mut found = None;
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) if e.value().expires > Instant::now() => {
                        let mut e = e.into_value();
                        found = Some(e.blob.to_vec());
                        e.expires = deadline(ttl);
                        Op::Put(e)
                    }
                    _ => Op::Nop,
                }
            });
        Ok(found)
    }

    async fn update(&self, key: &str, blob: &[u8]) -> Result<bool, StoreError> {
        let mut updated = false;
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) => {
                        updated = true;
                        let mut e = e.into_value();
                        e.blob = blob.into();
                        Op::Put(e)
                    }
                    None => Op::Nop,
                }
            });
        Ok(updated)
    }

    async fn reseal(&self, key: &str, expected: &[u8], blob: &[u8]) -> Result<bool, StoreError> {
        let mut replaced = false;
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) if &*e.value().blob == expected => {
                        replaced = true;
                        let mut e = e.into_value();
                        e.blob = blob.into();
                        Op::Put(e)
                    }
                    _ => Op::Nop,
                }
            });
        Ok(replaced)
    }

    async fn join_indexes(
        &self,
        key: &str,
        indexes: &[String],
        _index_ttl: Duration,
    ) -> Result<(), StoreError> {
        let key: Arc<str> = Arc::from(key);
        // Never held across a cache call: the cache's eviction listener takes this lock.
        let named: Vec<Arc<str>> = {
            let idx = self.index_lock()?;
            indexes.iter().map(|name| idx.name(name)).collect()
        };
        let mut present = false;
        self.cache
            .entry(Arc::clone(&key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) => {
                        present = true;
                        let mut e = e.into_value();
                        let mut names = e.indexes.to_vec();
                        for name in &named {
                            if !names.iter().any(|n| n == name) {
                                names.push(Arc::clone(name));
                            }
                        }
                        e.indexes = names.into();
                        Op::Put(e)
                    }
                    None => Op::Nop,
                }
            });
        if present {
            let mut idx = self.index_lock()?;
            for name in &named {
                idx.insert(name, &key);
            }
        }
        Ok(())
    }

    async fn scan_heads(
        &self,
        prefix: &str,
        suffix: &str,
        _cursor: u64,
        _count: usize,
        head: usize,
    ) -> Result<(u64, Vec<Vec<u8>>), StoreError> {
        // In process, one step walks everything: no round trips to bound.
        let now = Instant::now();
        let heads = self
            .cache
            .iter()
            .filter(|(k, e)| k.starts_with(prefix) && k.ends_with(suffix) && e.expires > now)
            .map(|(_, e)| e.blob[..head.min(e.blob.len())].to_vec())
            .collect();
        Ok((0, heads))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.cache.remove(key).is_some())
    }

    async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) => {
                        let mut e = e.into_value();
                        e.expires = deadline(ttl);
                        Op::Put(e)
                    }
                    None => Op::Nop,
                }
            });
        Ok(())
    }

    async fn delete_index(&self, index: &str) -> Result<Vec<String>, StoreError> {
        let keys = self.index_lock()?.take(index);
        Ok(keys
            .into_iter()
            .filter(|k| self.cache.remove(k.as_str()).is_some())
            .collect())
    }

    async fn index_members(&self, index: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.index_lock()?.members(index))
    }

    async fn put(&self, key: &str, blob: &[u8], ttl: Duration) -> Result<(), StoreError> {
        self.cache.insert(
            Arc::from(key),
            Entry {
                blob: blob.into(),
                expires: deadline(ttl),
                indexes: Arc::from(Vec::new()),
            },
        );
        Ok(())
    }

    async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .cache
            .remove(key)
            .filter(|e| e.expires > Instant::now())
            .map(|e| e.blob.to_vec()))
    }

    async fn lock(&self, key: &str, token: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        let mut taken = false;
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) if e.value().expires > Instant::now() => Op::Nop,
                    _ => {
                        taken = true;
                        Op::Put(Entry {
                            blob: token.into(),
                            expires: deadline(ttl),
                            indexes: Arc::from(Vec::new()),
                        })
                    }
                }
            });
        Ok(taken)
    }

    async fn unlock(&self, key: &str, token: &[u8]) -> Result<(), StoreError> {
        self.cache
            .entry(Arc::from(key))
            .and_compute_with(|current| {
                use moka::ops::compute::Op;
                match current {
                    Some(e) if &*e.value().blob == token => Op::Remove,
                    _ => Op::Nop,
                }
            });
        Ok(())
    }

    fn session_count(&self) -> Option<u64> {
        // Session records are named `…}:s` (codec::storage_key); the rest are login
        // transactions, claims, locks and grace records. Expired entries are not listed.
        let n = self
            .cache
            .iter()
            .filter(|(k, _)| k.ends_with("}:s"))
            .count();
        Some(u64::try_from(n).unwrap_or(u64::MAX))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn rate(&self, key: &str, rate: Rate) -> Result<Option<Duration>, StoreError> {
        Ok(self.budgets.step(key, rate))
    }
}

/// When an entry living `ttl` from now expires; a `ttl` past what the clock can represent
/// is cut to a year (no panic on a huge configured lifetime).
fn deadline(ttl: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(ttl)
        .or_else(|| now.checked_add(Duration::from_secs(366 * 24 * 3600)))
        .unwrap_or(now)
}
