//! At-rest encryption of stored sessions, and the names they are stored under.
//!
//! A record is `nonce(12) ‖ AES-256-GCM(json, aad = storage key)`: the whole session is
//! sealed (tokens, but also the user's claims), and binding it to its key means a record
//! copied under another key does not open. Storage keys and index names are HMACs under the
//! at-rest key, so a store dump names neither sessions nor users.

use super::state::Stored;
use super::{SessionId, StoreError, UserSession};
use crate::config::SecretKey;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 12;

pub(crate) struct Codec {
    cipher: Aes256Gcm,
    index_key: [u8; 32],
    prefix: String,
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

impl Codec {
    pub(crate) fn new(key: &SecretKey, prefix: &str) -> Self {
        // A separate key for index names, derived so one secret serves both purposes.
        let mut h = Sha256::new();
        h.update(b"bffgate index key v1\0");
        h.update(key.expose());
        Codec {
            cipher: Aes256Gcm::new(key.expose().into()),
            index_key: h.finalize().into(),
            prefix: prefix.to_string(),
        }
    }

    /// The key a session is stored under. The hash tag (`{…}`) keeps every key of one
    /// session in one Redis Cluster slot.
    pub(crate) fn storage_key(&self, id: &SessionId) -> String {
        let digest = Sha256::digest(id.as_bytes());
        format!("{}{{{}}}:s", self.prefix, hex(&digest))
    }

    /// The storage key of the session whose handle (the hex SHA-256 of its id, as the
    /// admin API shows it) is `handle`.
    pub(crate) fn key_of_handle(&self, handle: &str) -> String {
        format!("{}{{{handle}}}:s", self.prefix)
    }

    /// A companion key of a session (lock, grace record) in the same Cluster slot.
    pub(crate) fn session_key(&self, id: &SessionId, suffix: &str) -> String {
        let digest = Sha256::digest(id.as_bytes());
        format!("{}{{{}}}:{suffix}", self.prefix, hex(&digest))
    }

    /// The name of the index of sessions sharing a claim value (`sid` or `sub`).
    pub(crate) fn index_name(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.index_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        format!(
            "{}{}:{}",
            self.prefix,
            kind,
            hex(&mac.finalize().into_bytes())
        )
    }

    /// Seals `plain` under a fresh nonce, bound to the storage `key`.
    ///
    /// # Errors
    /// [`StoreError::Seal`] when encryption fails (AES-GCM refuses only messages beyond
    /// 64 GiB); nothing half-sealed is ever returned.
    pub(crate) fn seal_bytes(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce: [u8; NONCE_LEN] = crate::random::os_bytes();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: key.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Seal("encryption failed"))?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub(crate) fn open_bytes(&self, key: &str, blob: &[u8]) -> Option<Vec<u8>> {
        if blob.len() < NONCE_LEN {
            return None;
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: key.as_bytes(),
                },
            )
            .ok()
    }

    /// Seals a session for storage under `key`.
    ///
    /// # Errors
    /// [`StoreError::Seal`] when the session does not serialize or encryption fails.
    pub(crate) fn seal(&self, key: &str, s: &UserSession) -> Result<Vec<u8>, StoreError> {
        let stored = Stored::of(s);
        let plain = serde_json::to_vec(&stored)
            .map_err(|_| StoreError::Seal("the session does not serialize"))?;
        self.seal_bytes(key, &plain)
    }

    /// Opens a record; `None` when it does not authenticate (another at-rest key, or damage).
    pub(crate) fn open(&self, key: &str, id: &SessionId, blob: &[u8]) -> Option<UserSession> {
        let plain = self.open_bytes(key, blob)?;
        let s: Stored = serde_json::from_slice(&plain).ok()?;
        Some(s.into_session(id.clone()))
    }
}

/// The hash naming a session in its storage key: `sha256(id)` as hex.
pub(crate) fn key_hash(id: &SessionId) -> String {
    hex(&Sha256::digest(id.as_bytes()))
}

/// The hash inside a session's storage key (`prefix{hash}:s`); `None` for other keys.
pub(crate) fn hash_of_key(key: &str) -> Option<String> {
    let inner = key.strip_suffix("}:s")?;
    let start = inner.rfind('{')?;
    Some(inner[start + 1..].to_owned())
}

impl Codec {
    /// The storage key of the session whose hash is `hash` (see [`key_hash`]).
    pub(crate) fn storage_key_of_hash(&self, hash: &str) -> String {
        format!("{}{{{hash}}}:s", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_bytes_open_only_under_their_key() {
        let codec = Codec::new(&SecretKey::from_bytes([7; 32]), "t:");
        let blob = codec.seal_bytes("k1", b"plain").expect("seal");
        assert_eq!(blob.len(), NONCE_LEN + b"plain".len() + 16);
        assert_eq!(
            codec.open_bytes("k1", &blob).as_deref(),
            Some(&b"plain"[..])
        );
        assert_eq!(codec.open_bytes("k2", &blob), None);
        assert_ne!(codec.seal_bytes("k1", b"plain").expect("seal"), blob);
    }

    #[test]
    fn a_storage_key_and_its_hash_name_each_other() {
        let codec = Codec::new(&SecretKey::from_bytes([7; 32]), "t{x}:");
        let id = SessionId::generate();
        let key = codec.storage_key(&id);
        assert_eq!(hash_of_key(&key), Some(key_hash(&id)));
        assert_eq!(codec.storage_key_of_hash(&key_hash(&id)), key);
        assert_eq!(hash_of_key(&codec.session_key(&id, "lock")), None);
    }
}
