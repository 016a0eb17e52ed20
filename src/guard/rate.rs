//! Rate limits at the door: a request spends one unit of each budget its place's
//! `rate_limit` names (per session, per client address), shared by every instance on the
//! same store, and is refused `429 rate_limited` with `Retry-After` when one is spent.
//!
//! When the store cannot be asked (Redis down or slow past its timeout) the request goes
//! on: the limiter fails open, and each such failure is counted as
//! `bff_store_errors_total{op="rate"}`.

use crate::config::Rate;
use crate::http::ApiError;
use crate::metrics;
use crate::session::{SessionId, SessionStore, Spender};
use std::net::IpAddr;
use std::time::Duration;

/// Spends one request of `session`'s budget on `scope` (a route name).
///
/// # Errors
/// [`ApiError::RateLimited`] when the budget is spent.
pub async fn per_session(
    store: &SessionStore,
    scope: &str,
    rate: Rate,
    session: &SessionId,
) -> Result<(), ApiError> {
    spend(store, scope, rate, Spender::Session(session), "session").await
}

/// Spends one request of the client address's budget on `scope` (a route name, or
/// `agent`); `None` is a Unix-socket peer (they share one budget).
///
/// # Errors
/// [`ApiError::RateLimited`] when the budget is spent.
pub async fn per_client(
    store: &SessionStore,
    scope: &str,
    rate: Rate,
    client: Option<IpAddr>,
) -> Result<(), ApiError> {
    spend(store, scope, rate, Spender::Client(client), "client_ip").await
}

async fn spend(
    store: &SessionStore,
    scope: &str,
    rate: Rate,
    spender: Spender<'_>,
    kind: &'static str,
) -> Result<(), ApiError> {
    match store.spend(scope, spender, rate).await {
        Ok(None) => Ok(()),
        Ok(Some(wait)) => {
            metrics::RATE_LIMITED
                .with_label_values(&[scope, kind])
                .inc();
            Err(ApiError::RateLimited(retry_after_secs(wait)))
        }
        Err(e) => {
            tracing::warn!(route = scope, kind, error = %e, "rate limit not checked (store failed); the request goes on");
            Ok(())
        }
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u32 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_micros(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(60)), 60);
    }
}
