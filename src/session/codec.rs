//! At-rest encryption of stored records under a key ring, and the names they are stored under.
//!
//! A record is `header ‖ nonce(12) ‖ AES-256-GCM(plain, aad = header ‖ storage key)`, the
//! header being `VERSION ‖ id_len ‖ key id` in clear, so a record says which key of the
//! ring sealed it (and the store can be counted by key without opening anything) while a
//! changed header does not open. The whole session is sealed (tokens, but also the user's
//! claims), and binding it to its storage key means a record copied under another key does
//! not open. The first key of the ring seals; every key opens. Records written before key
//! rings (`nonce ‖ ciphertext`, aad = storage key) still open, under any key of the ring,
//! and count as under an old key.
//!
//! Storage keys are hashes of the session id (independent of the keys). Index names and the
//! names of coordination records are HMACs under a key derived from an at-rest key, so a
//! store dump names neither sessions nor users; they are written under the current key's
//! name and looked up under every key's name, so rotation loses none of them.

use super::state::Stored;
use super::{SessionId, StoreError, UserSession};
use crate::config::RingKey;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// First byte of a record with a key-id header.
const VERSION: u8 = 0xB1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest key id (`config::keyring`).
const MAX_ID_LEN: usize = 32;
/// How many leading bytes of a record always hold its whole header.
pub(crate) const HEADER_MAX: usize = 2 + MAX_ID_LEN;

/// One key of the ring, ready to use.
struct RingEntry {
    id: String,
    cipher: Aes256Gcm,
    index_key: [u8; 32],
}

/// Seals, opens and names records for one key ring and one key prefix.
pub(crate) struct Codec {
    keys: Vec<RingEntry>,
    prefix: String,
}

/// What opening a record gave.
pub(crate) struct Opened {
    /// The plaintext.
    pub plain: Vec<u8>,
    /// True when the current key sealed it in the current format: nothing to re-seal.
    pub current: bool,
}

/// The key id a record's header names, reading only its first [`HEADER_MAX`] bytes; `None`
/// for a record without a header (written before key rings) or a damaged one.
pub(crate) fn key_id_of(head: &[u8]) -> Option<&str> {
    let (&version, rest) = head.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let len = usize::from(len);
    if version != VERSION || len == 0 || len > MAX_ID_LEN {
        return None;
    }
    std::str::from_utf8(rest.get(..len)?).ok()
}

impl Codec {
    /// A codec for `keys` (the first seals) naming records under `prefix`.
    pub(crate) fn new(keys: &[RingKey], prefix: &str) -> Self {
        let keys = keys
            .iter()
            .map(|k| {
                // A separate key for names, derived so one secret serves both purposes.
                let mut h = Sha256::new();
                h.update(b"bffgate index key v1\0");
                h.update(k.secret.expose());
                RingEntry {
                    id: k.id.clone(),
                    cipher: Aes256Gcm::new(k.secret.expose().into()),
                    index_key: h.finalize().into(),
                }
            })
            .collect();
        Codec {
            keys,
            prefix: prefix.to_string(),
        }
    }

    /// The prefix every name starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The id of the key that seals (`None` only for an empty ring, which config refuses).
    pub(crate) fn current_id(&self) -> Option<&str> {
        self.keys.first().map(|k| k.id.as_str())
    }

