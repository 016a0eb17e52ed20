//! The edge proxy: Pingora's `ProxyHttp` phases for bffgate.
//!
//! Each phase is short and delegates. `request_filter` decides everything about a request
//! (answer it here, or forward it with which token); later phases only apply that decision.

pub mod auth;
mod ctx;
mod respond;
mod route;

pub use ctx::RequestCtx;
pub use respond::LocalResponse;
pub use route::{PathError, Route, RouteMatch, RouteTable};

use crate::agent::{refresh_unavailable, session_refusal, Agent, AgentRoute, Freshness};
use crate::config::{segment_prefix, AgentConfig, AuthMode, Config, SessionConfig};
use crate::cookie::SessionCookie;
use crate::metrics;
use crate::session::{now_secs, SessionStore};
use arc_swap::ArcSwap;
use async_trait::async_trait;
use auth::{allowed_origin, check_csrf, is_safe_method, lookup, Lookup};
use http::{header, HeaderValue, Method};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};
use std::sync::Arc;

/// How long an upstream that failed a connect stays out of rotation.
const PASSIVE_EJECT_MS: u64 = 5_000;

/// Everything a request needs from the configuration, swapped whole on reload.
#[derive(Debug)]
pub struct Snapshot {
    /// API routes.
    pub routes: RouteTable,
    /// The session cookie policy and cipher.
    pub cookie: SessionCookie,
    /// Agent base path, trusted origins, CSRF header.
    pub agent: AgentConfig,
    /// Session lifetimes.
    pub session: SessionConfig,
    /// Whether to log each request.
    pub access_log: bool,
}

impl Snapshot {
    /// Compiles the per-request view of a validated config.
    pub fn new(config: &Config) -> Self {
        Snapshot {
            routes: RouteTable::new(&config.routes),
            cookie: SessionCookie::new(&config.cookie),
            agent: config.agent.clone(),
            session: config.session.clone(),
            access_log: config.access_log,
        }
    }
}

/// The bffgate proxy.
pub struct EdgeProxy {
    snapshot: Arc<ArcSwap<Snapshot>>,
    store: SessionStore,
    agent: Option<Arc<Agent>>,
    draining: Arc<std::sync::atomic::AtomicBool>,
}

impl EdgeProxy {
    /// A proxy over a (reloadable) snapshot and a session store, with the OAuth agent when
    /// a provider is configured.
    pub fn new(
        snapshot: Arc<ArcSwap<Snapshot>>,
        store: SessionStore,
        agent: Option<Arc<Agent>>,
        draining: Arc<std::sync::atomic::AtomicBool>,
    ) -> Self {
        EdgeProxy {
            snapshot,
            store,
            agent,
            draining,
        }
    }

    /// Answers locally, with CORS headers for a trusted origin.
    async fn answer(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        mut resp: LocalResponse,
    ) -> Result<bool> {
        if let Some(origin) = &ctx.cors_origin {
            resp.headers
                .push(("access-control-allow-origin", origin.clone()));
            resp.headers
                .push(("access-control-allow-credentials", "true".into()));
            resp.headers.push(("vary", "Origin".into()));
        }
        ctx.error_code = ctx.error_code.or(resp.code);
        resp.send(session).await?;
        ctx.answered_locally = true;
        Ok(true)
    }

    async fn reject(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        status: u16,
        code: &'static str,
        message: &str,
    ) -> Result<bool> {
        ctx.error_code = Some(code);
        self.answer(session, ctx, LocalResponse::error(status, code, message))
            .await
    }

    /// `/healthz` (the process is up) and `/readyz` (the store answers and the provider,
    /// if any, is discovered).
    async fn health(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        ready: bool,
    ) -> Result<bool> {
        ctx.route_label = Some("health");
        if !ready {
            let ok = LocalResponse::json(200, &serde_json::json!({"status": "ok"}));
            return self.answer(session, ctx, ok).await;
        }
        if let Some(agent) = &self.agent {
            if !agent.oidc().is_ready() {
                let msg = "the OpenID provider has not been discovered yet";
                return self
                    .reject(session, ctx, 503, "provider_unavailable", msg)
                    .await;
            }
        }
        if let Err(e) = self.store.ping().await {
            tracing::warn!(error = %e, "readiness check: session store unavailable");
            let msg = "the session store is not reachable";
            return self
                .reject(session, ctx, 503, "session_store_unavailable", msg)
                .await;
        }
        let ready = LocalResponse::json(200, &serde_json::json!({"status": "ready"}));
        self.answer(session, ctx, ready).await
    }

