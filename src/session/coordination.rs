//! Short-lived records that coordinate work around sessions, beside the sessions
//! themselves: login transactions (transient, taken once), one-time claims (replay
//! detection), the per-session refresh lock shared by every instance, and grace records
//! that map a rotated refresh token to the tokens that replaced it.

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
        let key = self.codec.index_name("t", name);
        let blob = self.codec.seal_bytes(&key, plain)?;
        timed("put", self.backend.put(&key, &blob, ttl)).await
    }

    /// Reads, without taking, what [`Self::put_transient`] kept under `name`.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn get_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.codec.index_name("t", name);
        let blob = timed("get", self.backend.get(&key)).await?;
        Ok(blob.and_then(|(b, _)| self.codec.open_bytes(&key, &b)))
    }

    /// Takes (reads and deletes, once) what [`Self::put_transient`] kept under `name`.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn take_transient(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.codec.index_name("t", name);
        let blob = timed("take", self.backend.take(&key)).await?;
        Ok(blob.and_then(|b| self.codec.open_bytes(&key, &b)))
    }

    /// True the first time `name` is claimed within `ttl` (replay detection).
    ///
    /// # Errors
    /// The backend failed.
    pub async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.codec.index_name("once", name);
        timed("claim", self.backend.lock(&key, b"1", ttl)).await
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
        let key = self.codec.session_key(id, "lock");
        timed("lock", self.backend.lock(&key, token, ttl)).await
    }

    /// Releases the session's refresh lock if `token` holds it.
    ///
    /// # Errors
    /// The backend failed.
    pub async fn unlock_session(&self, id: &SessionId, token: &[u8]) -> Result<(), StoreError> {
        let key = self.codec.session_key(id, "lock");
        timed("unlock", self.backend.unlock(&key, token)).await
    }

    fn grace_key(&self, id: &SessionId, old_refresh_token: &str) -> String {
        let tag = self.codec.index_name("rt", old_refresh_token);
        let short = tag.rsplit(':').next().unwrap_or_default();
        self.codec.session_key(id, &format!("grace:{short}"))
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
        let key = self.grace_key(id, old_refresh_token);
        let plain = serde_json::to_vec(tokens)
            .map_err(|_| StoreError::Seal("the tokens do not serialize"))?;
        let blob = self.codec.seal_bytes(&key, &plain)?;
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
        let key = self.grace_key(id, old_refresh_token);
        let Some((blob, _)) = timed("get", self.backend.get(&key)).await? else {
            return Ok(None);
        };
        Ok(self
            .codec
            .open_bytes(&key, &blob)
            .and_then(|plain| serde_json::from_slice(&plain).ok()))
    }
}
