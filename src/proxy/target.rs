//! The request target as the upstream will see it, settled before anything routes on it:
//! an absolute-form target becomes origin-form with its authority as `Host`, and the one
//! host of the request is checked against `server.hosts`.
//!
//! Pingora has already refused, before `request_filter`, what cannot have one reading: two
//! `Host` headers, a `Host` that differs from an absolute-form target's authority or from
//! HTTP/2 `:authority`, userinfo, and an absolute-form HTTP/2 `:path`.

use crate::http::{self, ApiError};
use ::http::{header, HeaderValue};
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::{
    is_http_family_scheme, raw_target_authority, RawTargetAuthority,
};

/// Rewrites an absolute-form target (`GET http://host/path`) to origin-form (`/path`),
/// setting `Host` to the target's authority, so that routing, the access log and the
/// upstream all read the same path and host. Origin-form targets are left alone.
///
/// # Errors
/// [`ApiError::BadRequest`] for a scheme other than `http(s)`/`ws(s)` or a target whose
/// authority is ambiguous; [`ApiError::InvalidHost`] for an authority that is not a host.
pub fn to_origin_form(req: &mut RequestHeader) -> Result<(), ApiError> {
    let (authority, path) = match raw_target_authority(req.raw_path()) {
        RawTargetAuthority::None => return Ok(()),
        RawTargetAuthority::AmbiguousAuthority => return Err(ApiError::BadRequest),
        RawTargetAuthority::Absolute {
            scheme,
            authority,
            path_and_query,
        } => {
            if !is_http_family_scheme(scheme) {
                return Err(ApiError::BadRequest);
            }
            (authority.to_vec(), path_and_query.to_vec())
        }
    };
    let text = std::str::from_utf8(&authority).map_err(|_| ApiError::InvalidHost)?;
    crate::host::parse_authority(text).ok_or(ApiError::InvalidHost)?;
    let value = HeaderValue::from_bytes(&authority).map_err(|_| ApiError::InvalidHost)?;
    let mut origin = Vec::with_capacity(path.len() + 1);
    if !path.starts_with(b"/") {
        origin.push(b'/');
    }
    origin.extend_from_slice(&path);
    req.set_raw_path(&origin)
        .map_err(|_| ApiError::BadRequest)?;
    req.insert_header(header::HOST, value)
        .map_err(|_| ApiError::InvalidHost)
}

/// The request's host (canonical form), if it names one, checked against `hosts`.
///
/// # Errors
/// [`ApiError::InvalidHost`] for a `Host` that is not a host name;
/// [`ApiError::MisdirectedRequest`] when `hosts` is not empty and the request names no
/// host or another one.
pub fn allowed_host<'r>(
    req: &'r RequestHeader,
    hosts: &[String],
) -> Result<Option<std::borrow::Cow<'r, str>>, ApiError> {
    let host = http::host(req)?;
    if hosts.is_empty() {
        return Ok(host);
    }
    match host {
        Some(h) if hosts.iter().any(|allowed| *allowed == h) => Ok(Some(h)),
        _ => Err(ApiError::MisdirectedRequest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &[u8], host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build("GET", target, None).unwrap();
        if let Some(h) = host {
            r.insert_header(header::HOST, h).unwrap();
        }
        r
    }

    #[test]
    fn absolute_form_becomes_origin_form_with_its_host() {
        let mut r = req(b"http://API.example.com:8080/api/secret?x=1", None);
        to_origin_form(&mut r).unwrap();
        assert_eq!(r.raw_path(), b"/api/secret?x=1");
        assert_eq!(r.headers.get(header::HOST).unwrap(), "API.example.com:8080");
        assert_eq!(http::host(&r).unwrap().as_deref(), Some("api.example.com"));
        let mut bare = req(b"https://a.test", None);
        to_origin_form(&mut bare).unwrap();
        assert_eq!(bare.raw_path(), b"/");
        let mut q = req(b"http://a.test?x", None);
        to_origin_form(&mut q).unwrap();
        assert_eq!(q.raw_path(), b"/?x");
        let mut plain = req(b"/api", Some("a.test"));
        to_origin_form(&mut plain).unwrap();
        assert_eq!(plain.raw_path(), b"/api");
    }

    #[test]
    fn hosts_outside_the_list_are_misdirected() {
        let hosts = vec!["api.example.com".to_string()];
        let ok = req(b"/", Some("API.example.com.:443"));
        assert_eq!(
            allowed_host(&ok, &hosts).unwrap().as_deref(),
            Some("api.example.com")
        );
        let other = req(b"/", Some("evil.example"));
        assert_eq!(
            allowed_host(&other, &hosts),
            Err(ApiError::MisdirectedRequest)
        );
        let none = req(b"/", None);
        assert_eq!(
            allowed_host(&none, &hosts),
            Err(ApiError::MisdirectedRequest)
        );
        assert_eq!(allowed_host(&none, &[]), Ok(None));
        let bad = req(b"/", Some("a.test/x"));
        assert_eq!(allowed_host(&bad, &[]), Err(ApiError::InvalidHost));
    }
}
