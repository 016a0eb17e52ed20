//! What an at-rest key rotation needs from the store: swapping the key ring on reload,
//! re-sealing a session read under an older key, and counting the store by key so an
//! operator knows when an old key can go.
//!
//! A session opened under an older key is re-sealed under the current one as it is read
//! (one compare-and-set write, once per session: a write in between, such as a refresh,
//! wins and was sealed under the current key anyway) and joins its indexes under the
//! current key's names, so removing the old key later loses neither the session nor its
//! back-channel logout. Every write seals under the current key. So once every session has
//! been used after the rotation, none is left under an old key.

use super::codec::{key_id_of, Codec, HEADER_MAX};
use super::{timed, SessionStore, StoreError, UserSession};
use crate::config::RingKey;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Keys one census step asks the store for.
const CENSUS_STEP: usize = 1000;

/// The label under which records sealed by no key of the ring are counted: removed keys,
/// and records from before key rings. No key id can take it (ids have no parentheses).
pub const OTHER_KEY: &str = "(other)";

/// Session records in the store, by the key that sealed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCensus {
    /// Records per key id of the ring (every id present, zero included), plus
    /// [`OTHER_KEY`] for the rest.
    pub by_key: BTreeMap<String, u64>,
    /// Records sealed under anything but the current key: what still needs the old keys.
    pub under_old_keys: u64,
}

impl SessionStore {
    /// Makes `keys` the at-rest key ring (configuration reload): the first seals from now
    /// on, every one opens. Names and prefix are unchanged.
    pub fn set_at_rest_keys(&self, keys: &[RingKey]) {
        let prefix = self.codec.load().prefix().to_string();
        self.codec.store(Arc::new(Codec::new(keys, &prefix)));
    }

    /// The key ids of the at-rest ring now in force, the current one first.
    pub fn at_rest_key_ids(&self) -> Vec<String> {
        self.codec.load().key_ids().map(str::to_string).collect()
    }

    /// Re-seals `s`, read as `old` under an older key, under the current key, and adds it
    /// to its indexes under the current key's names. Best effort: the session was read and
    /// is served either way; a failure leaves it for its next read.
    pub(super) async fn reseal(&self, codec: &Codec, key: String, s: &UserSession, old: &[u8]) {
        let Ok(blob) = codec.seal(&key, s) else {
            return;
        };
        // Even when a newer write wins the compare-and-set, the session joins the current
        // key's indexes: that write may have come from an instance that does not do so.
        if let Err(e) = timed("reseal", self.backend.reseal(&key, old, &blob)).await {
            tracing::debug!(error = %e, "re-sealing a session under the current key failed; retried at its next read");
        }
        self.join_current_indexes(codec, &key, s).await;
    }

    /// Adds the session stored under `key` to its indexes under the current key's names
    /// (best effort, as [`Self::reseal`]).
    pub(super) async fn join_current_indexes(&self, codec: &Codec, key: &str, s: &UserSession) {
        let indexes = Self::indexes(codec, s);
        let ttl = self.lifetimes.load().absolute;
        if let Err(e) = timed(
            "join_indexes",
            self.backend.join_indexes(key, &indexes, ttl),
        )
        .await
        {
            tracing::debug!(error = %e, "indexing a session under the current key failed; retried at its next read");
        }
    }

