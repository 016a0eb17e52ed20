//! The end of every request: metrics, and the access log line with the code of every
//! local answer.

use super::RequestCtx;
use crate::config::LogUser;
use crate::metrics;
use pingora::proxy::Session as HttpSession;
use pingora::Error;
use sha2::{Digest, Sha256};

/// Counts the request and, when enabled, writes its access log line.
pub fn record(session: &HttpSession, e: Option<&Error>, ctx: &RequestCtx) {
    let status = session.response_written().map_or(0, |r| r.status.as_u16());
    let elapsed = ctx.started.elapsed();
    let route = ctx.label();
    match &ctx.route {
        Some(r) if status == 200 => r.ok.inc(),
        _ => metrics::REQUESTS
            .with_label_values(&[route, status_label(status)])
            .inc(),
    }
    match &ctx.route {
        Some(r) => r.duration.observe(elapsed.as_secs_f64()),
        None => metrics::REQUEST_DURATION
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64()),
    }
    if ctx.live.access_log {
        let req = session.req_header();
        let upstream = ctx
            .upstream_addr
            .filter(|_| ctx.tries > 0)
            .map(|a| a.to_string());
        tracing::info!(
            target: "bffgate::access",
            client = %ctx.client_addr.map(|a| a.to_string()).unwrap_or_default(),
            host = %crate::http::host(req).ok().flatten().unwrap_or_default(),
            method = %req.method,
            path = %String::from_utf8_lossy(req.uri.path().as_bytes()),
            route,
            status,
            code = ctx.error_code.unwrap_or(""),
            bytes_in = session.body_bytes_read(),
            bytes_out = session.body_bytes_sent(),
            micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            upstream = upstream.as_deref().unwrap_or(""),
            upstream_micros = ctx.upstream_micros.unwrap_or(0),
            request_id = ctx.request_id.as_str(),
            user = ctx.user.as_deref().unwrap_or(""),
            error = e.map(|e| e.etype().as_str()).unwrap_or(""),
        );
    }
}

/// The access log's name for user `sub`, per `access_log_user`.
pub fn user(sub: &str, policy: LogUser) -> Option<String> {
    match policy {
        LogUser::None => None,
        LogUser::Sub => Some(sub.to_string()),
        LogUser::Hash => Some(hex::encode(&Sha256::digest(sub.as_bytes())[..8])),
    }
}

/// Status codes as static label strings (bounded; an unlisted code counts by its class).
fn status_label(status: u16) -> &'static str {
    const COMMON: [(u16, &str); 19] = [
        (0, "0"),
        (200, "200"),
        (201, "201"),
        (204, "204"),
        (301, "301"),
        (302, "302"),
        (304, "304"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, label)) = COMMON.iter().find(|(code, _)| *code == status) {
        return label;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}
