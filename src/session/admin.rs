//! What the admin API may see of sessions and how it ends them.
//!
//! A session is shown by its *handle*: the hex SHA-256 of its id, the part of its storage
//! key between `{` and `}`. The handle names a session to an operator but cannot be turned
//! into a cookie, and nothing here returns a token or the id itself. Revocation goes
//! through the same store deletes as `/bff/logout` and back-channel logout.

use super::state::Stored;
use super::{now_secs, timed, SessionStore, StoreError};
use serde::Serialize;
use std::time::Duration;

/// The length of a handle: hex of a SHA-256 digest.
const HANDLE_LEN: usize = 64;

/// One live session as the admin API lists it. Never a token, never the session id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// Opaque handle (hex SHA-256 of the session id), for revoking this session.
    pub handle: String,
    /// The provider's session id (`sid`), when the ID token had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Login time (unix seconds).
    pub created_at: u64,
    /// Last use (unix seconds), derived from the store's TTL: the idle timeout restarts at
    /// each use, so the time it has run is the time since the last use.
    pub last_seen_at: u64,
    /// The client address at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// The browser's `User-Agent` at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When the session ends if unused (unix seconds).
    pub idle_expires_at: u64,
    /// When the session ends at the latest (unix seconds).
    pub absolute_expires_at: u64,
}

/// Whether `handle` has the form of a handle (64 lowercase hex digits).
pub fn is_handle(handle: &str) -> bool {
    handle.len() == HANDLE_LEN
        && handle
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The handle inside a storage key (`prefix{handle}:s`).
fn handle_of(key: &str) -> Option<&str> {
    let start = key.find('{')? + 1;
    let end = start + key[start..].find('}')?;
    Some(&key[start..end])
}

/// When a session was last used: `now − (idle − ttl left)`, kept within
/// `[created_at, now]` (a TTL cut at the absolute end, or an idle timeout changed by a
/// reload, would otherwise put it outside).
fn last_seen(now: u64, idle: Duration, left: Duration, created_at: u64) -> u64 {
    let ran = idle.saturating_sub(left).as_secs();
    now.saturating_sub(ran).clamp(created_at.min(now), now)
}

impl SessionStore {
    /// The live sessions of user `sub`, oldest first.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn sessions_of(&self, sub: &str) -> Result<Vec<SessionInfo>, StoreError> {
        let codec = self.codec.load_full();
        // Sessions from before a key rotation are indexed under an older key's name.
        let mut keys = Vec::new();
        for index in codec.index_names("sub", sub) {
            keys.extend(timed("index_members", self.backend.index_members(&index)).await?);
        }
        keys.sort_unstable();
        keys.dedup();
        let idle = self.lifetimes.load().idle;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let Some((blob, left)) = timed("get", self.backend.get(&key)).await? else {
                continue;
            };
            let Some(stored) = codec
                .open_bytes(&key, &blob)
                .and_then(|opened| serde_json::from_slice::<Stored>(&opened.plain).ok())
            else {
                continue;
            };
            let now = now_secs();
            let Some(handle) = handle_of(&key) else {
                continue;
            };
            if stored.sub != sub || stored.expires_at <= now {
                continue;
            }
            out.push(SessionInfo {
                handle: handle.to_string(),
                sid: stored.sid,
                created_at: stored.created_at,
                last_seen_at: last_seen(now, idle, left, stored.created_at),
                client_addr: stored.client_addr,
                user_agent: stored.user_agent,
                idle_expires_at: now.saturating_add(left.as_secs()).min(stored.expires_at),
                absolute_expires_at: stored.expires_at,
            });
        }
        out.sort_by(|a, b| (a.created_at, &a.handle).cmp(&(b.created_at, &b.handle)));
        Ok(out)
    }

    /// Deletes the session named by `handle` (see [`is_handle`]); false if it was gone.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn delete_by_handle(&self, handle: &str) -> Result<bool, StoreError> {
        if !is_handle(handle) {
            return Ok(false);
        }
        let key = self.codec.load().storage_key_of_hash(handle);
        let deleted = timed("delete", self.backend.delete(&key)).await?;
        if deleted {
            // Its live connections end too, on every instance.
            self.announce_keys(std::slice::from_ref(&key)).await;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SessionConfig;
    use crate::session::{Tokens, UserSession};

    fn config() -> SessionConfig {
        crate::session::test_support::config(&[("k", 3)], 10)
    }

    fn session(sub: &str, ua: &str) -> UserSession {
        let tokens = Tokens {
            access_token: "secret-at".into(),
            refresh_token: Some("secret-rt".into()),
            id_token: None,
            access_expires_at: None,
            refresh_expires_at: None,
        };
        UserSession::new(
            sub.into(),
            Some("sid-1".into()),
            serde_json::json!({}),
            tokens,
            &config(),
        )
        .opened_by(Some([192, 0, 2, 7].into()), Some(ua))
    }

    #[tokio::test]
    async fn a_users_sessions_are_listed_by_handle_and_revoked_by_it() {
        let store = SessionStore::from_config(&config()).expect("memory store");
        let a = session("u1", "Firefox\u{7}");
        let b = session("u1", &"x".repeat(1000));
        let other = session("u2", "Chrome");
        for s in [&a, &b, &other] {
            store.create(s).await.expect("create");
        }
        let listed = store.sessions_of("u1").await.expect("list");
        assert_eq!(listed.len(), 2);
        let text = serde_json::to_string(&listed).expect("json");
        assert!(!text.contains("secret-"), "{text}");
        let first = listed
            .iter()
            .find(|i| i.user_agent.as_deref() == Some("Firefox"))
            .expect("a's entry");
        assert_eq!(first.client_addr.as_deref(), Some("192.0.2.7"));
        assert_eq!(first.sid.as_deref(), Some("sid-1"));
        assert_eq!(first.absolute_expires_at, a.expires_at);
        assert!(first.last_seen_at >= a.created_at && first.idle_expires_at > first.last_seen_at);
        assert!(listed
            .iter()
            .all(|i| i.user_agent.as_ref().is_some_and(|u| u.len() <= 256)));
        assert!(store.delete_by_handle(&first.handle).await.expect("delete"));
        assert!(!store.delete_by_handle(&first.handle).await.expect("again"));
        assert_eq!(store.get(&a.id).await.expect("get"), None);
        assert!(store.get(&b.id).await.expect("get").is_some());
        assert_eq!(store.sessions_of("u1").await.expect("list").len(), 1);
        assert!(!store.delete_by_handle("not-a-handle").await.expect("bad"));
    }

    #[test]
    fn last_seen_is_the_time_the_idle_timeout_has_run() {
        let idle = Duration::from_secs(600);
        assert_eq!(last_seen(1000, idle, Duration::from_secs(600), 0), 1000);
        assert_eq!(last_seen(1000, idle, Duration::from_secs(500), 0), 900);
        assert_eq!(last_seen(1000, idle, Duration::from_secs(10), 950), 950);
        assert_eq!(last_seen(1000, idle, Duration::from_secs(900), 0), 1000);
    }

    #[test]
    fn handles_are_64_lowercase_hex_digits() {
        let h = "a".repeat(64);
        assert!(is_handle(&h));
        assert!(!is_handle(&"A".repeat(64)));
        assert!(!is_handle(&"a".repeat(63)));
        assert!(!is_handle("../x"));
        assert_eq!(handle_of(&format!("p:{{{h}}}:s")), Some(h.as_str()));
    }
}
