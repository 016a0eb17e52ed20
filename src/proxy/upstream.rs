//! The way upstream: which peer takes the request, and what the upstream request carries.
//!
//! Everything bffgate vouches for (the bearer token, forwarded headers) is set here on
//! every attempt, retries included; the client's `Authorization` and our cookie never pass.

use super::RequestCtx;
use crate::http as edge;
use crate::live::Route;
use crate::path::{segment_prefix, strip_params};
use http::{header, HeaderValue};
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::proxy::Session as HttpSession;
use pingora::{Error, ErrorType, Result};

/// How long an upstream that failed a connect stays out of rotation.
pub const PASSIVE_EJECT_MS: u64 = 5_000;

/// The route's next upstream (round robin, skipping ejected and unresolved ones) at its
/// host's current address, with its timeouts. Reads the resolver's snapshot only.
///
/// # Errors
/// The route has no upstream (validation prevents it), or no upstream of it has an address
/// yet (a connect error: answered as the upstream being unavailable).
pub fn peer(route: &Route, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
    let (index, up, addr) = route
        .next_upstream()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "route has no upstream"))?;
    ctx.tries += 1;
    ctx.upstream_index = index;
    ctx.upstream_addr = addr;
    let Some(addr) = addr else {
        let mut e = Error::explain(
            ErrorType::ConnectError,
            format!("upstream host `{}` has not resolved yet", up.host),
        );
        e.set_retry(false);
        return Err(e);
    };
    // The host name is the TLS server name; a plain connection has none to copy.
    let sni = if up.tls {
        up.host.clone()
    } else {
        String::new()
    };
    let mut peer = HttpPeer::new(addr, up.tls, sni);
    let c = &route.config;
    peer.options.verify_cert = c.tls_verify;
    peer.options.verify_hostname = c.tls_verify;
    peer.options.connection_timeout = Some(c.connect_timeout);
    peer.options.total_connection_timeout = Some(c.connect_timeout);
    peer.options.read_timeout = Some(c.read_timeout);
    peer.options.write_timeout = Some(c.read_timeout);
    Ok(Box::new(peer))
}

/// Rewrites the upstream request: the path (`strip_prefix`, otherwise byte for byte), our
/// cookies and any client `Authorization` removed, the session's bearer token set, the
/// client's forwarding headers replaced by bffgate's, then the route's header changes.
/// Runs on every attempt (retries included) and reads `ctx` only, so each attempt carries
/// the same credentials and headers.
///
/// # Errors
/// A header value could not be built.
pub fn rewrite(
    session: &HttpSession,
    upstream: &mut RequestHeader,
    route: &Route,
    ctx: &RequestCtx,
) -> Result<()> {
    strip_prefix(upstream, route.config.strip_prefix.as_deref())?;
    let proxy_proto = trusted_proto(upstream, ctx);
    let client = ClientHeaders::scan(upstream, ctx);
    for name in &client.dropped {
        upstream.remove_header(name);
    }
    if client.cookie {
        strip_session_cookie(upstream, ctx)?;
    }
    if let Some(token) = ctx.token.as_deref() {
        let scheme = if ctx.dpop.is_some() { "DPoP" } else { "Bearer" };
        let mut text = String::with_capacity(scheme.len() + 1 + token.len());
        text.push_str(scheme);
        text.push(' ');
        text.push_str(token);
        // Checked where it is, not copied again.
        let mut value = HeaderValue::from_maybe_shared(bytes::Bytes::from(text)).map_err(|_| {
            Error::explain(
                ErrorType::InternalError,
                "access token is not a valid header value",
            )
        })?;
        value.set_sensitive(true);
        upstream.insert_header(header::AUTHORIZATION, value)?;
        if let Some(key) = &ctx.dpop {
            let proof = dpop_proof(key, upstream, route, ctx.upstream_index, token)?;
            upstream.insert_header(crate::dpop::HEADER, proof)?;
        }
    }
    if !ctx.upstream_span.is_none() {
        // The trace goes on from bffgate's upstream span, never from what the client sent.
        for (name, value) in crate::telemetry::trace_headers(&ctx.upstream_span) {
            upstream.insert_header(name, value)?;
        }
    }
    // The route's own header changes come last: the operator may add a forwarding header
    // (e.g. `X-Forwarded-Prefix`) that bffgate would otherwise drop.
    forwarded_headers(session, upstream, ctx, proxy_proto)?;
    upstream.insert_header(crate::http::REQUEST_ID_HEADER, ctx.request_id.as_str())?;
    // Identity headers are bffgate's word: the client's of those names never pass.
    for (name, _) in &route.config.identity.headers {
        upstream.remove_header(name);
    }
    for (name, value) in &ctx.identity {
        upstream.insert_header(name.clone(), value.clone())?;
    }
    for name in &route.config.headers_remove {
        upstream.remove_header(name);
    }
    for (name, value) in &route.config.headers_add {
        upstream.insert_header(name.clone(), value.clone())?;
    }
    Ok(())
}

