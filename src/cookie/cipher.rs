//! Sealing session ids into cookie values with AES-256-GCM and a rotating key ring.
//!
//! Envelope: `base64url(version ‖ id_len ‖ key_id ‖ nonce(12) ‖ ciphertext ‖ tag(16))`,
//! with the cookie name as associated data so a value cannot be replayed under another
//! cookie. The nonce is 96 random bits from the OS for every seal.

use super::CookieError;
use crate::config::CookieKey;
use crate::session::SessionId;
use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The longest envelope: a key id of 255 bytes and a 32-byte session id.
const MAX_RAW: usize = 2 + 255 + NONCE_LEN + 32 + TAG_LEN;

/// What opening a cookie gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The session id inside.
    pub id: SessionId,
    /// True when a key other than the current one sealed it: re-seal on the response.
    pub needs_reseal: bool,
}

/// Seals and opens cookie values with a key ring whose first key is current.
pub struct CookieCipher {
    aad: Vec<u8>,
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for CookieCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("CookieCipher")
            .field("key_ids", &ids)
            .finish()
    }
}

impl CookieCipher {
    /// Builds a cipher for the cookie `name` from a non-empty key ring.
    pub fn new(name: &str, keys: &[CookieKey]) -> Self {
        CookieCipher {
            aad: name.as_bytes().to_vec(),
            keys: keys
                .iter()
                .map(|k| (k.id.clone(), Aes256Gcm::new(k.secret.expose().into())))
                .collect(),
        }
    }

    /// Seals a session id with the current key.
    pub fn seal(&self, id: &SessionId) -> String {
        let Some((key_id, cipher)) = self.keys.first() else {
            // Config validation refuses an empty ring; an unsealable value opens nowhere.
            return String::new();
        };
        let nonce: [u8; NONCE_LEN] = crate::random::os_bytes();
        let payload = Payload {
            msg: id.as_bytes(),
            aad: &self.aad,
        };
        // AES-GCM with a 96-bit nonce refuses only messages or associated data beyond
        // 2^36 bytes; a 32-byte id under a cookie name never comes near.
        #[allow(
            clippy::expect_used,
            reason = "AES-GCM fails only above 64 GiB of input; here: 32 bytes and the cookie name"
        )]
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("AES-256-GCM seals a 32-byte session id");
        let mut out = Vec::with_capacity(2 + key_id.len() + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.push(key_id.len() as u8);
        out.extend_from_slice(key_id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens a cookie value.
    ///
    /// # Errors
    /// [`CookieError`] says why the value is not a cookie this ring sealed; none of its
    /// variants carries the value.
    pub fn open(&self, value: &str) -> Result<Opened, CookieError> {
        // Opened on the stack, without an allocation: this runs on every request.
        let mut buf = [0u8; MAX_RAW];
        let len = URL_SAFE_NO_PAD
            .decode_slice(value.as_bytes(), &mut buf)
            .map_err(|_| CookieError::Malformed)?;
        let raw = buf.get_mut(..len).ok_or(CookieError::Malformed)?;
        let (&mut version, rest) = raw.split_first_mut().ok_or(CookieError::Malformed)?;
        if version != VERSION {
            return Err(CookieError::Version);
        }
        let (&mut id_len, rest) = rest.split_first_mut().ok_or(CookieError::Malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN + TAG_LEN {
            return Err(CookieError::Malformed);
        }
        let (key_id, rest) = rest.split_at_mut(id_len);
        let (nonce, sealed) = rest.split_at_mut(NONCE_LEN);
        let (plain, tag) = sealed.split_at_mut(sealed.len() - TAG_LEN);
        let index = self
            .keys
            .iter()
            .position(|(id, _)| id.as_bytes() == &key_id[..])
            .ok_or(CookieError::UnknownKey)?;
        self.keys[index]
            .1
            .decrypt_in_place_detached(
                Nonce::from_slice(nonce),
                &self.aad,
                plain,
                Tag::from_slice(tag),
            )
            .map_err(|_| CookieError::Tampered)?;
        let id = SessionId::from_slice(plain).ok_or(CookieError::Malformed)?;
        Ok(Opened {
            id,
            needs_reseal: index != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretKey;

    fn key(id: &str, b: u8) -> CookieKey {
        CookieKey {
            id: id.into(),
            secret: SecretKey::from_bytes([b; 32]),
        }
    }

    #[test]
    fn round_trip_and_fresh_nonce() {
        let c = CookieCipher::new("s", &[key("k1", 1)]);
        let id = SessionId::generate();
        let (a, b) = (c.seal(&id), c.seal(&id));
        assert_ne!(a, b, "every seal draws a new nonce");
        assert_eq!(
            c.open(&a),
            Ok(Opened {
                id,
                needs_reseal: false
            })
        );
    }

    #[test]
    fn the_longest_key_id_opens_and_longer_values_are_malformed() {
        let long = "k".repeat(255);
        let c = CookieCipher::new("s", &[key(&long, 1)]);
        let id = SessionId::generate();
        let v = c.seal(&id);
        assert_eq!(c.open(&v).map(|o| o.id), Ok(id));
        assert_eq!(c.open(&format!("{v}AAAA")), Err(CookieError::Malformed));
        assert_eq!(c.open(&"A".repeat(4096)), Err(CookieError::Malformed));
    }

    #[test]
    fn tampered_truncated_and_garbage_are_refused() {
        let c = CookieCipher::new("s", &[key("k1", 1)]);
        let v = c.seal(&SessionId::generate());
        let mid = v.len() / 2;
        let flipped = if &v[mid..=mid] == "A" { "B" } else { "A" };
        let tampered = format!("{}{}{}", &v[..mid], flipped, &v[mid + 1..]);
        assert_eq!(c.open(&tampered), Err(CookieError::Tampered));
        for cut in 1..6 {
            let r = c.open(&v[..v.len() - cut]);
            assert!(
                matches!(r, Err(CookieError::Tampered | CookieError::Malformed)),
                "{r:?}"
            );
        }
        assert_eq!(c.open(&v[..10]), Err(CookieError::Malformed));
        assert_eq!(c.open("not base64!"), Err(CookieError::Malformed));
        assert_eq!(c.open(""), Err(CookieError::Malformed));
    }

    #[test]
    fn rotation_opens_old_keys_and_refuses_retired_ones() {
        let old = CookieCipher::new("s", &[key("k1", 1)]);
        let ring = CookieCipher::new("s", &[key("k2", 2), key("k1", 1)]);
        let only_new = CookieCipher::new("s", &[key("k2", 2)]);
        let id = SessionId::generate();
        let v = old.seal(&id);
        assert_eq!(
            ring.open(&v),
            Ok(Opened {
                id: id.clone(),
                needs_reseal: true
            })
        );
        assert_eq!(only_new.open(&v), Err(CookieError::UnknownKey));
        assert_eq!(
            only_new.open(&ring.seal(&id)),
            Ok(Opened {
                id,
                needs_reseal: false
            })
        );
    }

    #[test]
    fn value_is_bound_to_the_cookie_name() {
        let a = CookieCipher::new("a", &[key("k1", 1)]);
        let b = CookieCipher::new("b", &[key("k1", 1)]);
        assert_eq!(
            b.open(&a.seal(&SessionId::generate())),
            Err(CookieError::Tampered)
        );
    }
}
