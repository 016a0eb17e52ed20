//! Reading what a request says: its path, query parameters, cookies, host, and whether it
//! may change state or switch protocols.

use super::ApiError;
use http::{header, Method};
use pingora::http::RequestHeader;

/// The request target's path (no query), as UTF-8.
///
/// # Errors
/// [`ApiError::InvalidPath`] when it is not UTF-8.
pub fn path(req: &RequestHeader) -> Result<&str, ApiError> {
    let raw = req.raw_path();
    let end = raw.iter().position(|&b| b == b'?').unwrap_or(raw.len());
    std::str::from_utf8(&raw[..end])
        .map_err(|_| ApiError::InvalidPath("the path is not valid UTF-8"))
}

/// The first value of query parameter `name`, decoded.
pub fn query_param(req: &RequestHeader, name: &str) -> Option<String> {
    let q = req.uri.query()?;
    url::form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The value of cookie `name` in the request's `Cookie` headers (the first occurrence wins).
pub fn cookie<'r>(req: &'r RequestHeader, name: &str) -> Option<&'r str> {
    crate::cookie::cookie_value(
        req.headers
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.as_bytes()),
        name,
    )
}

/// The request's host in canonical form (lowercase, no port, no trailing dot): the
/// target's authority (HTTP/2 `:authority`) if it has one, else the `Host` header.
///
/// # Errors
/// [`ApiError::InvalidHost`] when the one present is not a host name (`Ok(None)` when
/// neither is present or the `Host` header is empty).
pub fn host(req: &RequestHeader) -> Result<Option<std::borrow::Cow<'_, str>>, ApiError> {
    let raw = match req.uri.authority() {
        Some(a) => a.as_str(),
        None => match req.headers.get(header::HOST) {
            Some(h) => h.to_str().map_err(|_| ApiError::InvalidHost)?,
            None => return Ok(None),
        },
    };
    if raw.is_empty() {
        return Ok(None);
    }
    crate::host::parse_authority(raw)
        .map(|h| Some(h.host))
        .ok_or(ApiError::InvalidHost)
}

/// Whether a request asks to switch protocols (WebSocket).
pub fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::UPGRADE)
}

/// Whether a method cannot change state (and so needs no CSRF check).
pub fn is_safe_method(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// Whether the request is a CORS preflight.
pub fn is_preflight(req: &RequestHeader) -> bool {
    req.method == Method::OPTIONS && req.headers.contains_key("access-control-request-method")
}
