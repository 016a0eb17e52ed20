//! Login transactions: what must survive the trip to the provider and back, kept
//! server-side under the `state` value, bound to the browser by the login cookie.
//!
//! The `state` carries its own issue time (after 24 random bytes), so an unknown state can
//! be told apart from an expired one without keeping expired records.

use crate::session::{now_secs, SessionStore, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A login in progress.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginTransaction {
    /// The ID token must carry this nonce.
    pub nonce: String,
    /// PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// Where the browser goes afterwards (already validated).
    pub return_to: String,
    /// SHA-256 (hex) of the browser binding in the login cookie.
    pub binding: String,
}

/// A fresh `state`: 24 random bytes and the issue time, base64url.
pub fn new_state() -> String {
    let mut raw = crate::random::os_bytes::<32>();
    raw[24..].copy_from_slice(&now_secs().to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// The issue time inside a state, if it is one of ours.
pub fn state_issued_at(state: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(state).ok()?;
    let tail: [u8; 8] = raw.get(24..32)?.try_into().ok()?;
    (raw.len() == 32).then(|| u64::from_be_bytes(tail))
}

/// A fresh browser binding (the login cookie's value).
pub fn new_binding() -> String {
    URL_SAFE_NO_PAD.encode(crate::random::os_bytes::<32>())
}

/// The hash stored for a binding.
pub fn binding_hash(binding: &str) -> String {
    Sha256::digest(binding.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn name(state: &str) -> String {
    format!("login:{state}")
}

/// Keeps a transaction under its state for `ttl`.
///
/// # Errors
/// The store failed.
pub async fn save(
    store: &SessionStore,
    state: &str,
    t: &LoginTransaction,
    ttl: Duration,
) -> Result<(), StoreError> {
    let plain = serde_json::to_vec(t)
        .map_err(|_| StoreError::Seal("the login transaction does not serialize"))?;
    store.put_transient(&name(state), &plain, ttl).await
}

/// Takes a transaction, once: a replayed state finds nothing.
///
/// # Errors
/// The store failed.
pub async fn take(
    store: &SessionStore,
    state: &str,
) -> Result<Option<LoginTransaction>, StoreError> {
    Ok(store
        .take_transient(&name(state))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_carries_its_issue_time() {
        let s = new_state();
        let t = state_issued_at(&s).expect("ours");
        assert!(t.abs_diff(now_secs()) <= 1);
        assert_eq!(state_issued_at("short"), None);
        assert_ne!(new_state(), new_state());
    }
}
