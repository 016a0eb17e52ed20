//! One refresh flight: the session's store lock, shared by every instance, and the
//! provider call made under it.
//!
//! # Two instances never redeem the same refresh token
//! The lock is a lease (`SET NX PX`, released by compare-and-delete). The mechanism is
//! **a provider call bounded strictly inside the lease**: the lease is computed from the
//! bounds of everything done under it — two store reads before the call, the call itself
//! (cut at [`PROVIDER_CALL_LIMIT`], whatever the HTTP client does), the write-back and the
//! grace record after it, each store step bounded by the store's own timeout — plus a
//! margin ([`lease`]). So the holder has stored the new tokens (or given up) before the
//! lease can lapse, and whoever takes the lock next reads the session after that.
//! A fenced write (a version checked on update) was not chosen: it detects the second
//! redemption after the fact, when the provider has already seen a rotated refresh token
//! replayed and revoked the grant; the bound prevents the replay.
//!
//! A grace record maps the old refresh token to the new tokens for a short while, so a
//! request that read the session just before a refresh never replays a rotated refresh
//! token; tokens found through one are written back to the session.

use super::refresh::{Inner, Outcome, RefreshFailure, When};
use crate::metrics;
use crate::session::{SessionStore, UserSession};
use std::time::Duration;
use tokio::time::Instant;

/// The longest a provider refresh call may take before it is abandoned as unavailable.
pub const PROVIDER_CALL_LIMIT: Duration = Duration::from_secs(10);
/// How long a grace record lives.
const GRACE_TTL: Duration = Duration::from_secs(30);
/// Pause between polls while another instance refreshes.
const POLL: Duration = Duration::from_millis(25);
/// Slack on top of the bounded work under the lock.
const LEASE_MARGIN: Duration = Duration::from_secs(2);

/// The store lock's lease: longer than everything done under it can take.
pub fn lease(store: &SessionStore) -> Duration {
    PROVIDER_CALL_LIMIT + store.op_timeout() * 4 + LEASE_MARGIN
}