    /// Counts the session records in the store by the key that sealed them, in one walk
    /// of bounded steps ([`CENSUS_STEP`] keys each), reading only each record's clear
    /// header. On a shared store every instance counts the same records.
    ///
    /// # Errors
    /// The backend failed, or cannot walk its keys (a Redis Cluster).
    pub async fn key_census(&self) -> Result<KeyCensus, StoreError> {
        let codec = self.codec.load_full();
        let mut by_key: BTreeMap<String, u64> =
            codec.key_ids().map(|id| (id.to_string(), 0)).collect();
        by_key.insert(OTHER_KEY.into(), 0);
        let (prefix, suffix) = (codec.prefix(), "}:s");
        let mut cursor = 0;
        loop {
            // Not in the store latency metrics: they describe what requests wait for.
            let (next, heads) = self
                .backend
                .scan_heads(prefix, suffix, cursor, CENSUS_STEP, HEADER_MAX)
                .await?;
            for head in &heads {
                let label = key_id_of(head)
                    .filter(|id| by_key.contains_key(*id))
                    .unwrap_or(OTHER_KEY);
                *by_key.entry(label.to_string()).or_default() += 1;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        let total: u64 = by_key.values().sum();
        let current = codec
            .current_id()
            .and_then(|id| by_key.get(id))
            .copied()
            .unwrap_or(0);
        Ok(KeyCensus {
            by_key,
            under_old_keys: total - current,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionConfig;
    use crate::session::Tokens;
    use std::time::Duration;

    use crate::session::test_support::ring;

    fn config() -> SessionConfig {
        crate::session::test_support::config(&[("k1", 1)], 100)
    }

    fn session(sub: &str, sid: &str) -> UserSession {
        let tokens = Tokens {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            id_token: None,
            access_expires_at: None,
            refresh_expires_at: None,
        };
        UserSession::new(
            sub.into(),
            Some(sid.into()),
            serde_json::json!({}),
            tokens,
            &config(),
        )
    }

    fn counts(c: &KeyCensus) -> Vec<(&str, u64)> {
        c.by_key.iter().map(|(k, v)| (k.as_str(), *v)).collect()
    }

    /// The whole rotation on one store: sessions and coordination records written under
    /// k1 survive k2 becoming current, are re-sealed as they are read, and survive k1
    /// leaving the ring, still found by their indexes.
    #[tokio::test]
    async fn rotation_reseals_on_read_and_loses_nothing() {
        let store = SessionStore::from_config(&config()).expect("memory store");
        let a = session("alice", "p1");
        let b = session("bob", "p2");
        let c = session("carol", "p3");
        for s in [&a, &b, &c] {
            store.create(s).await.expect("create");
        }
        store
            .put_transient("tx", b"login", Duration::from_secs(60))
            .await
            .expect("put");
        assert!(store
            .claim_once("code", Duration::from_secs(60))
            .await
            .expect("claim"));
        let census = store.key_census().await.expect("census");
        assert_eq!(counts(&census), [("(other)", 0), ("k1", 3)]);
        assert_eq!(census.under_old_keys, 0);

        store.set_at_rest_keys(&ring(&[("k2", 2), ("k1", 1)]));
        let census = store.key_census().await.expect("census");
        assert_eq!(counts(&census), [("(other)", 0), ("k1", 3), ("k2", 0)]);
        assert_eq!(census.under_old_keys, 3);
        // Coordination records written under k1 are found and open.
        assert_eq!(
            store.get_transient("tx").await.expect("get").as_deref(),
            Some(&b"login"[..])
        );
        assert!(!store
            .claim_once("code", Duration::from_secs(60))
            .await
            .expect("claim"));
        // Reading re-seals.
        assert_eq!(store.get(&a.id).await.expect("get"), Some(a.clone()));
        assert_eq!(store.get(&b.id).await.expect("get"), Some(b.clone()));
        let census = store.key_census().await.expect("census");
        assert_eq!(counts(&census), [("(other)", 0), ("k1", 1), ("k2", 2)]);
        assert_eq!(census.under_old_keys, 1);
        // A write seals under the current key too.
        let mut c2 = c.clone();
        c2.tokens.access_token = "at2".into();
        assert!(store.update(&c2).await.expect("update"));
        assert_eq!(store.key_census().await.expect("census").under_old_keys, 0);

        // k1 leaves: every session still opens and is found by its indexes under k2's names
        // (a and b joined them when re-sealed, c when updated).
        store.set_at_rest_keys(&ring(&[("k2", 2)]));
        assert_eq!(store.get(&a.id).await.expect("get"), Some(a.clone()));
        assert_eq!(store.get(&c.id).await.expect("get"), Some(c2.clone()));
        assert_eq!(store.delete_by_sid("p1").await.expect("by sid"), 1);
        assert_eq!(store.delete_by_sub("bob").await.expect("by sub"), 1);
        assert_eq!(store.delete_by_sub("carol").await.expect("by sub"), 1);
        assert_eq!(store.get(&a.id).await.expect("get"), None);
        assert_eq!(store.get(&b.id).await.expect("get"), None);
        assert_eq!(store.get(&c.id).await.expect("get"), None);
        assert_eq!(store.take_transient("tx").await.expect("take"), None);
    }

    /// A re-seal never overwrites a write that happened after the read it started from.
    #[tokio::test]
    async fn a_reseal_loses_to_a_newer_write() {
        let store = SessionStore::from_config(&config()).expect("memory store");
        let a = session("alice", "p1");
        store.create(&a).await.expect("create");
        let key = store.codec.load().storage_key(&a.id);
        let (old, _) = store
            .backend
            .get(&key)
            .await
            .expect("get")
            .expect("present");
        store.set_at_rest_keys(&ring(&[("k2", 2), ("k1", 1)]));
        let mut newer = a.clone();
        newer.tokens.access_token = "fresh".into();
        assert!(store.update(&newer).await.expect("update"));
        let codec = store.codec.load_full();
        store.reseal(&codec, key, &a, &old).await;
        assert_eq!(
            store
                .get(&a.id)
                .await
                .expect("get")
                .map(|s| s.tokens.access_token),
            Some("fresh".into())
        );
    }
}
