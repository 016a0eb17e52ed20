//! Parsers for the value kinds the sections share: socket addresses, durations, base64
//! keys, http(s) URLs and browser origins.
//!
//! Each records a problem under the key it is given and returns a placeholder (or `None`)
//! so checking goes on; a recorded problem means the placeholder is never used.

use super::load::Problems;
use super::SecretKey;
use base64::Engine;
use std::net::SocketAddr;
use std::time::Duration;
use zeroize::Zeroize;

/// An `ip:port` address (no host names: listeners bind before DNS is trusted).
pub(super) fn socket_addr(s: &str, key: &str, p: &mut Problems) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(key, format!("`{s}` is not an ip:port address"));
            None
        }
    }
}

/// The longest duration any key accepts: every duration is a timeout, a lifetime or an
/// interval, and one past a year is a typo (`1000000h`) that would overflow clock
/// arithmetic.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// A duration such as `30s`, `5m` or `12h`, longer than zero and at most a year.
pub(super) fn duration(s: &str, key: &str, p: &mut Problems) -> Duration {
    match humantime::parse_duration(s) {
        Ok(d) if d > MAX_DURATION => {
            p.add(key, format!("`{s}` is longer than a year (366d)"));
            Duration::from_secs(1)
        }
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.add(key, "must be longer than zero");
            Duration::from_secs(1)
        }
        Err(e) => {
            p.add(
                key,
                format!("`{s}` is not a duration like 30s, 5m or 12h: {e}"),
            );
            Duration::from_secs(1)
        }
    }
}

/// A duration that may be zero (`clock_skew: 0s` turns the tolerance off), at most a year.
pub(super) fn duration_or_zero(s: &str, key: &str, p: &mut Problems) -> Duration {
    match humantime::parse_duration(s) {
        Ok(d) if d > MAX_DURATION => {
            p.add(key, format!("`{s}` is longer than a year (366d)"));
            Duration::ZERO
        }
        Ok(d) => d,
        Err(e) => {
            p.add(key, format!("`{s}` is not a duration: {e}"));
            Duration::ZERO
        }
    }
}

/// A size in bytes: a whole number with an optional `KiB`, `MiB` or `GiB`, at least 1.
pub(super) fn byte_size(s: &str, key: &str, p: &mut Problems) -> u64 {
    let t = s.trim();
    let (digits, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let scale = match unit.trim() {
        "" | "B" => Some(1u64),
        "KiB" => Some(1 << 10),
        "MiB" => Some(1 << 20),
        "GiB" => Some(1 << 30),
        _ => None,
    };
    match (digits.parse::<u64>(), scale) {
        (Ok(n), Some(scale)) if n > 0 => n.checked_mul(scale).unwrap_or_else(|| {
            p.add(key, format!("`{s}` is too large"));
            1
        }),
        _ => {
            p.add(
                key,
                format!("`{s}` is not a size like 64MiB (a whole number above 0; units B, KiB, MiB, GiB)"),
            );
            1
        }
    }
}

/// The key that stands in for one that could not be read or decoded.
pub(super) fn placeholder_key() -> SecretKey {
    SecretKey([0; 32])
}

/// Decodes a secret's text (already read, see [`super::resolve::secret_key`]) from base64,
/// padded or not, standard or URL-safe alphabet, into exactly 32 bytes.
pub(super) fn key_bytes(text: &str, key: &str, p: &mut Problems) -> SecretKey {
    if text.is_empty() {
        p.add(key, "secret is empty");
        return placeholder_key();
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let Some(mut bytes) = engines.iter().find_map(|e| e.decode(text.as_bytes()).ok()) else {
        p.add(
            key,
            "secret is not base64 (generate one with `bffgate --gen-key`)",
        );
        return placeholder_key();
    };
    let out = match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(b) => SecretKey(b),
        Err(_) => {
            p.add(
                key,
                format!(
                    "secret must decode to exactly 32 bytes, got {} (generate one with `bffgate --gen-key`)",
                    bytes.len()
                ),
            );
            placeholder_key()
        }
    };
    bytes.zeroize();
    out
}

/// An absolute `http` or `https` URL with a host.
pub(super) fn http_url(s: &str, key: &str, p: &mut Problems) -> url::Url {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            p.add(key, format!("`{s}` is not an http(s) URL"));
            url::Url::parse("http://invalid.invalid/")
                .unwrap_or_else(|_| unreachable!("constant URL"))
        }
    }
}

/// A browser origin (`scheme://host[:port]`, nothing else), serialized as browsers send it
/// in `Origin` (lowercase host, default port dropped). `None` if `s` is anything more.
pub(super) fn origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems, KEY};

    #[test]
    fn secrets_must_be_32_bytes_and_env_must_exist() {
        let text = base().replace("\"${KEY}\"", "\"c2hvcnQ=\"").replace(
            &format!("at_rest_key: \"{KEY}\""),
            "at_rest_key: \"${MISSING}\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "session.at_rest_key");
        let text = base().replace("\"${KEY}\"", "\"c2hvcnQ=\"");
        let p = problems(&text);
        assert_eq!(p[0].key, "cookie.keys[0].secret");
        assert!(p[0].reason.contains("32 bytes"));
    }

    #[test]
    fn absurd_durations_are_refused_with_their_key() {
        let text = base().replace(
            "session: {",
            "session: {idle_timeout: 1000000h, absolute_timeout: 367d, refresh_before_expiry: 400d, ",
        ) + "server: {grace_period_seconds: 18446744073709551615, graceful_shutdown_timeout_seconds: 86401}\n";
        let mut keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "server.grace_period_seconds",
                "server.graceful_shutdown_timeout_seconds",
                "session.absolute_timeout",
                "session.idle_timeout",
                "session.refresh_before_expiry",
            ]
        );
        let text = base().replace("session: {", "session: {absolute_timeout: 366d, ");
        assert!(problems(&text).is_empty(), "{:?}", problems(&text));
    }
}
