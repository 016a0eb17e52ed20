//! What a session holds, and how it prints (never its tokens).

use crate::config::SessionConfig;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> u64 {
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
    /// Hard end (unix seconds): `created_at` + the absolute timeout.
    pub expires_at: u64,
}

impl UserSession {
    /// A new session with a fresh id, starting now and ending after the absolute timeout.
    pub fn new(
        sub: String,
        sid: Option<String>,
        claims: serde_json::Value,
        tokens: Tokens,
        config: &SessionConfig,
    ) -> Self {
        let created_at = now_secs();
        UserSession {
            id: SessionId::generate(),
            sub,
            sid,
            claims,
            tokens,
            created_at,
            expires_at: created_at.saturating_add(config.absolute_timeout.as_secs()),
        }
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
}