/// A DPoP proof for the request as upstream `index` receives it: its method, and the URL
/// it sees (the upstream's scheme, the `Host` bffgate sends, the path after rewriting),
/// with the upstream's latest nonce.
fn dpop_proof(
    key: &crate::dpop::DpopKey,
    upstream: &RequestHeader,
    route: &Route,
    index: usize,
    token: &str,
) -> Result<HeaderValue> {
    let target = route.config.upstreams.get(index);
    let scheme = if target.is_some_and(|u| u.tls) {
        "https"
    } else {
        "http"
    };
    let host = upstream
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| target.map(|u| u.authority()))
        .unwrap_or_default();
    let path = String::from_utf8_lossy(upstream.raw_path());
    let url = format!("{scheme}://{host}{path}");
    let nonce = route.dpop_nonce(index);
    key.proof(
        upstream.method.as_str(),
        &url,
        Some(token),
        nonce.as_deref().map(String::as_str),
    )
    .ok()
    .and_then(|p| HeaderValue::from_str(&p).ok())
    .ok_or_else(|| Error::explain(ErrorType::InternalError, "no DPoP proof could be made"))
}

/// Removes the route's `strip_prefix` segments from the path. The prefix is matched as the
/// route was (without `;` parameters), and the parameters of a removed segment go with it:
/// `/api;x=1/secret` less `/api` is `/secret`.
fn strip_prefix(upstream: &mut RequestHeader, strip: Option<&str>) -> Result<()> {
    let Some(strip) = strip else { return Ok(()) };
    let raw = upstream.raw_path();
    let end = raw.iter().position(|&b| b == b'?').unwrap_or(raw.len());
    let Ok(path) = std::str::from_utf8(&raw[..end]) else {
        return Ok(());
    };
    if !segment_prefix(strip, &strip_params(path)) {
        return Ok(());
    }
    let mut at = 0;
    for _ in strip.split('/').filter(|s| !s.is_empty()) {
        at = path
            .get(at + 1..)
            .and_then(|tail| tail.find('/'))
            .map_or(path.len(), |i| at + 1 + i);
    }
    let rest = &raw[at..];
    let mut path = Vec::with_capacity(rest.len() + 1);
    if !rest.starts_with(b"/") {
        path.push(b'/');
    }
    path.extend_from_slice(rest);
    upstream.set_raw_path(&path)
}

fn strip_session_cookie(upstream: &mut RequestHeader, ctx: &RequestCtx) -> Result<()> {
    let cookie = &ctx.live.cookie;
    let cookies: Vec<Vec<u8>> = upstream
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| cookie.strip(v.as_bytes()))
        .collect();
    upstream.remove_header(&header::COOKIE);
    if !cookies.is_empty() {
        let joined = cookies.join(&b"; "[..]);
        upstream.insert_header(
            header::COOKIE,
            HeaderValue::from_bytes(&joined)
                .map_err(|_| Error::explain(ErrorType::InvalidHTTPHeader, "cookie header"))?,
        )?;
    }
    Ok(())
}

