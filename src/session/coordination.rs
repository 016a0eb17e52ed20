//! Short-lived records that coordinate work around sessions, beside the sessions
//! themselves: login transactions (transient, taken once), one-time claims (replay
//! detection), the per-session refresh lock shared by every instance, and grace records
//! that map a rotated refresh token to the tokens that replaced it.
//!
//! Records are sealed, and named, under the current at-rest key; they are looked up under
//! the name of every key of the ring, so one written before a key rotation is still found
//! (and opened) after it.

use super::codec::Codec;
use super::{timed, SessionId, SessionStore, StoreError, Tokens};
use std::time::Duration;

impl SessionStore {
    /// Keeps `plain` sealed under the name `name` for `ttl` (login transactions).
    ///
    /// # Errors
    /// The backend failed, or what was to be stored could not be sealed
    /// ([`StoreError::Seal`]).
    pub async fn put_transient(
        &self,
        name: &str,
        plain: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let codec = self.codec.load();
        let key = codec.index_name("t", name);
        let blob = codec.seal_bytes(&key, plain)?;
        timed("put", self.backend.put(&key, &blob, ttl)).await
    }

    /// Reads, without taking, what [`Self::put_transient`] kept under `name`.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let codec = self.codec.load_full();
        for key in codec.index_names("t", name) {
            if let Some((blob, _)) = timed("get", self.backend.get(&key)).await? {
                return Ok(codec.open_bytes(&key, &blob).map(|o| o.plain));
            }
        }
        Ok(None)
    }

    /// Takes (reads and deletes, once) what [`Self::put_transient`] kept under `name`.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let codec = self.codec.load_full();
        for key in codec.index_names("t", name) {
            if let Some(blob) = timed("take", self.backend.take(&key)).await? {
                return Ok(codec.open_bytes(&key, &blob).map(|o| o.plain));
            }
        }
        Ok(None)
    }

    /// True the first time `name` is claimed within `ttl` (replay detection).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let names = self.codec.load().index_names("once", name);
        let Some((current, older)) = names.split_first() else {
            return Err(StoreError::Seal("no at-rest key"));
        };
        // A claim taken under an older key's name, before a rotation, still counts.
        for key in older {
            if timed("get", self.backend.get(key)).await?.is_some() {
                return Ok(false);
            }
        }
        timed("claim", self.backend.lock(current, b"1", ttl)).await
    }

    /// Takes the session's refresh lock (shared by every instance on this store).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn lock_session(
        &self,
        id: &SessionId,
        token: &[u8],
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.codec.load().session_key(id, "lock");
        timed("lock", self.backend.lock(&key, token, ttl)).await
    }

    /// Releases the session's refresh lock if `token` holds it.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn unlock_session(&self, id: &SessionId, token: &[u8]) -> Result<(), StoreError> {
        let key = self.codec.load().session_key(id, "lock");
        timed("unlock", self.backend.unlock(&key, token)).await
    }

    /// The names a grace record may be under, the current key's first.
    fn grace_keys(codec: &Codec, id: &SessionId, old_refresh_token: &str) -> Vec<String> {
        codec
            .index_names("rt", old_refresh_token)
            .iter()
            .map(|tag| {
                let short = tag.rsplit(':').next().unwrap_or_default();
                codec.session_key(id, &format!("grace:{short}"))
            })
            .collect()
    }

    /// Remembers, for `ttl`, which tokens replaced a refresh token, so a request that read
    /// the session before the refresh finished uses them instead of replaying a rotated
    /// refresh token.
    ///
    /// # Errors
    /// The backend failed, or what was to be stored could not be sealed
    /// ([`StoreError::Seal`]).
    pub async fn put_grace(
        &self,
        id: &SessionId,
        old_refresh_token: &str,
        tokens: &Tokens,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let codec = self.codec.load_full();
        let key = Self::grace_keys(&codec, id, old_refresh_token)
            .into_iter()
            .next()
            .ok_or(StoreError::Seal("no at-rest key"))?;
        let plain = serde_json::to_vec(tokens)
            .map_err(|_| StoreError::Seal("the tokens do not serialize"))?;
        let blob = codec.seal_bytes(&key, &plain)?;
        timed("put", self.backend.put(&key, &blob, ttl)).await
    }

    /// The tokens that replaced `old_refresh_token`, if that happened within the grace time.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get_grace(
        &self,
        id: &SessionId,
        old_refresh_token: &str,
    ) -> Result<Option<Tokens>, StoreError> {
        let codec = self.codec.load_full();
        for key in Self::grace_keys(&codec, id, old_refresh_token) {
            if let Some((blob, _)) = timed("get", self.backend.get(&key)).await? {
                return Ok(codec
                    .open_bytes(&key, &blob)
                    .and_then(|o| serde_json::from_slice(&o.plain).ok()));
            }
        }
        Ok(None)
    }
}
