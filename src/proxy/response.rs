//! The response on its way back: upstream attempts to set our cookies dropped, upstream
//! CORS headers dropped on routes with auth (bffgate owns CORS there), the re-sealed cookie
//! and bffgate's CORS headers added, upstream latency observed.

use super::RequestCtx;
use crate::config::AuthMode;
use crate::http;
use ::http::{header, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::Result;

/// Applies bffgate's policy to a proxied response header.
///
/// # Errors
/// A header could not be set.
pub fn apply(resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    if resp.headers.contains_key(header::SET_COOKIE) {
        let cookie = &ctx.live.cookie;
        let keep: Vec<HeaderValue> = resp
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter(|v| !cookie.is_set_by(v.as_bytes()))
            .cloned()
            .collect();
        resp.remove_header(&header::SET_COOKIE);
        for v in keep {
            resp.append_header(header::SET_COOKIE, v)?;
        }
    }
    if ctx
        .route
        .as_ref()
        .is_some_and(|r| r.config.auth != AuthMode::None)
    {
        remove_cors(resp);
    }
    if let (Some(started), Some(route)) = (ctx.upstream_started, &ctx.route) {
        let took = started.elapsed();
        route.upstream_duration.observe(took.as_secs_f64());
        ctx.upstream_micros = Some(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
    }
    resp.insert_header(http::REQUEST_ID_HEADER, ctx.request_id.as_str())?;
    if let Some(c) = ctx.set_cookie.take() {
        resp.append_header(header::SET_COOKIE, c)?;
    }
    if let Some(origin) = ctx.cors_origin.take() {
        http::allow_proxied(resp, origin)?;
    }
    Ok(())
}

/// Removes every `Access-Control-*` header: on a route with auth, an upstream must not
/// grant a credentialed cross-origin read that bffgate's origin list does not.
fn remove_cors(resp: &mut ResponseHeader) {
    let names: Vec<_> = resp
        .headers
        .keys()
        .filter(|n| n.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in names {
        resp.remove_header(&name);
    }
}