impl Inner {
    /// Refreshes `session`'s tokens (when `when` says so) unless somebody already has.
    pub(super) async fn flight(&self, session: UserSession, when: When) -> Outcome {
        let started = Instant::now();
        // Whoever refreshed before may have done this one's work: read again.
        let mut current = match self.store.get(&session.id).await {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::Ended,
            Err(_) => return Outcome::Failed(session.tokens),
        };
        // Tokens that changed since this request read the session are the result of the
        // refresh it was about to do: one refresh per generation, even for tokens so short-
        // lived that they are due again at once.
        if current.tokens.access_token != session.tokens.access_token {
            metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
            return Outcome::Fresh(current.tokens);
        }
        if when == When::Due && !self.due(&current.tokens) {
            return Outcome::Fresh(current.tokens);
        }
        let token: [u8; 16] = crate::random::os_bytes();
        let lease = lease(&self.store);
        let deadline = started.checked_add(self.lock_wait()).unwrap_or(started);
        loop {
            match self.store.lock_session(&current.id, &token, lease).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(_) => return Outcome::Failed(current.tokens),
            }
            // Another instance is refreshing: wait for its result.
            tokio::time::sleep(POLL).await;
            match self.store.get(&current.id).await {
                Ok(Some(s)) if s.tokens.access_token != current.tokens.access_token => {
                    metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
                    return Outcome::Fresh(s.tokens);
                }
                Ok(Some(_)) => {}
                Ok(None) => return Outcome::Ended,
                Err(_) => return Outcome::Failed(current.tokens),
            }
            if Instant::now() >= deadline {
                return Outcome::Failed(current.tokens);
            }
        }
        let outcome = self.refresh_locked(&mut current).await;
        if let Err(e) = self.store.unlock_session(&current.id, &token).await {
            tracing::debug!(error = %e, "refresh lock release failed; it expires by itself");
        }
        outcome
    }

    /// The refresh itself, with the store lock held.
    async fn refresh_locked(&self, current: &mut UserSession) -> Outcome {
        // The session may have been refreshed between our read and the lock.
        match self.store.get(&current.id).await {
            Ok(Some(s)) => {
                let changed = s.tokens.access_token != current.tokens.access_token;
                *current = s;
                if changed {
                    metrics::REFRESHES.with_label_values(&["lock_wait"]).inc();
                    return Outcome::Fresh(current.tokens.clone());
                }
            }
            Ok(None) => return Outcome::Ended,
            Err(_) => return Outcome::Failed(current.tokens.clone()),
        }
        let Some(old_rt) = current.tokens.refresh_token.clone() else {
            return Outcome::Failed(current.tokens.clone());
        };
        // A grace record is only worth using when it holds tokens this session has not seen
        // yet that are not themselves due; otherwise ask the provider.
        if let Ok(Some(tokens)) = self.store.get_grace(&current.id, &old_rt).await {
            if tokens.access_token != current.tokens.access_token && !self.due(&tokens) {
                metrics::REFRESHES.with_label_values(&["grace_hit"]).inc();
                // The session missed these tokens (their write failed): store them, so the
                // next refresh presents the refresh token that replaced `old_rt`.
                current.tokens = tokens.clone();
                if let Err(e) = self.store.update(current).await {
                    tracing::warn!(error = %e, "tokens from a grace record not stored");
                }
                return Outcome::Fresh(tokens);
            }
        }
        let started = Instant::now();
        let dpop = current
            .dpop_key
            .as_ref()
            .and_then(|k| crate::dpop::DpopKey::open(k).ok());
        let call = self.provider.refresh(&old_rt, &current.sub, dpop.as_ref());
        let result = match tokio::time::timeout(PROVIDER_CALL_LIMIT, call).await {
            Ok(r) => r,
            Err(_) => Err(RefreshFailure::Unavailable(
                "the token endpoint did not answer in time".into(),
            )),
        };
        metrics::REFRESH_DURATION.observe(started.elapsed().as_secs_f64());
        match result {
            Ok(mut tokens) => {
                if tokens.id_token.is_none() {
                    tokens.id_token = current.tokens.id_token.clone();
                }
                // The same refresh token keeps the lifetime it had.
                if tokens.refresh_expires_at.is_none()
                    && tokens.refresh_token.as_ref() == Some(&old_rt)
                {
                    tokens.refresh_expires_at = current.tokens.refresh_expires_at;
                }
                // The session lives as long as its (new) refresh token can, within the
                // absolute timeout.
                current.expires_at = UserSession::end_for(
                    current.created_at,
                    &tokens,
                    self.store.absolute_timeout(),
                );
                current.tokens = tokens.clone();
                match self.store.update(current).await {
                    Ok(true) => {}
                    Ok(false) => return Outcome::Ended,
                    Err(e) => {
                        tracing::warn!(error = %e, "refreshed tokens not stored; the grace record stands in")
                    }
                }
                // Only a rotated refresh token can be replayed by mistake: without rotation
                // the old one stays valid and needs no grace record.
                let rotated = tokens.refresh_token.as_deref() != Some(old_rt.as_str());
                if rotated {
                    if let Err(e) = self
                        .store
                        .put_grace(&current.id, &old_rt, &tokens, GRACE_TTL)
                        .await
                    {
                        tracing::debug!(error = %e, "grace record not stored");
                    }
                }
                metrics::REFRESHES.with_label_values(&["ok"]).inc();
                Outcome::Fresh(tokens)
            }
            Err(RefreshFailure::Refused) => {
                metrics::REFRESHES
                    .with_label_values(&["invalid_grant"])
                    .inc();
                tracing::info!("the provider refused a refresh token; ending the session");
                let _ = self.store.delete(&current.id).await;
                Outcome::Ended
            }
            Err(RefreshFailure::Unavailable(why)) => {
                tracing::warn!(error = %why, "refresh failed; keeping the session for a later try");
                Outcome::Failed(current.tokens.clone())
            }
        }
    }
}
