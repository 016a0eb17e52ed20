//! The cookies bffgate owns (the session cookie and the login-binding cookie): their names
//! and attributes in one place, and sealing.
//!
//! This module never talks to a store: it turns a [`SessionId`] into a `Set-Cookie` value
//! and a `Cookie` header back into a session id, nothing more.

mod cipher;
#[cfg(test)]
mod props;

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
    /// The login-binding cookie's name (see [`Self::login_name`]), built once.
    login: String,
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
        let base = String::from_utf8_lossy(unprefixed(config.name.as_bytes()));
        let login = if config.secure {
            format!("__Host-{base}_login")
        } else {
            format!("{base}_login")
        };
        SessionCookie {
            config: config.clone(),
            cipher: CookieCipher::new(&config.name, &config.keys),
            attributes,
            login,
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

    /// The login-binding cookie's name: the session cookie's name (without a `__Host-` or
    /// `__Secure-` prefix) with `_login`, prefixed `__Host-` whenever the session cookie is
    /// `Secure`, so no sibling subdomain and no plain-HTTP response can set it.
    pub fn login_name(&self) -> &str {
        &self.login
    }

    /// A `Set-Cookie` value for the login-binding cookie. `SameSite=Lax`, not Strict: the
    /// provider's redirect back to the callback is a cross-site navigation, on which
    /// browsers withhold Strict cookies. A `Secure` cookie is `__Host-` prefixed and so
    /// scoped to `/` (the prefix requires it); otherwise to the agent's `base_path`.
    pub fn login_set_cookie(&self, value: &str, base_path: &str, max_age_secs: u64) -> String {
        let (path, secure) = if self.config.secure {
            ("/", "; Secure")
        } else {
            (base_path, "")
        };
        format!(
            "{}={value}; Path={path}; HttpOnly{secure}; SameSite=Lax; Max-Age={max_age_secs}",
            self.login_name()
        )
    }

    /// A `Set-Cookie` value that removes the login-binding cookie (after the callback).
    pub fn login_clear_cookie(&self, base_path: &str) -> String {
        self.login_set_cookie("", base_path, 0)
    }

    /// Whether a cookie named `name` is one bffgate owns: the session or the login cookie,
    /// under its own name or a `__Host-`/`__Secure-` prefixed variant of it (the prefix
    /// matched case-insensitively, as RFC 6265bis browsers do; the rest case-sensitively).
    pub fn owns(&self, name: &[u8]) -> bool {
        let base = unprefixed(name);
        base == unprefixed(self.config.name.as_bytes()) || base == unprefixed(self.login.as_bytes())
    }

    /// Finds our cookie's value among `Cookie` header values (the first occurrence wins).
    pub fn find<'a>(&self, headers: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
        cookie_value(headers, &self.config.name)
    }

    /// Whether a `Set-Cookie` value would set (or clear) a cookie bffgate owns, as a
    /// browser parses it (RFC 6265bis §5.6: the name is what precedes the first `=` of the
    /// part before the first `;`, trimmed; a pair without a name is sent back as its bare
    /// value, so a nameless `=bff_session=x` counts as naming `bff_session`).
    pub fn is_set_by(&self, set_cookie: &[u8]) -> bool {
        let pair = set_cookie.split(|&b| b == b';').next().unwrap_or_default();
        let (name, value) = split_pair(pair);
        if name.is_empty() {
            return self.owns(split_pair(value).0) || self.owns(value);
        }
        self.owns(name)
    }

    /// Rewrites a `Cookie` header value without the cookies bffgate owns (see
    /// [`Self::owns`]); every other pair is kept byte for byte. `None` when nothing is left.
    pub fn strip(&self, header: &[u8]) -> Option<Vec<u8>> {
        // Allocated at the first pair kept: a header of only our cookies allocates nothing.
        let mut out = Vec::new();
        for pair in pairs(header).map(<[u8]>::trim_ascii) {
            if pair.is_empty() || self.owns(split_pair(pair).0) {
                continue;
            }
            if out.is_empty() {
                out.reserve_exact(header.len());
            } else {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(pair);
        }
        (!out.is_empty()).then_some(out)
    }
}

/// A cookie name without a `__Host-` or `__Secure-` prefix (matched case-insensitively).
fn unprefixed(name: &[u8]) -> &[u8] {
    for prefix in [&b"__host-"[..], b"__secure-"] {
        if name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix) {
            return &name[prefix.len()..];
        }
    }
    name
}

/// A `name=value` pair split at its first `=`, both sides trimmed; no `=` means no name.
fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'=', pair) {
        Some(i) => (pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()),
        None => (&[], pair.trim_ascii()),
    }
}

/// The value of a `name=value` pair if it is named `name` (exactly, after trimming).
fn value_of<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let (n, v) = split_pair(pair);
    (!n.is_empty() && n == name).then_some(v)
}

/// The value of cookie `name` among `Cookie` header values (the first occurrence wins).
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a [u8]>, name: &str) -> Option<&'a str> {
    headers
        .flat_map(pairs)
        .find_map(|pair| value_of(pair.trim_ascii(), name.as_bytes()))
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The `;`-separated parts of a `Cookie` header value, untrimmed (found with `memchr`: this
/// runs on every authenticated request).
fn pairs(header: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(header);
    std::iter::from_fn(move || {
        let part = rest?;
        match memchr::memchr(b';', part) {
            Some(i) => {
                rest = part.get(i + 1..);
                part.get(..i)
            }
            None => {
                rest = None;
                Some(part)
            }
        }
    })
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

    #[test]
    fn set_cookie_filter_and_login_names() {
        let c = cookie();
        assert_eq!(c.login_name(), "__Host-bff_login");
        for planted in [
            "bff=x",
            "bff =x",
            "\tbff\t= x; Path=/",
            "__Host-bff=x",
            "__secure-bff=x",
            "__Host-bff_login=x",
            "bff_login=x",
            "=bff=x",
            "bff",
        ] {
            assert!(c.is_set_by(planted.as_bytes()), "{planted}");
        }
        for theirs in ["bffx=1", "BFF=1", "xbff=1", "theme=bff", "=theme=bff"] {
            assert!(!c.is_set_by(theirs.as_bytes()), "{theirs}");
        }
        assert_eq!(
            c.strip(b"a=1; __Host-bff_login=z; bff =y; b=2").as_deref(),
            Some(&b"a=1; b=2"[..])
        );
    }
}
