//! The cookies bffgate owns (the session cookie and the login-binding cookie): their names
//! and attributes in one place, and sealing.
//!
//! This module never talks to a store: it turns a [`SessionId`] into a `Set-Cookie` value
//! and a `Cookie` header back into a session id, nothing more.

mod cipher;

pub use cipher::{CookieCipher, Opened};

use crate::config::CookieConfig;
use crate::session::SessionId;

/// Why a cookie value did not open. Never carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not base64url, too short, or not the expected layout.
    #[error("cookie is malformed")]
    Malformed,
    /// An envelope version this build does not know.
    #[error("cookie version is unknown")]
    Version,
    /// Sealed with a key id the ring no longer (or never) held.
    #[error("cookie was sealed with an unknown key")]
    UnknownKey,
    /// Authentication failed: altered, truncated or forged.
    #[error("cookie failed authentication")]
    Tampered,
}

impl CookieError {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            CookieError::Malformed => "malformed",
            CookieError::Version => "version",
            CookieError::UnknownKey => "unknown_key",
            CookieError::Tampered => "tampered",
        }
    }
}

/// The session cookie's name, attributes and cipher.
#[derive(Debug)]
pub struct SessionCookie {
    config: CookieConfig,
    cipher: CookieCipher,
    attributes: String,
}

impl SessionCookie {
    /// Builds the cookie policy from validated config.
    pub fn new(config: &CookieConfig) -> Self {
        let mut attributes = format!("; Path={}", config.path);
        if let Some(domain) = &config.domain {
            attributes.push_str("; Domain=");
            attributes.push_str(domain);
        }
        // HttpOnly always: page scripts must never read the session handle.
        attributes.push_str("; HttpOnly");
        if config.secure {
            attributes.push_str("; Secure");
        }
        attributes.push_str("; SameSite=");
        attributes.push_str(config.same_site.as_str());
        SessionCookie {
            config: config.clone(),
            cipher: CookieCipher::new(&config.name, &config.keys),
            attributes,
        }
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the cookie is marked `Secure`.
    pub fn secure(&self) -> bool {
        self.config.secure
    }

    /// The cipher, for tools and tests that mint cookies.
    pub fn cipher(&self) -> &CookieCipher {
        &self.cipher
    }

    /// A `Set-Cookie` value carrying `id`, living `max_age_secs`.
    pub fn set_cookie(&self, id: &SessionId, max_age_secs: u64) -> String {
        format!(
            "{}={}{}; Max-Age={}",
            self.config.name,
            self.cipher.seal(id),
            self.attributes,
            max_age_secs
        )
    }

    /// A `Set-Cookie` value that removes the cookie.
    pub fn clear_cookie(&self) -> String {
        format!("{}={}; Max-Age=0", self.config.name, self.attributes)
    }

    /// The login-binding cookie's name: the session cookie's name with `_login`.
    pub fn login_name(&self) -> String {
        format!("{}_login", self.config.name)
    }

    /// A `Set-Cookie` value for the login-binding cookie. `SameSite=Lax`, not Strict: the
    /// provider's redirect back to the callback is a cross-site navigation, on which
    /// browsers withhold Strict cookies. Scoped to the agent's `base_path` (or `/` for a
    /// `__Host-` name, which requires it).
    pub fn login_set_cookie(&self, value: &str, base_path: &str, max_age_secs: u64) -> String {
        let path = if self.config.name.starts_with("__Host-") {
            "/"
        } else {
            base_path
        };
        let secure = if self.config.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path={path}; HttpOnly{secure}; SameSite=Lax; Max-Age={max_age_secs}",
            self.login_name()
        )
    }

    /// Finds our cookie's value among `Cookie` header values (the first occurrence wins).
    pub fn find<'a>(&self, headers: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
        cookie_value(headers, &self.config.name)
    }

    /// Whether a `Set-Cookie` value sets our cookie.
    pub fn is_set_by(&self, set_cookie: &[u8]) -> bool {
        value_of(set_cookie.trim_ascii(), self.config.name.as_bytes()).is_some()
    }

    /// Rewrites a `Cookie` header value without our cookie; `None` when nothing is left.
    pub fn strip(&self, header: &[u8]) -> Option<Vec<u8>> {
        let name = self.config.name.as_bytes();
        let mut out = Vec::with_capacity(header.len());
        for pair in header.split(|&b| b == b';').map(<[u8]>::trim_ascii) {
            if pair.is_empty() || value_of(pair, name).is_some() {
                continue;
            }
            if !out.is_empty() {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(pair);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// The value of a `name=value` pair (or `Set-Cookie` value) if it is named `name`.
fn value_of<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = pair.strip_prefix(name)?;
    rest.strip_prefix(b"=")
}

/// The value of cookie `name` among `Cookie` header values (the first occurrence wins).
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    headers
        .flat_map(|h| h.split(|&b| b == b';'))
        .find_map(|pair| value_of(pair.trim_ascii(), name.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
}

impl CookieCipher {
    /// The cipher for a cookie config (what tools and tests use to mint cookies).
    pub fn from_config(config: &CookieConfig) -> Self {
        CookieCipher::new(&config.name, &config.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CookieKey, SameSite, SecretKey};

    fn cookie() -> SessionCookie {
        SessionCookie::new(&CookieConfig {
            name: "bff".into(),
            domain: Some("api.test".into()),
            path: "/".into(),
            same_site: SameSite::Strict,
            secure: true,
            keys: vec![CookieKey {
                id: "k".into(),
                secret: SecretKey::from_bytes([7; 32]),
            }],
        })
    }

    #[test]
    fn attributes_are_strict_by_default() {
        let c = cookie().set_cookie(&SessionId::generate(), 60);
        assert!(c.starts_with("bff="));
        assert!(
            c.ends_with("; Path=/; Domain=api.test; HttpOnly; Secure; SameSite=Strict; Max-Age=60")
        );
        assert_eq!(
            cookie().clear_cookie(),
            "bff=; Path=/; Domain=api.test; HttpOnly; Secure; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn find_and_strip_leave_other_cookies() {
        let c = cookie();
        let h: &[u8] = b"bffx=1; theme=dark;bff=abc ; lang=en";
        assert_eq!(c.find([h].into_iter()), Some("abc"));
        assert_eq!(
            c.strip(h).as_deref(),
            Some(&b"bffx=1; theme=dark; lang=en"[..])
        );
        assert_eq!(c.strip(b"bff=abc"), None);
        assert_eq!(c.find([&b"bffx=1"[..]].into_iter()), None);
    }
}