/// What the client sent that bffgate replaces or never passes on, found in one pass over
/// the header names (no lookup per name that is absent, the common case).
struct ClientHeaders {
    /// `Authorization`, `DPoP`, every forwarding header, and the trace context when
    /// bffgate traces the call.
    dropped: Vec<http::HeaderName>,
    /// Whether a `Cookie` header is there (ours is taken out of it).
    cookie: bool,
}

impl ClientHeaders {
    fn scan(upstream: &RequestHeader, ctx: &RequestCtx) -> Self {
        let f = &ctx.live.forwarding;
        let traced = !ctx.upstream_span.is_none();
        let mut found = ClientHeaders {
            dropped: Vec::new(),
            cookie: false,
        };
        for name in upstream.headers.keys() {
            if *name == header::COOKIE {
                found.cookie = true;
            } else if *name == header::AUTHORIZATION
                || name.as_str() == crate::dpop::HEADER
                || edge::is_forwarding_header(name, f)
                || (traced && matches!(name.as_str(), "traceparent" | "tracestate"))
            {
                found.dropped.push(name.clone());
            }
        }
        found
    }
}

/// A trusted proxy's `X-Forwarded-Proto`, when it says `http` or `https`.
fn trusted_proto(upstream: &RequestHeader, ctx: &RequestCtx) -> Option<&'static str> {
    ctx.peer_trusted
        .then(|| upstream.headers.get("x-forwarded-proto"))
        .flatten()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            ["http", "https"]
                .into_iter()
                .find(|p| v.eq_ignore_ascii_case(p))
        })
}

/// Sets bffgate's forwarding headers (the client's were dropped): the client address it
/// determined, the scheme it was reached on (a trusted proxy's `X-Forwarded-Proto` when it
/// says `http` or `https`), and the host the request was routed on when it is a
/// well-formed host name or address.
fn forwarded_headers(
    session: &HttpSession,
    upstream: &mut RequestHeader,
    ctx: &RequestCtx,
    proxy_proto: Option<&'static str>,
) -> Result<()> {
    if let Some(ip) = ctx.client_addr {
        upstream.insert_header("x-forwarded-for", address_value(ip))?;
    }
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let proto = proxy_proto.unwrap_or(if tls { "https" } else { "http" });
    upstream.insert_header("x-forwarded-proto", proto)?;
    if let Some(host) = &ctx.forwarded_host {
        upstream.insert_header("x-forwarded-host", host.clone())?;
    }
    Ok(())
}

/// An address as `X-Forwarded-For` carries it. IPv4, by far the most common, is written
/// without the formatting machinery (this runs on every proxied request).
fn address_value(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip else {
        return HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    };
    let mut text = bytes::BytesMut::with_capacity(15);
    let mut digits = itoa::Buffer::new();
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.extend_from_slice(b".");
        }
        text.extend_from_slice(digits.format(octet).as_bytes());
    }
    HeaderValue::from_maybe_shared(text.freeze())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(target: &str, strip: &str) -> String {
        let mut r = RequestHeader::build("GET", target.as_bytes(), None).unwrap();
        strip_prefix(&mut r, Some(strip)).unwrap();
        String::from_utf8(r.raw_path().to_vec()).unwrap()
    }

    #[test]
    fn forwarded_for_is_the_address_as_text() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
        ] {
            let value = address_value(ip.parse().unwrap());
            assert_eq!(value.to_str().unwrap(), ip);
        }
    }

    #[test]
    fn strip_prefix_takes_whole_segments_with_their_parameters() {
        assert_eq!(stripped("/api/secret?x=/a", "/api"), "/secret?x=/a");
        assert_eq!(stripped("/api", "/api"), "/");
        assert_eq!(stripped("/api?q", "/api"), "/?q");
        assert_eq!(stripped("/api;x=1/secret;y", "/api"), "/secret;y");
        assert_eq!(stripped("/api;a/v1;b/c", "/api/v1"), "/c");
        assert_eq!(stripped("/other/x", "/api"), "/other/x");
    }
}
