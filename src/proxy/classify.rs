//! What a request is for, decided once at the top of `request_filter`: a health probe, a
//! CORS preflight, an agent endpoint, or an API route.

use super::target::allowed_host;
use crate::http::{self, ApiError};
use crate::live::{LiveConfig, Route, RouteMatch};
use crate::path::{segment_prefix, PathError};
use ::http::HeaderValue;
use pingora::http::RequestHeader;
use std::sync::Arc;

/// Which health endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// `/healthz`: the process is up.
    Alive,
    /// `/readyz`: the store answers and the provider, if any, is discovered.
    Ready,
}

/// Where a request goes.
#[derive(Debug)]
pub enum Target {
    /// A health probe.
    Health(Probe),
    /// A CORS preflight.
    Preflight,
    /// An agent endpoint; the path below the base path.
    Agent(String),
    /// An API route, and the host the request named as `X-Forwarded-Host` carries it
    /// (canonical, when it is a DNS name or IP literal of legal length).
    Api(Arc<Route>, Option<HeaderValue>),
}

/// Classifies a request against the live configuration.
///
/// # Errors
/// The [`ApiError`] to answer: a target that is not a path, a path that is not UTF-8 or
/// would route elsewhere once normalised, a `Host` that is not a host name or not in `server.hosts` (health probes
/// are answered whatever the host), no matching route, or a method the route does not take.
pub fn classify(req: &RequestHeader, live: &LiveConfig) -> Result<Target, ApiError> {
    let path = http::path(req)?;
    match path {
        "/healthz" => return Ok(Target::Health(Probe::Alive)),
        "/readyz" => return Ok(Target::Health(Probe::Ready)),
        _ => {}
    }
    let host = allowed_host(req, &live.hosts)?;
    if !path.starts_with('/') {
        // Asterisk-form (`OPTIONS *`) or authority-form (`CONNECT host:port`): no route
        // serves a target that is not a path, not even `/`.
        return Err(ApiError::InvalidPath("the request target is not a path"));
    }
    if http::is_preflight(req) {
        return Ok(Target::Preflight);
    }
    let base = live.agent.base_path.as_str();
    if segment_prefix(base, path) {
        return Ok(Target::Agent(path[base.len()..].to_string()));
    }
    let route_host = host.as_deref().filter(|_| live.routes.matches_host());
    match live
        .routes
        .find_checked(route_host, &req.method, path, live.path_params)
    {
        Ok(RouteMatch::Found(route)) => Ok(Target::Api(route, forwarded_host(host.as_deref()))),
        Ok(RouteMatch::MethodNotAllowed) => Err(ApiError::MethodNotAllowed(
            "this route does not take that method",
        )),
        Ok(RouteMatch::NotFound) => Err(ApiError::RouteNotFound("no route matches this path")),
        Err(PathError::DotSegment | PathError::Ambiguous) => Err(ApiError::InvalidPath(
            "the path has dot-segments or encodings that change its meaning",
        )),
        Err(PathError::Params) => Err(ApiError::InvalidPath(
            "path parameters (;) are not accepted here",
        )),
    }
}

/// The request's host (already canonical: see [`crate::host::parse_authority`]) as a
/// header value, when its length is a legal DNS name's (253 characters, labels of 63).
fn forwarded_host(host: Option<&str>) -> Option<HeaderValue> {
    let host = host?;
    let legal =
        host.starts_with('[') || (host.len() <= 253 && host.split('.').all(|l| l.len() <= 63));
    legal.then(|| HeaderValue::from_str(host).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::forwarded_host;

    #[test]
    fn forwarded_host_is_the_routed_host_of_legal_length() {
        assert_eq!(
            forwarded_host(Some("api.example.com")).unwrap(),
            "api.example.com"
        );
        assert_eq!(forwarded_host(Some("[::1]")).unwrap(), "[::1]");
        assert_eq!(forwarded_host(None), None);
        let label = "a".repeat(64);
        assert_eq!(forwarded_host(Some(&format!("{label}.example"))), None);
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(long.len() > 253);
        assert_eq!(forwarded_host(Some(&long)), None);
    }
}
