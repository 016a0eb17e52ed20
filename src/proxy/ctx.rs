//! Per-request state shared across the proxy's phases.

use crate::live::{LiveConfig, Route};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

/// Created by `new_ctx` (a clock read and one atomic load, no I/O), filled by
/// `request_filter`, applied by the upstream and response phases, read by `logging`.
pub struct RequestCtx {
    /// When the request started.
    pub started: Instant,
    /// The configuration this request runs on from start to end, even across a reload.
    pub live: Arc<LiveConfig>,
    /// The matched API route.
    pub route: Option<Arc<Route>>,
    /// Label for metrics and logs when the request is not for an API route (`health`,
    /// `agent_*`, …); an API route is labelled by its name.
    pub route_label: Option<&'static str>,
    /// The access token to forward; set on every upstream attempt, retries included.
    pub token: Option<String>,
    /// A `Set-Cookie` to add to the response (re-sealed cookie).
    pub set_cookie: Option<String>,
    /// The error code answered, if any (every local error answer has one).
    pub error_code: Option<&'static str>,
    /// Upstream connection attempts so far.
    pub tries: usize,
    /// Index (in the route) of the upstream tried last.
    pub upstream_index: usize,
    /// The address of the upstream tried last.
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// The request's `Origin` when trusted: CORS headers go on the response.
    pub cors_origin: Option<String>,
    /// When the request was sent upstream (for upstream latency).
    pub upstream_started: Option<Instant>,
    /// The request's trace span (`Span::none()` unless traces are exported).
    pub span: tracing::Span,
    /// The span of the upstream call, from sending the request to its response header.
    pub upstream_span: tracing::Span,
    /// The client's address (the peer's, or what a trusted proxy said): what logs and
    /// per-client limits use. `None` on a Unix socket.
    pub client_addr: Option<IpAddr>,
    /// Whether the peer is a trusted proxy (its forwarding headers and request id are
    /// believed), decided once per request.
    pub peer_trusted: bool,
    /// The host the request was routed on, as `X-Forwarded-Host` carries it upstream.
    pub forwarded_host: Option<http::HeaderValue>,
    /// The request id (a trusted proxy's, or minted here): logged, sent upstream, answered.
    pub request_id: String,
    /// The session's user as the access log names it (`access_log_user`).
    pub user: Option<String>,
    /// How long the upstream took to answer with its response header, microseconds.
    pub upstream_micros: Option<u64>,
    /// The route's identity headers for this session (set on every upstream attempt).
    pub identity: Vec<(http::HeaderName, http::HeaderValue)>,
    /// The session's DPoP key when the token goes upstream as `DPoP` with a proof (a
    /// fresh one on every attempt).
    pub dpop: Option<Arc<crate::dpop::DpopKey>>,
    /// Whether the upstream already had the request again with the DPoP nonce it asked for.
    pub dpop_retried: bool,
    /// The request's session (shared with the session cache), kept in case its response
    /// turns long-lived: its id and absolute end are tracked then.
    pub live_session: Option<Arc<crate::session::UserSession>>,
    /// The upstream socket of the current attempt (only with `live_session`).
    pub upstream_fd: Option<std::os::unix::io::RawFd>,
    /// The long-lived connection's registration, released when the response ends.
    pub live_registration: Option<crate::live::Registration>,
}

impl RequestCtx {
    /// Fresh state for a request on `live`.
    pub fn new(live: Arc<LiveConfig>) -> Self {
        RequestCtx {
            started: Instant::now(),
            live,
            route: None,
            route_label: None,
            token: None,
            set_cookie: None,
            error_code: None,
            tries: 0,
            upstream_index: 0,
            upstream_addr: None,
            cors_origin: None,
            upstream_started: None,
            span: tracing::Span::none(),
            upstream_span: tracing::Span::none(),
            client_addr: None,
            peer_trusted: false,
            forwarded_host: None,
            request_id: String::new(),
            user: None,
            upstream_micros: None,
            identity: Vec::new(),
            dpop: None,
            dpop_retried: false,
            live_session: None,
            upstream_fd: None,
            live_registration: None,
        }
    }

    /// The `route` label of this request: the API route's name, the local handler, or `none`.
    pub fn label(&self) -> &str {
        match (&self.route, self.route_label) {
            (Some(r), _) => r.config.name.as_str(),
            (None, Some(l)) => l,
            (None, None) => crate::metrics::NO_ROUTE,
        }
    }
}

impl std::fmt::Debug for RequestCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCtx")
            .field("route", &self.route_label)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("error_code", &self.error_code)
            .finish_non_exhaustive()
    }
}
