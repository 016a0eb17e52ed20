//! What the session unit tests share: a memory-store configuration over a given key ring.

use crate::config::{RingKey, SecretKey, SessionConfig, StoreConfig};
use std::time::Duration;

/// The at-rest ring `ids` (each id with a key of that byte repeated), first seals.
pub(crate) fn ring(ids: &[(&str, u8)]) -> Vec<RingKey> {
    ids.iter()
        .map(|(id, b)| RingKey {
            id: (*id).into(),
            secret: SecretKey::from_bytes([*b; 32]),
        })
        .collect()
}

/// A memory store of `max_sessions` under ring `ids`: idle 60 s, absolute 1 h.
pub(crate) fn config(ids: &[(&str, u8)], max_sessions: u64) -> SessionConfig {
    SessionConfig {
        store: StoreConfig::Memory { max_sessions },
        at_rest_keys: ring(ids),
        key_census_interval: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        absolute_timeout: Duration::from_secs(3600),
        refresh_before_expiry: Duration::from_secs(30),
        refresh_lock_wait: Duration::from_secs(5),
    }
}

/// A session of `sub` with sid `p1` and short placeholder tokens, under [`config`].
pub(crate) fn session(sub: &str) -> crate::session::UserSession {
    let tokens = crate::session::Tokens {
        access_token: "at".into(),
        refresh_token: Some("rt".into()),
        id_token: None,
        access_expires_at: Some(5),
        refresh_expires_at: None,
    };
    crate::session::UserSession::new(
        sub.into(),
        Some("p1".into()),
        serde_json::json!({"n": 1}),
        tokens,
        &config(&[("k", 9)], 10),
    )
}
