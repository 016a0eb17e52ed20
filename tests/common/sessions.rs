//! Creating sessions and cookies through the library, the way the OAuth agent would: the
//! test process opens the same store (same Redis, same at-rest key and prefix) and the
//! same cookie key ring as the gateway under test.

use std::path::Path;

use bffgate::config::{self, Config};
use bffgate::cookie::CookieCipher;
use bffgate::session::{SessionStore, Tokens, UserSession};

/// The library view of one config file: its store and its cookie cipher.
pub struct Sessions {
    pub cfg: Config,
    pub store: SessionStore,
    pub cipher: CookieCipher,
}

impl Sessions {
    /// Loads `path` (the file a gateway runs with) and opens its store.
    pub async fn open(path: &Path) -> Sessions {
        let cfg = config::load(path).unwrap_or_else(|e| panic!("config {}: {e}", path.display()));
        let store = SessionStore::from_config(&cfg.session).expect("open session store");
        let cipher = CookieCipher::from_config(&cfg.cookie);
        Sessions { cfg, store, cipher }
    }

    /// A new session for `sub` whose access token is `access_token` (not stored yet).
    pub fn new_session(&self, sub: &str, sid: Option<&str>, access_token: &str) -> UserSession {
        let tokens = Tokens {
            access_token: access_token.into(),
            refresh_token: None,
            id_token: None,
            access_expires_at: None,
            refresh_expires_at: None,
        };
        UserSession::new(
            sub.into(),
            sid.map(Into::into),
            serde_json::json!({ "name": "Ada", "sub": sub }),
            tokens,
            &self.cfg.session,
        )
    }

    /// Stores a new session and returns it with its sealed cookie value.
    pub async fn login(&self, sub: &str, access_token: &str) -> (UserSession, String) {
        let session = self.new_session(sub, Some(&format!("sid-{sub}")), access_token);
        self.store.create(&session).await.expect("create session");
        let cookie = self.cipher.seal(&session.id);
        (session, cookie)
    }

    /// Seals a session id with this config's first key.
    pub fn seal(&self, session: &UserSession) -> String {
        self.cipher.seal(&session.id)
    }
}

/// The cookie cipher of a config file (for sealing with a ring no gateway runs with).
pub fn cipher_of(path: &Path) -> CookieCipher {
    let cfg = config::load(path).unwrap_or_else(|e| panic!("config {}: {e}", path.display()));
    CookieCipher::from_config(&cfg.cookie)
}