    /// Answers a CORS preflight: trusted origins may send credentials, any method, and
    /// the headers they ask for (which include the CSRF header).
    async fn preflight(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        ctx.route_label = Some("preflight");
        if ctx.cors_origin.is_none() {
            let msg = "this origin may not call bffgate";
            return self
                .reject(session, ctx, 403, "cors_origin_not_allowed", msg)
                .await;
        }
        let requested = session
            .req_header()
            .headers
            .get("access-control-request-headers")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let mut resp = LocalResponse::empty(204)
            .with_header(
                "access-control-allow-methods",
                "GET, HEAD, POST, PUT, PATCH, DELETE".into(),
            )
            .with_header("access-control-max-age", "600".into());
        if !requested.is_empty() {
            resp.headers
                .push(("access-control-allow-headers", requested));
        }
        self.answer(session, ctx, resp).await
    }

    /// Requests under the agent's base path.
    async fn agent(&self, session: &mut Session, ctx: &mut RequestCtx, rest: &str) -> Result<bool> {
        ctx.route_label = Some("agent");
        let Some(agent) = self.agent.clone() else {
            let msg = "no OpenID provider is configured";
            return self.reject(session, ctx, 404, "agent_disabled", msg).await;
        };
        let route = match AgentRoute::find(&session.req_header().method, rest) {
            Ok(r) => r,
            Err(true) => {
                let msg = "this endpoint does not take that method";
                return self
                    .reject(session, ctx, 405, "method_not_allowed", msg)
                    .await;
            }
            Err(false) => {
                return self
                    .reject(
                        session,
                        ctx,
                        404,
                        "route_not_found",
                        "no such agent endpoint",
                    )
                    .await;
            }
        };
        ctx.route_label = Some(route.label());
        let snap = Arc::clone(&ctx.snapshot);
        let resp = agent.handle(route, session, &snap).await?;
        self.answer(session, ctx, resp).await
    }

    /// Applies the route's session policy. `None` lets the request through (with
    /// `ctx.token` set when a session was found); `Some` is the refusal to send.
    async fn authenticate(
        &self,
        session: &Session,
        ctx: &mut RequestCtx,
        mode: AuthMode,
    ) -> Option<LocalResponse> {
        let snap = Arc::clone(&ctx.snapshot);
        let req = session.req_header();
        // Browsers cannot add headers to a WebSocket handshake, but always send its Origin:
        // a trusted Origin is what stops cross-site WebSocket hijacking. Other unsafe
        // requests need the CSRF header too.
        let csrf = if is_upgrade(req) {
            match allowed_origin(req, &snap.agent) {
                Some(_) => Ok(()),
                None => Err("the upgrade request's Origin is missing or not allowed"),
            }
        } else if is_safe_method(&req.method) {
            Ok(())
        } else {
            check_csrf(req, &snap.agent)
        };
        if let Err(why) = csrf {
            if let Some(route) = &ctx.route {
                metrics::CSRF_REJECTIONS
                    .with_label_values(&[route.config.name.as_str()])
                    .inc();
            }
            return Some(LocalResponse::error(403, "csrf_violation", why));
        }
        match lookup(&self.store, &snap.cookie, req).await {
            Lookup::Found { session: s, reseal } => {
                if reseal {
                    let max_age = s.expires_at.saturating_sub(now_secs());
                    ctx.set_cookie = Some(snap.cookie.set_cookie(&s.id, max_age));
                }
                let Some(agent) = self.agent.as_ref().filter(|a| a.refresher().due(&s.tokens))
                else {
                    ctx.token = Some(s.tokens.access_token);
                    return None;
                };
                match agent.refresher().ensure_fresh(s, false).await {
                    Freshness::Fresh(t) => {
                        ctx.token = Some(t.access_token);
                        None
                    }
                    Freshness::Ended => Some(session_refusal(&Lookup::Expired, &snap)),
                    Freshness::Unavailable => Some(refresh_unavailable()),
                }
            }
            Lookup::Missing if mode == AuthMode::Optional => None,
            other => Some(session_refusal(&other, &snap)),
        }
    }
}

/// Whether a request asks to switch protocols (WebSocket).
fn is_upgrade(req: &RequestHeader) -> bool {
    req.headers.contains_key(header::UPGRADE)
}