    /// Every key id of the ring, the current one first.
    pub(crate) fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.id.as_str())
    }

    /// The key a session is stored under. The hash tag (`{…}`) keeps every key of one
    /// session in one Redis Cluster slot.
    pub(crate) fn storage_key(&self, id: &SessionId) -> String {
        self.session_key(id, "s")
    }

    /// A companion key of a session (lock, grace record) in the same Cluster slot.
    pub(crate) fn session_key(&self, id: &SessionId, suffix: &str) -> String {
        format!("{}{{{}}}:{suffix}", self.prefix, KeyHash::of(id).as_str())
    }

    fn name_under(&self, entry: &RingEntry, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&entry.index_key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.as_bytes());
        format!(
            "{}{}:{}",
            self.prefix,
            kind,
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The name written now for a `kind` of record keyed by `value` (a session index by
    /// `sid` or `sub`, a login transaction, a claim): the current key's.
    pub(crate) fn index_name(&self, kind: &str, value: &str) -> String {
        self.index_names(kind, value)
            .into_iter()
            .next()
            .unwrap_or_default()
    }

    /// The names a `kind` of record keyed by `value` may be under: one per key of the ring,
    /// the current key's first.
    pub(crate) fn index_names(&self, kind: &str, value: &str) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| self.name_under(k, kind, value))
            .collect()
    }

    /// Seals `plain` under the current key and a fresh nonce, bound to the storage `key`.
    ///
    /// # Errors
    /// [`StoreError::Seal`] when the ring is empty or encryption fails (AES-GCM refuses
    /// only messages beyond 64 GiB); nothing half-sealed is ever returned.
    pub(crate) fn seal_bytes(&self, key: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let entry = self
            .keys
            .first()
            .ok_or(StoreError::Seal("no at-rest key"))?;
        let mut out = Vec::with_capacity(2 + entry.id.len() + NONCE_LEN + plain.len() + TAG_LEN);
        out.push(VERSION);
        out.push(u8::try_from(entry.id.len()).map_err(|_| StoreError::Seal("key id too long"))?);
        out.extend_from_slice(entry.id.as_bytes());
        let mut aad = out.clone();
        aad.extend_from_slice(key.as_bytes());
        let nonce: [u8; NONCE_LEN] = crate::random::os_bytes();
        let sealed = entry
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .map_err(|_| StoreError::Seal("encryption failed"))?;
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a record stored under `key`; `None` when it does not authenticate under any key
    /// of the ring (an unknown key id, a changed header, another storage key, damage).
    pub(crate) fn open_bytes(&self, key: &str, blob: &[u8]) -> Option<Opened> {
        if let Some(id) = key_id_of(blob) {
            let header_len = 2 + id.len();
            if let Some((i, entry)) = self.keys.iter().enumerate().find(|(_, k)| k.id == id) {
                let mut aad = blob[..header_len].to_vec();
                aad.extend_from_slice(key.as_bytes());
                if let Some(plain) = decrypt(&entry.cipher, &blob[header_len..], &aad) {
                    return Some(Opened {
                        plain,
                        current: i == 0,
                    });
                }
            }
        }
        // A record from before key rings: no header, the storage key alone as aad. (A
        // headed record whose header was changed fails here too: its nonce is not where a
        // record without a header has it, and the aad differs.)
        self.keys.iter().find_map(|k| {
            decrypt(&k.cipher, blob, key.as_bytes()).map(|plain| Opened {
                plain,
                current: false,
            })
        })
    }

    /// Seals a session for storage under `key`.
    ///
    /// # Errors
    /// [`StoreError::Seal`] when the session does not serialize or cannot be sealed.
    pub(crate) fn seal(&self, key: &str, s: &UserSession) -> Result<Vec<u8>, StoreError> {
        let stored = Stored::of(s);
        let plain = serde_json::to_vec(&stored)
            .map_err(|_| StoreError::Seal("the session does not serialize"))?;
        self.seal_bytes(key, &plain)
    }

    /// Opens a session record, and whether it is sealed under the current key; `None` when
    /// it does not authenticate (see [`Self::open_bytes`]).
    pub(crate) fn open(
        &self,
        key: &str,
        id: &SessionId,
        blob: &[u8],
    ) -> Option<(UserSession, bool)> {
        let opened = self.open_bytes(key, blob)?;
        let s: Stored = serde_json::from_slice(&opened.plain).ok()?;
        Some((s.into_session(id.clone()), opened.current))
    }
}

/// The hash naming a session in its storage key: `sha256(id)` as hex.
pub(crate) fn key_hash(id: &SessionId) -> String {
    KeyHash::of(id).as_str().to_owned()
}

/// [`key_hash`] on the stack, for lookups that need no owned copy (the session cache's,
/// on every authenticated request).
pub(crate) struct KeyHash([u8; 64]);

impl KeyHash {
    /// The hash of session `id`.
    pub(crate) fn of(id: &SessionId) -> Self {
        let mut text = [0u8; 64];
        // A 32-byte digest is exactly 64 hex digits: the lengths always agree.
        if hex::encode_to_slice(Sha256::digest(id.as_bytes()), &mut text).is_err() {
            text = [b'0'; 64];
        }
        KeyHash(text)
    }

    /// The hash as text.
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The hash inside a session's storage key (`prefix{hash}:s`); `None` for other keys.
pub(crate) fn hash_of_key(key: &str) -> Option<String> {
    let inner = key.strip_suffix("}:s")?;
    let start = inner.rfind('{')?;
    Some(inner[start + 1..].to_owned())
}

impl Codec {
    /// The storage key of the session whose hash is `hash` (see [`key_hash`]; the admin
    /// API calls it the session's handle).
    pub(crate) fn storage_key_of_hash(&self, hash: &str) -> String {
        format!("{}{{{hash}}}:s", self.prefix)
    }
}

/// `nonce ‖ ciphertext ‖ tag` opened with `cipher` and `aad`.
fn decrypt(cipher: &Aes256Gcm, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, msg) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg, aad })
        .ok()
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
