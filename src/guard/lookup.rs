//! Cookie → session: what a request's session cookie leads to, counted in metrics.

use crate::cookie::{CookieError, SessionCookie};
use crate::http::ApiError;
use crate::metrics;
use crate::session::{SessionStore, StoreError, UserSession};
use http::{header, HeaderValue};
use pingora::http::RequestHeader;
use std::sync::Arc;

/// What the request's cookie leads to.
#[derive(Debug)]
pub enum Lookup {
    /// No session cookie.
    Missing,
    /// The cookie does not open.
    Invalid(CookieError),
    /// The cookie opens but its session is gone or over.
    Expired,
    /// A live session; `reseal` when its cookie was sealed with an older key.
    Found {
        /// The session, shared with the session cache (clone it to change it).
        session: Arc<UserSession>,
        /// Whether to send a re-sealed cookie.
        reseal: bool,
    },
    /// The store could not answer.
    StoreFailed(StoreError),
}

impl Lookup {
    /// What the lookup found, as the `result` label of `bff_session_lookups_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Lookup::Missing => "missing",
            Lookup::Invalid(_) => "invalid",
            Lookup::Expired => "expired",
            Lookup::Found { .. } => "ok",
            Lookup::StoreFailed(_) => "error",
        }
    }

    /// The error answered when no live session was found (`Found` is not a refusal: it
    /// maps to [`ApiError::Internal`] and should not be asked).
    pub fn refusal(&self) -> ApiError {
        match self {
            Lookup::Missing => ApiError::NoSession,
            Lookup::Invalid(_) => ApiError::InvalidSession,
            Lookup::Expired => ApiError::SessionExpired,
            Lookup::StoreFailed(_) => ApiError::StoreUnavailable,
            Lookup::Found { .. } => ApiError::Internal,
        }
    }

    /// The live session, or the refusal.
    ///
    /// # Errors
    /// [`Lookup::refusal`] when there is no live session.
    pub fn into_session(self) -> Result<(Arc<UserSession>, bool), ApiError> {
        match self {
            Lookup::Found { session, reseal } => Ok((session, reseal)),
            other => Err(other.refusal()),
        }
    }
}

/// Finds the session a request's cookie names, counting the result.
pub async fn lookup(store: &SessionStore, cookie: &SessionCookie, req: &RequestHeader) -> Lookup {
    let found = find(store, cookie, req).await;
    match &found {
        Lookup::Found { .. } => metrics::LOOKUP_OK.inc(),
        other => metrics::SESSION_LOOKUPS
            .with_label_values(&[other.label()])
            .inc(),
    }
    found
}

/// The session a request's cookie names.
async fn find(store: &SessionStore, cookie: &SessionCookie, req: &RequestHeader) -> Lookup {
    let values = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes);
    let Some(value) = cookie.find(values) else {
        return Lookup::Missing;
    };
    let opened = match cookie.cipher().open(value) {
        Ok(o) => o,
        Err(e) => {
            metrics::COOKIE_FAILURES
                .with_label_values(&[e.label()])
                .inc();
            return Lookup::Invalid(e);
        }
    };
    match store.get_cached(&opened.id).await {
        Ok(Some(session)) => Lookup::Found {
            session,
            reseal: opened.needs_reseal,
        },
        Ok(None) => Lookup::Expired,
        Err(e) => {
            tracing::warn!(error = %e, "session lookup failed");
            Lookup::StoreFailed(e)
        }
    }
}
