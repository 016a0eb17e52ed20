//! Host names as bffgate compares them: the host of a `Host` header, an HTTP/2
//! `:authority`, an absolute-form target or a configured name, in one canonical form.

use std::borrow::Cow;

/// A host and its port, read from an authority (`name[:port]`, `[v6][:port]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort<'a> {
    /// Lowercase, without a trailing dot; an IPv6 literal keeps its brackets. Borrowed
    /// from the authority when it was already in that form.
    pub host: Cow<'a, str>,
    /// The port, if one was written.
    pub port: Option<u16>,
}

/// Reads an authority as a host and port. `None` when it is not one: empty, userinfo,
/// a path, query or fragment, spaces, a bad port or bad brackets.
pub fn parse_authority(raw: &str) -> Option<HostPort<'_>> {
    let (host, port) = if raw.starts_with('[') {
        let close = raw.find(']')?;
        (&raw[..=close], &raw[close + 1..])
    } else {
        match raw.find(':') {
            Some(i) => (&raw[..i], &raw[i..]),
            None => (raw, ""),
        }
    };
    let port = match port {
        "" => None,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    let valid = if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']')?;
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        is_dns_name(host.strip_suffix('.').unwrap_or(host))
    };
    if !valid {
        return None;
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Some(HostPort { host, port })
}

/// Whether `name` is dot-separated non-empty labels of letters, digits, `-` and `_`
/// (checked in one pass: this runs on every request).
fn is_dns_name(name: &str) -> bool {
    let mut previous = b'.';
    for b in name.bytes() {
        match b {
            b'.' if previous == b'.' => return false,
            b'.' | b'-' | b'_' => {}
            _ if b.is_ascii_alphanumeric() => {}
            _ => return false,
        }
        previous = b;
    }
    !name.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(raw: &str) -> Option<String> {
        parse_authority(raw).map(|h| h.host.into_owned())
    }

    #[test]
    fn canonical_host_is_lowercase_without_port_or_trailing_dot() {
        assert_eq!(host("API.Example.com").as_deref(), Some("api.example.com"));
        assert_eq!(
            host("api.example.com.:8443").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(
            parse_authority("a.test:8443").and_then(|h| h.port),
            Some(8443)
        );
        assert_eq!(host("[::1]:80").as_deref(), Some("[::1]"));
        assert_eq!(host("127.0.0.1").as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn what_is_not_a_host_is_refused() {
        for bad in [
            "", "a@b", "a/b", "a b", "a:x", "a:", "a..b", ".", "a%2eb", "[::1", "a:99999", "a?b",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }
}
