//! The request id: taken from a trusted proxy's `X-Request-Id`, else minted here; logged,
//! sent upstream and returned to the client, so one id follows a request everywhere.

use pingora::http::RequestHeader;

/// The header that carries it.
pub const HEADER: &str = "x-request-id";

/// The longest id taken from a proxy.
const MAX_LEN: usize = 128;

/// The request's id: a well-formed `X-Request-Id` (1–128 visible ASCII characters, no
/// quotes or backslashes) when `from_trusted_proxy` (see `client_and_trust`), else a new
/// one ([`minted`]).
pub fn request_id(req: &RequestHeader, from_trusted_proxy: bool) -> String {
    if from_trusted_proxy {
        let given = req
            .headers
            .get(HEADER)
            .map(|v| v.as_bytes())
            .filter(|v| well_formed(v));
        if let Some(v) = given {
            return String::from_utf8_lossy(v).into_owned();
        }
    }
    minted()
}

/// A new id: this process's random 64-bit prefix and a counter, 32 hex digits. Unique
/// across instances and restarts without a system call per request.
fn minted() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: once_cell::sync::Lazy<[u8; 8]> =
        once_cell::sync::Lazy::new(crate::random::os_bytes);
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 32];
    let (prefix, counter) = id.split_at_mut(16);
    // Both halves are exactly twice their input's length: neither encoding can fail.
    if hex::encode_to_slice(*PREFIX, prefix).is_err()
        || hex::encode_to_slice(n.to_be_bytes(), counter).is_err()
    {
        return format!("{}{n:016x}", hex::encode(*PREFIX));
    }
    id.iter().map(|&b| char::from(b)).collect()
}

fn well_formed(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_LEN
        && v.iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_short_ids_are_taken() {
        assert!(well_formed(b"abc-123_XYZ.9"));
        assert!(!well_formed(b""));
        assert!(!well_formed(b"has space"));
        assert!(!well_formed(b"quote\"d"));
        assert!(!well_formed(&[b'a'; 129]));
        assert!(!well_formed("é".as_bytes()));
    }

    #[test]
    fn minted_ids_are_32_hex_digits_and_distinct() {
        let (a, b) = (minted(), minted());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a[..16], b[..16], "one prefix per process");
    }
}
