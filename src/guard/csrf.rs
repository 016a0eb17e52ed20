//! CSRF and Origin rules for credentialed requests.
//!
//! Unsafe methods need a trusted `Origin` and the CSRF header: a cross-site form cannot
//! add the header, and a cross-origin `fetch` with it needs a CORS preflight that only
//! trusted origins pass. Browsers cannot add headers to a WebSocket handshake, but always
//! send its `Origin`: a trusted `Origin` is what stops cross-site WebSocket hijacking.

use crate::config::AgentConfig;
use crate::http::{allowed_origin, is_safe_method, is_upgrade, ApiError};
use pingora::http::RequestHeader;

/// The check for an unsafe request (agent endpoints that change state).
///
/// # Errors
/// [`ApiError::CsrfViolation`] saying which condition failed.
pub fn check_csrf(req: &RequestHeader, agent: &AgentConfig) -> Result<(), ApiError> {
    if allowed_origin(req, agent).is_none() {
        return Err(ApiError::CsrfViolation(
            "the request's Origin is missing or not allowed",
        ));
    }
    if !req.headers.contains_key(&agent.csrf_header) {
        return Err(ApiError::CsrfViolation("the CSRF header is missing"));
    }
    Ok(())
}

/// The check for a request to an API route that reads the session: upgrades need a
/// trusted `Origin`, other unsafe methods [`check_csrf`], safe methods nothing.
///
/// # Errors
/// [`ApiError::CsrfViolation`] saying which condition failed.
pub fn check_route_request(req: &RequestHeader, agent: &AgentConfig) -> Result<(), ApiError> {
    if is_upgrade(req) {
        return match allowed_origin(req, agent) {
            Some(_) => Ok(()),
            None => Err(ApiError::CsrfViolation(
                "the upgrade request's Origin is missing or not allowed",
            )),
        };
    }
    if is_safe_method(&req.method) {
        return Ok(());
    }
    check_csrf(req, agent)
}
