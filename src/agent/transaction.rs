//! Login transactions: what must survive the trip to the provider and back, kept
//! server-side under the browser's binding (the login cookie), at most one per binding.
//!
//! A binding is always minted here; a login cookie is adopted only while a transaction is
//! stored under it, so a value a client (or a sibling site) chose is never adopted. A new
//! login from the same browser replaces the previous transaction. The `state` is stored
//! inside the transaction and compared in constant time at the callback; it carries its
//! own issue time (after 24 random bytes), so an unknown state can be told apart from an
//! expired one without keeping expired records.

use crate::session::{now_secs, SessionStore, StoreError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The longest `return_to` accepted, in bytes: as the request gives it (decoded) and as
/// it is resolved and stored (an absolute, percent-encoded URL).
pub const MAX_RETURN_TO: usize = 1024;

/// A login in progress.
#[derive(Debug, Serialize, Deserialize)]
pub struct LoginTransaction {
    /// The `state` sent to the provider; the callback must bring it back.
    pub state: String,
    /// The ID token must carry this nonce.
    pub nonce: String,
    /// PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// Where the browser goes afterwards (already validated).
    pub return_to: String,
    /// The session the browser had when it started this login (its id, base64url): ended
    /// at the callback, where the `SameSite=Strict` session cookie is not sent.
    #[serde(default)]
    pub old_session: Option<String>,
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

/// Whether a state was issued more than `timeout` ago (checked arithmetic: a forged issue
/// time near `u64::MAX` is not "expired", it is unknown).
pub fn state_expired(state: &str, timeout: Duration) -> bool {
    state_issued_at(state)
        .and_then(|t| t.checked_add(timeout.as_secs()))
        .is_some_and(|end| end < now_secs())
}

/// A fresh browser binding (the login cookie's value): 32 random bytes, base64url.
pub fn new_binding() -> String {
    URL_SAFE_NO_PAD.encode(crate::random::os_bytes::<32>())
}

/// Whether `value` has the shape of a binding this module mints.
pub fn well_formed_binding(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The store name of a binding's transaction (the binding itself is never stored).
fn name(binding: &str) -> String {
    format!("login:{}", hex::encode(Sha256::digest(binding.as_bytes())))
}

/// Keeps `t` as the binding's one transaction for `ttl`, replacing any previous one.
///
/// # Errors
/// The store failed.
pub async fn save(
    store: &SessionStore,
    binding: &str,
    t: &LoginTransaction,
    ttl: Duration,
) -> Result<(), StoreError> {
    let plain = serde_json::to_vec(t)
        .map_err(|_| StoreError::Seal("the login transaction does not serialize"))?;
    store.put_transient(&name(binding), &plain, ttl).await
}

/// Whether a transaction is stored under `binding` (a binding bffgate minted, still live).
///
/// # Errors
/// The store failed.
pub async fn exists(store: &SessionStore, binding: &str) -> Result<bool, StoreError> {
    Ok(store.get_transient(&name(binding)).await?.is_some())
}

/// What a callback finds under its browser's binding.
#[derive(Debug)]
pub enum Taken {
    /// No transaction: the binding is unknown, expired, or its login already completed.
    Nothing,
    /// This browser's transaction has another state (a newer login replaced the one the
    /// state belongs to, or the state is not this browser's): left in place.
    OtherState,
    /// The transaction, taken (it cannot be used again).
    Yours(LoginTransaction),
}

/// Takes the binding's transaction, once, if it was started with `state` (compared in
/// constant time).
///
/// # Errors
/// The store failed.
pub async fn take(store: &SessionStore, binding: &str, state: &str) -> Result<Taken, StoreError> {
    let key = name(binding);
    let matches = |t: &LoginTransaction| bool::from(t.state.as_bytes().ct_eq(state.as_bytes()));
    let stored = store
        .get_transient(&key)
        .await?
        .and_then(|b| serde_json::from_slice::<LoginTransaction>(&b).ok());
    match stored {
        None => return Ok(Taken::Nothing),
        Some(t) if !matches(&t) => return Ok(Taken::OtherState),
        Some(_) => {}
    }
    // Taken atomically: of two callbacks racing with the same state, one gets it. A newer
    // login saved between the read and the take is not completed with this state.
    Ok(store
        .take_transient(&key)
        .await?
        .and_then(|b| serde_json::from_slice::<LoginTransaction>(&b).ok())
        .filter(matches)
        .map_or(Taken::Nothing, Taken::Yours))
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
        assert!(!state_expired(&s, Duration::from_secs(60)));
    }

    #[test]
    fn a_forged_issue_time_neither_panics_nor_wraps() {
        let mut raw = [0u8; 32];
        raw[24..].copy_from_slice(&u64::MAX.to_be_bytes());
        let forged = URL_SAFE_NO_PAD.encode(raw);
        assert!(!state_expired(&forged, Duration::from_secs(u64::MAX)));
        assert!(!state_expired(&forged, Duration::from_secs(600)));
        raw[24..].copy_from_slice(&0u64.to_be_bytes());
        assert!(state_expired(
            &URL_SAFE_NO_PAD.encode(raw),
            Duration::from_secs(600)
        ));
    }

    #[test]
    fn bindings_are_minted_well_formed() {
        let b = new_binding();
        assert!(well_formed_binding(&b));
        assert!(!well_formed_binding(&b[1..]));
        assert!(!well_formed_binding(&format!("{}=", &b[1..])));
    }
}
