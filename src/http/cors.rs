//! CORS for the SPA's origins: which origins are trusted, the headers that say so, and the
//! answer to a preflight.

use super::{ApiError, LocalResponse};
use crate::config::AgentConfig;
use http::{header, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};

/// The request's `Origin`, when it is one of the trusted origins.
pub fn allowed_origin<'r>(req: &'r RequestHeader, agent: &AgentConfig) -> Option<&'r HeaderValue> {
    let origin = req.headers.get(header::ORIGIN)?;
    agent
        .allowed_origins
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
        .then_some(origin)
}

/// Adds the credentialed-CORS headers for `origin` to a local answer.
pub fn allow_local(resp: &mut LocalResponse, origin: &str) {
    resp.headers
        .push(("access-control-allow-origin", origin.to_string()));
    resp.headers
        .push(("access-control-allow-credentials", "true".into()));
    resp.headers.push(("vary", "Origin".into()));
}

/// Adds the credentialed-CORS headers for `origin` to a proxied response.
///
/// # Errors
/// The header could not be set.
pub fn allow_proxied(resp: &mut ResponseHeader, origin: String) -> pingora::Result<()> {
    resp.insert_header("access-control-allow-origin", origin)?;
    resp.insert_header("access-control-allow-credentials", "true")?;
    resp.append_header("vary", "Origin")?;
    Ok(())
}

/// Answers a CORS preflight: trusted origins may send credentials, any method, and the
/// headers they ask for (which include the CSRF header).
///
/// # Errors
/// [`ApiError::CorsOriginNotAllowed`] when the origin is not trusted.
pub fn preflight(req: &RequestHeader, trusted: bool) -> Result<LocalResponse, ApiError> {
    if !trusted {
        return Err(ApiError::CorsOriginNotAllowed);
    }
    let mut resp = LocalResponse::empty(204)
        .with_header(
            "access-control-allow-methods",
            "GET, HEAD, POST, PUT, PATCH, DELETE".into(),
        )
        .with_header("access-control-max-age", "600".into());
    if let Some(requested) = req
        .headers
        .get("access-control-request-headers")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        resp.headers
            .push(("access-control-allow-headers", requested.to_string()));
    }
    Ok(resp)
}
