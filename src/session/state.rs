//! What a session holds, and how it prints (never its tokens).

use crate::config::SessionConfig;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now. Read from the kernel's coarse clock (updated every
/// tick, a few milliseconds): whole seconds need no finer one, and it costs no counter read,
/// which the session checks of every authenticated request would otherwise pay.
pub fn now_secs() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    if let Ok(t) = clock_gettime(ClockId::CLOCK_REALTIME_COARSE) {
        if let Ok(secs) = u64::try_from(t.tv_sec()) {
            return secs;
        }
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// 32 random bytes naming a session. Only the browser's sealed cookie holds it; stores see
/// a hash of it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh id from the OS's random source.
    pub fn generate() -> Self {
        SessionId(crate::random::os_bytes())
    }

    /// The id from exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(SessionId)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// The tokens a session carries. `Debug` says which are present, never what they are.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    /// Forwarded upstream as `Authorization: Bearer`.
    pub access_token: String,
    /// Used to renew the access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Kept for RP-initiated logout (`id_token_hint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires (unix seconds), if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
    /// When the refresh token expires (unix seconds), if the provider said
    /// (`refresh_expires_in`, `refresh_token_expires_in`, or a JWT refresh token's `exp`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<u64>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tokens")
            .field("access_token", &"<redacted>")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "<redacted>"),
            )
            .field("id_token", &self.id_token.as_ref().map(|_| "<redacted>"))
            .field("access_expires_at", &self.access_expires_at)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .finish()
    }
}

/// An access token obtained for one route (token exchange or client credentials).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteToken {
    /// The token, sent upstream as a bearer.
    pub access_token: String,
    /// When it expires (unix seconds), if the provider said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl fmt::Debug for RouteToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteToken")
            .field("access_token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A logged-in user's server-side session.
#[derive(Debug, Clone, PartialEq)]
pub struct UserSession {
    /// The session's id (never stored as is).
    pub id: SessionId,
    /// The user (`sub` claim).
    pub sub: String,
    /// The provider's session id (`sid` claim), for back-channel logout.
    pub sid: Option<String>,
    /// Claims the SPA may see.
    pub claims: serde_json::Value,
    /// The tokens.
    pub tokens: Tokens,
    /// Login time (unix seconds).
    pub created_at: u64,
    /// Hard end (unix seconds): `created_at` + the absolute timeout, or earlier when the
    /// refresh token expires earlier.
    pub expires_at: u64,
    /// The client address bffgate trusted at login (for the admin API's listing).
    pub client_addr: Option<String>,
    /// The browser's `User-Agent` at login, cut to [`MAX_USER_AGENT_CHARS`].
    pub user_agent: Option<String>,
    /// Tokens exchanged for routes with a token policy of their own, by the grant's cache
    /// key ([`crate::config::RouteGrant::cache_key`]); sealed and dropped with the session.
    pub route_tokens: BTreeMap<String, RouteToken>,
    /// The session's DPoP key when its tokens are bound to one (`oidc.dpop`).
    pub dpop_key: Option<crate::dpop::StoredKey>,
}

/// The longest `User-Agent` a session keeps, in characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

impl UserSession {
    /// When a session that started at `created_at` ends with `tokens`: when its refresh
    /// token can no longer be used, never after `created_at` + `absolute`.
    pub fn end_for(created_at: u64, tokens: &Tokens, absolute: std::time::Duration) -> u64 {
        let absolute_end = created_at.saturating_add(absolute.as_secs());
        tokens
            .refresh_expires_at
            .map_or(absolute_end, |at| at.min(absolute_end))
    }

    /// A new session with a fresh id, starting now and ending when its refresh token
    /// expires, at the latest after the absolute timeout.
    pub fn new(
        sub: String,
        sid: Option<String>,
        claims: serde_json::Value,
        tokens: Tokens,
        config: &SessionConfig,
    ) -> Self {
        let created_at = now_secs();
        let expires_at = Self::end_for(created_at, &tokens, config.absolute_timeout);
        UserSession {
            id: SessionId::generate(),
            sub,
            sid,
            claims,
            tokens,
            created_at,
            expires_at,
            client_addr: None,
            user_agent: None,
            route_tokens: BTreeMap::new(),
            dpop_key: None,
        }
    }

    /// The same session, remembering where it was opened from: the client address and the
    /// `User-Agent` (without control characters, at most [`MAX_USER_AGENT_CHARS`]).
    pub fn opened_by(mut self, addr: Option<std::net::IpAddr>, user_agent: Option<&str>) -> Self {
        self.client_addr = addr.map(|a| a.to_string());
        self.user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .filter(|ua| !ua.is_empty());
        self
    }
}

/// The stored form of a session (inside the at-rest encryption).
#[derive(Serialize, Deserialize)]
pub(crate) struct Stored {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub claims: serde_json::Value,
    pub tokens: Tokens,
    pub created_at: u64,
    pub expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_tokens: BTreeMap<String, RouteToken>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<crate::dpop::StoredKey>,
}

impl Stored {
    /// The stored form of `s` (everything but its id, which is the storage key's preimage).
    pub(crate) fn of(s: &UserSession) -> Self {
        Stored {
            sub: s.sub.clone(),
            sid: s.sid.clone(),
            claims: s.claims.clone(),
            tokens: s.tokens.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
            client_addr: s.client_addr.clone(),
            user_agent: s.user_agent.clone(),
            route_tokens: s.route_tokens.clone(),
            dpop_key: s.dpop_key.clone(),
        }
    }

    /// The session this record holds, under its id.
    pub(crate) fn into_session(self, id: SessionId) -> UserSession {
        UserSession {
            id,
            sub: self.sub,
            sid: self.sid,
            claims: self.claims,
            tokens: self.tokens,
            created_at: self.created_at,
            expires_at: self.expires_at,
            client_addr: self.client_addr,
            user_agent: self.user_agent,
            route_tokens: self.route_tokens,
            dpop_key: self.dpop_key,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_session_ends_with_its_refresh_token_never_after_the_absolute_timeout() {
        let tokens = |rt_end: Option<u64>| Tokens {
            access_token: "at".into(),
            refresh_token: Some("rt".into()),
            id_token: None,
            access_expires_at: None,
            refresh_expires_at: rt_end,
        };
        let hour = Duration::from_secs(3600);
        assert_eq!(UserSession::end_for(1000, &tokens(None), hour), 4600);
        assert_eq!(UserSession::end_for(1000, &tokens(Some(2000)), hour), 2000);
        assert_eq!(UserSession::end_for(1000, &tokens(Some(9000)), hour), 4600);
    }
}