/// The request's host, lowercase, without port.
fn request_host(req: &RequestHeader) -> Option<String> {
    let raw = req.uri.host().map(str::to_string).or_else(|| {
        req.headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    })?;
    let host = if raw.starts_with('[') {
        raw.split_inclusive(']').next().unwrap_or(&raw).to_string()
    } else {
        raw.split(':').next().unwrap_or(&raw).to_string()
    };
    Some(host.to_ascii_lowercase())
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.snapshot.load_full())
    }

    /// Responsibilities: health endpoints; path safety; route lookup (404/405); the route's
    /// session policy (CSRF, cookie, session, 401/403/503). Returns `Ok(true)` when it
    /// answered, `Ok(false)` to forward with `ctx.route` (and `ctx.token`) set.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            // Another process is taking over (or this one is stopping): answer this request
            // with `Connection: close` so the client's next request opens a new connection.
            session.set_keepalive(None);
        }
        let raw = session.req_header().raw_path();
        let path_end = raw.iter().position(|&b| b == b'?').unwrap_or(raw.len());
        let Ok(path) = std::str::from_utf8(&raw[..path_end]).map(str::to_string) else {
            return self
                .reject(
                    session,
                    ctx,
                    400,
                    "invalid_path",
                    "the path is not valid UTF-8",
                )
                .await;
        };
        match path.as_str() {
            "/healthz" => return self.health(session, ctx, false).await,
            "/readyz" => return self.health(session, ctx, true).await,
            _ => {}
        }
        let snap = Arc::clone(&ctx.snapshot);
        ctx.cors_origin = allowed_origin(session.req_header(), &snap.agent)
            .and_then(|o| o.to_str().ok())
            .map(str::to_string);
        let req = session.req_header();
        if req.method == Method::OPTIONS
            && req.headers.contains_key("access-control-request-method")
        {
            return self.preflight(session, ctx).await;
        }
        let base = snap.agent.base_path.as_str();
        if segment_prefix(base, &path) {
            let rest = path[base.len()..].to_string();
            return self.agent(session, ctx, &rest).await;
        }
        let host = if snap.routes.matches_host() {
            request_host(session.req_header())
        } else {
            None
        };
        let method = session.req_header().method.clone();
        let found = match snap.routes.find_checked(host.as_deref(), &method, &path) {
            Ok(f) => f,
            Err(_) => {
                return self
                    .reject(
                        session,
                        ctx,
                        400,
                        "invalid_path",
                        "the path has dot-segments or encodings that change its meaning",
                    )
                    .await
            }
        };
        let route = match found {
            RouteMatch::Found(r) => r,
            RouteMatch::MethodNotAllowed => {
                return self
                    .reject(
                        session,
                        ctx,
                        405,
                        "method_not_allowed",
                        "this route does not take that method",
                    )
                    .await
            }
            RouteMatch::NotFound => {
                return self
                    .reject(
                        session,
                        ctx,
                        404,
                        "route_not_found",
                        "no route matches this path",
                    )
                    .await
            }
        };
        let mode = route.config.auth;
        ctx.route = Some(route);
        if mode == AuthMode::None {
            return Ok(false);
        }
        match self.authenticate(session, ctx, mode).await {
            None => Ok(false),
            Some(resp) => self.answer(session, ctx, resp).await,
        }
    }

    /// Picks the route's next upstream (round robin) with its timeouts.
    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))?;
        let (index, up) = route
            .next_upstream()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "route has no upstream"))?;
        ctx.tries += 1;
        ctx.upstream_index = index;
        let mut peer = HttpPeer::new(up.addr, up.tls, up.host.clone());
        peer.options.verify_cert = route.config.tls_verify;
        peer.options.verify_hostname = route.config.tls_verify;
        peer.options.connection_timeout = Some(route.config.connect_timeout);
        peer.options.total_connection_timeout = Some(route.config.connect_timeout);
        peer.options.read_timeout = Some(route.config.read_timeout);
        peer.options.write_timeout = Some(route.config.read_timeout);
        Ok(Box::new(peer))
    }

    /// Retries a failed connect on the route's next upstream, once per upstream.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(route) = &ctx.route {
            // Passive health: an upstream that refuses connections leaves the rotation
            // for a while; the request moves on to the next one.
            route.mark_down(ctx.upstream_index, PASSIVE_EJECT_MS);
            if ctx.tries < route.config.upstreams.len() {
                e.set_retry(true);
            }
        }
        e
    }

    /// Responsibilities: the path upstream (`strip_prefix`, otherwise byte for byte); our
    /// cookie and any client `Authorization` removed; the session's bearer token set;
    /// `X-Forwarded-*`; the route's header changes.
    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let Some(route) = ctx.route.clone() else {
            return Err(Error::explain(ErrorType::InternalError, "no route chosen"));
        };
        ctx.upstream_started = Some(std::time::Instant::now());
        if let Some(strip) = &route.config.strip_prefix {
            let raw = upstream.raw_path();
            if raw.starts_with(strip.as_bytes()) {
                let rest = &raw[strip.len()..];
                let mut path = Vec::with_capacity(rest.len() + 1);
                if !rest.starts_with(b"/") {
                    path.push(b'/');
                }
                path.extend_from_slice(rest);
                upstream.set_raw_path(&path)?;
            }
        }
        let cookie = &ctx.snapshot.cookie;
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
        upstream.remove_header(&header::AUTHORIZATION);
        if let Some(token) = ctx.token.take() {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::explain(
                    ErrorType::InternalError,
                    "access token is not a valid header value",
                )
            })?;
            value.set_sensitive(true);
            upstream.insert_header(header::AUTHORIZATION, value)?;
        }
        for name in &route.config.headers_remove {
            upstream.remove_header(name);
        }
        for (name, value) in &route.config.headers_add {
            upstream.insert_header(name.clone(), value.clone())?;
        }
        if let Some(ip) = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_string())
        {
            let xff = match upstream
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip,
            };
            upstream.insert_header("x-forwarded-for", xff)?;
        }
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        upstream.insert_header("x-forwarded-proto", if tls { "https" } else { "http" })?;
        if let Some(host) = session.req_header().headers.get(header::HOST).cloned() {
            upstream.insert_header("x-forwarded-host", host)?;
        }
        Ok(())
    }

    /// Drops upstream attempts to set our session cookie; adds a re-sealed cookie when the
    /// request's cookie was sealed with an older key.
    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if resp.headers.contains_key(header::SET_COOKIE) {
            let cookie = &ctx.snapshot.cookie;
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
        if let (Some(started), Some(route)) = (ctx.upstream_started, &ctx.route) {
            metrics::UPSTREAM_DURATION
                .with_label_values(&[route.config.name.as_str()])
                .observe(started.elapsed().as_secs_f64());
        }
        if let Some(c) = ctx.set_cookie.take() {
            resp.append_header(header::SET_COOKIE, c)?;
        }
        if let Some(origin) = ctx.cors_origin.take() {
            resp.insert_header("access-control-allow-origin", origin)?;
            resp.insert_header("access-control-allow-credentials", "true")?;
            resp.append_header("vary", "Origin")?;
        }
        Ok(())
    }

    /// Turns a failure to proxy into the JSON error the SPA expects: 502 when the upstream
    /// cannot be reached, 504 when it is too slow.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        use ErrorType::*;
        let (status, code, message) = match (e.etype(), e.esource()) {
            (HTTPStatus(s), _) => (*s, "http_error", "the request failed"),
            (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => (
                504,
                "upstream_timeout",
                "the upstream did not answer in time",
            ),
            (_, ErrorSource::Upstream) => (
                502,
                "upstream_unavailable",
                "the upstream could not be reached",
            ),
            (
                ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError
                | ConnectProxyFailure | TLSHandshakeFailure,
                _,
            ) => (
                502,
                "upstream_unavailable",
                "the upstream could not be reached",
            ),
            (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => {
                (0, "client_closed", "")
            }
            (_, ErrorSource::Downstream) => (400, "bad_request", "the request could not be read"),
            _ => (
                500,
                "internal_error",
                "bffgate failed to handle the request",
            ),
        };
        if let Some(route) = &ctx.route {
            if status == 502 || status == 504 {
                let kind = if status == 504 {
                    "timeout"
                } else {
                    "unavailable"
                };
                metrics::UPSTREAM_ERRORS
                    .with_label_values(&[route.config.name.as_str(), kind])
                    .inc();
            }
        }
        ctx.error_code = Some(code);
        if status > 0 && session.response_written().is_none() {
            let body = LocalResponse::error(status, code, message);
            if let Err(err) = body.send(session).await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    /// Metrics and the optional access log.
    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = ctx.started.elapsed();
        let route = ctx.label();
        metrics::REQUESTS
            .with_label_values(&[route, status_label(status)])
            .inc();
        match &ctx.route {
            Some(r) => r.duration.observe(elapsed.as_secs_f64()),
            None => metrics::REQUEST_DURATION
                .with_label_values(&[route])
                .observe(elapsed.as_secs_f64()),
        }
        if ctx.snapshot.access_log {
            let req = session.req_header();
            tracing::info!(
                target: "bffgate::access",
                method = %req.method,
                path = %String::from_utf8_lossy(req.uri.path().as_bytes()),
                route,
                status,
                code = ctx.error_code.unwrap_or(""),
                micros = elapsed.as_micros() as u64,
                error = e.map(|e| e.etype().as_str()).unwrap_or(""),
            );
        }
    }

    /// What Pingora writes into its own error logs: method, path and route, never headers.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {} route={}", req.method, req.uri.path(), ctx.label())
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
