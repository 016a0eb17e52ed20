//! The checks every credentialed request goes through: CSRF, and cookie → session.

use crate::config::AgentConfig;
use crate::cookie::{CookieError, SessionCookie};
use crate::metrics;
use crate::session::{Session, SessionStore, StoreError};
use http::{header, HeaderValue, Method};
use pingora::http::RequestHeader;

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
        /// The session.
        session: Session,
        /// Whether to send a re-sealed cookie.
        reseal: bool,
    },
    /// The store could not answer.
    StoreFailed(StoreError),
}

/// Finds the session a request's cookie names, counting the result.
pub async fn lookup(store: &SessionStore, cookie: &SessionCookie, req: &RequestHeader) -> Lookup {
    let values = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .map(HeaderValue::as_bytes);
    let Some(value) = cookie.find(values) else {
        metrics::SESSION_LOOKUPS
            .with_label_values(&["missing"])
            .inc();
        return Lookup::Missing;
    };
    let opened = match cookie.cipher().open(value) {
        Ok(o) => o,
        Err(e) => {
            metrics::SESSION_LOOKUPS
                .with_label_values(&["invalid"])
                .inc();
            metrics::COOKIE_FAILURES
                .with_label_values(&[e.label()])
                .inc();
            return Lookup::Invalid(e);
        }
    };
    match store.get(&opened.id).await {
        Ok(Some(session)) => {
            metrics::LOOKUP_OK.inc();
            Lookup::Found {
                session,
                reseal: opened.needs_reseal,
            }
        }
        Ok(None) => {
            metrics::SESSION_LOOKUPS
                .with_label_values(&["expired"])
                .inc();
            Lookup::Expired
        }
        Err(e) => {
            metrics::SESSION_LOOKUPS.with_label_values(&["error"]).inc();
            tracing::warn!(error = %e, "session lookup failed");
            Lookup::StoreFailed(e)
        }
    }
}

/// Whether a method cannot change state (and so needs no CSRF check).
pub fn is_safe_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// CSRF defence for unsafe methods: the `Origin` must be trusted and the CSRF header
/// present. A cross-site form cannot add the header, and a cross-origin `fetch` with it
/// needs a CORS preflight that only trusted origins pass.
///
/// # Errors
/// A message saying which condition failed.
pub fn check_csrf(req: &RequestHeader, agent: &AgentConfig) -> Result<(), &'static str> {
    if !origin_allowed(req, agent) {
        return Err("the request's Origin is missing or not allowed");
    }
    if !req.headers.contains_key(&agent.csrf_header) {
        return Err("the CSRF header is missing");
    }
    Ok(())
}

/// The request's `Origin`, when it is one of the trusted origins.
pub fn allowed_origin<'r>(req: &'r RequestHeader, agent: &AgentConfig) -> Option<&'r HeaderValue> {
    let origin = req.headers.get(header::ORIGIN)?;
    agent
        .allowed_origins
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
        .then_some(origin)
}

fn origin_allowed(req: &RequestHeader, agent: &AgentConfig) -> bool {
    allowed_origin(req, agent).is_some()
}
