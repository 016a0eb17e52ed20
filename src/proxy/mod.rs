//! The edge proxy: Pingora's `ProxyHttp` phases for bffgate.
//!
//! `request_filter` decides everything about a request: it classifies it (health probe,
//! preflight, agent endpoint, API route) and either answers it here or admits it with the
//! token to forward. Later phases only apply that decision; each delegates to a file
//! named for what it does.

mod classify;
mod ctx;
mod dpop;
mod failure;
mod live_conns;
mod log;
mod response;
mod target;
mod upstream;

pub use ctx::RequestCtx;

use crate::config::AuthMode;
use crate::guard::{self, Guard};
use crate::http::{self, AgentEndpoints, ApiError, LocalResponse};
use crate::live::{LiveConnections, LiveHandle, Route};
use async_trait::async_trait;
use classify::{classify, Probe, Target};
use failure::Failure;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session as HttpSession};
use pingora::{Error, ErrorType, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tracing::Instrument;

/// The bffgate proxy.
pub struct EdgeProxy {
    live: LiveHandle,
    guard: Arc<Guard>,
    agent: Option<Arc<dyn AgentEndpoints>>,
    draining: Arc<AtomicBool>,
    conns: Arc<LiveConnections>,
}

impl EdgeProxy {
    /// A proxy over the live configuration and the request guard, with the OAuth agent when
    /// a provider is configured. `draining` turns keep-alive off (graceful upgrade).
    pub fn new(
        live: LiveHandle,
        guard: Arc<Guard>,
        agent: Option<Arc<dyn AgentEndpoints>>,
        draining: Arc<AtomicBool>,
    ) -> Self {
        EdgeProxy {
            live,
            guard,
            agent,
            draining,
            conns: Arc::default(),
        }
    }

    /// Registers long-lived responses (WebSockets, event streams) in `conns`, where the
    /// revocation service ends them with their session.
    #[must_use]
    pub fn with_live_connections(mut self, conns: Arc<LiveConnections>) -> Self {
        self.conns = conns;
        self
    }

    /// Writes a local answer (with CORS headers for a trusted origin) and records its code.
    async fn answer(
        &self,
        session: &mut HttpSession,
        ctx: &mut RequestCtx,
        outcome: Result<LocalResponse, ApiError>,
    ) -> Result<bool> {
        let mut resp =
            outcome.unwrap_or_else(|e| http::error_response(e, session.req_header(), &ctx.live));
        if let Some(origin) = &ctx.cors_origin {
            http::allow_local(&mut resp, origin);
        }
        ctx.error_code = resp.error.map(ApiError::code);
        resp.headers
            .push((http::REQUEST_ID_HEADER, ctx.request_id.clone()));
        resp.send(session).await?;
        Ok(true)
    }

    /// `/healthz` and `/readyz` (whose body names the upstreams not resolved yet).
    async fn health(&self, probe: Probe) -> Result<LocalResponse, ApiError> {
        if probe == Probe::Alive {
            return Ok(LocalResponse::json(
                200,
                &serde_json::json!({
                    "status": "ok",
                    "version": crate::metrics::VERSION,
                    "commit": crate::metrics::COMMIT,
                }),
            ));
        }
        if let Some(agent) = &self.agent {
            agent.ready()?;
        }
        if let Err(e) = self.guard.store().ping().await {
            tracing::warn!(error = %e, "readiness check: session store unavailable");
            return Err(ApiError::StoreUnavailable);
        }
        // Upstreams whose name has not resolved are named but leave bffgate ready: they fail
        // only their own routes (502), and a not-ready pod would lose every other route too.
        let live = self.live.load();
        let unresolved: Vec<_> = live
            .routes
            .routes()
            .iter()
            .flat_map(|r| {
                r.unresolved()
                    .map(|u| serde_json::json!({"route": r.config.name, "upstream": u.authority()}))
            })
            .collect();
        let body = if unresolved.is_empty() {
            serde_json::json!({"status": "ready"})
        } else {
            serde_json::json!({"status": "ready", "unresolved_upstreams": unresolved})
        };
        Ok(LocalResponse::json(200, &body))
    }

    /// Requests under the agent's base path.
    async fn agent(
        &self,
        session: &mut HttpSession,
        ctx: &mut RequestCtx,
        rest: &str,
    ) -> Result<Result<LocalResponse, ApiError>> {
        ctx.route_label = Some("agent");
        let Some(agent) = &self.agent else {
            return Ok(Err(ApiError::AgentDisabled));
        };
        if let Some(rate) = ctx.live.agent.rate_limit.per_client_ip {
            // Before the endpoint does any store or provider work.
            let limited = self
                .guard
                .limit_client("agent", rate, ctx.client_addr)
                .instrument(ctx.span.clone())
                .await;
            if let Err(e) = limited {
                return Ok(Err(e));
            }
        }
        let live = Arc::clone(&ctx.live);
        let handled = agent
            .handle(session, &live, rest)
            .instrument(ctx.span.clone())
            .await?;
        ctx.route_label = Some(handled.label);
        Ok(handled.outcome)
    }

    /// Admits a request to an API route, or says why not.
    async fn admit(
        &self,
        session: &HttpSession,
        ctx: &mut RequestCtx,
        route: Arc<Route>,
    ) -> Result<(), ApiError> {
        let mode = route.config.auth;
        ctx.route = Some(Arc::clone(&route));
        ctx.span.record("http.route", route.config.name.as_str());
        let limits = route.config.rate_limit;
        if let Some(rate) = limits.per_client_ip {
            self.guard
                .limit_client(&route.config.name, rate, ctx.client_addr)
                .instrument(ctx.span.clone())
                .await?;
        }
        if mode == AuthMode::None {
            return Ok(());
        }
        let admitted = self
            .guard
            .admit(session.req_header(), &ctx.live, &route.config)
            .instrument(ctx.span.clone())
            .await?;
        let identity = &route.config.identity;
        let session = admitted.session;
        if !identity.headers.is_empty() || !identity.require.is_empty() {
            let sub = session.as_ref().map(|s| s.sub.as_str());
            let claims = session
                .as_ref()
                .map_or(&serde_json::Value::Null, |s| &s.claims);
            ctx.identity = guard::apply_identity(identity, sub, claims)?;
        }
        ctx.token = admitted.access_token;
        ctx.dpop = admitted.dpop;
        ctx.set_cookie = admitted.set_cookie;
        // Only the access log names the user: nothing to compute when it is off.
        if ctx.live.access_log {
            ctx.user = session
                .as_ref()
                .and_then(|s| log::user(&s.sub, ctx.live.access_log_user));
        }
        ctx.live_session = session;
        Ok(())
    }
}

fn chosen_route(ctx: &RequestCtx) -> Result<Arc<Route>> {
    ctx.route
        .clone()
        .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route chosen"))
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new(self.live.load_full())
    }

    /// Classifies the request, then answers it here (health, preflight, agent, refusal:
    /// `Ok(true)`) or admits it to its API route (`Ok(false)`, with `ctx.route` and
    /// `ctx.token` set).
    async fn request_filter(
        &self,
        session: &mut HttpSession,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if self.draining.load(Ordering::Relaxed) {
            // Another process is taking over (or this one is stopping): answer with
            // `Connection: close` so the client's next request opens a new connection.
            session.set_keepalive(None);
        }
        ctx.span = crate::telemetry::request_span(session.req_header());
        (ctx.client_addr, ctx.peer_trusted) = http::client_and_trust(session, &ctx.live.forwarding);
        ctx.request_id = http::request_id(session.req_header(), ctx.peer_trusted);
        let target = target::to_origin_form(session.req_header_mut())
            .and_then(|()| classify(session.req_header(), &ctx.live));
        if !matches!(target, Ok(Target::Health(_))) {
            ctx.cors_origin = http::allowed_origin(session.req_header(), &ctx.live.agent)
                .and_then(|o| o.to_str().ok())
                .map(str::to_string);
        }
        let outcome = match target {
            Err(e) => Err(e),
            Ok(Target::Health(probe)) => {
                ctx.route_label = Some("health");
                self.health(probe).await
            }
            Ok(Target::Preflight) => {
                ctx.route_label = Some("preflight");
                http::preflight(session.req_header(), ctx.cors_origin.is_some())
            }
            Ok(Target::Agent(rest)) => self.agent(session, ctx, &rest).await?,
            Ok(Target::Api(route, forwarded_host)) => {
                ctx.forwarded_host = forwarded_host;
                match self.admit(session, ctx, route).await {
                    Ok(()) => return Ok(false),
                    Err(e) => Err(e),
                }
            }
        };
        self.answer(session, ctx, outcome).await
    }

    async fn upstream_peer(
        &self,
        _session: &mut HttpSession,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        let route = chosen_route(ctx)?;
        upstream::peer(&route, ctx)
    }

    /// Takes an upstream that refused the connection out of rotation for a while and
    /// retries on the next one, once per upstream.
    fn fail_to_connect(
        &self,
        _session: &mut HttpSession,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        if let Some(route) = &ctx.route {
            route.mark_down(ctx.upstream_index, upstream::PASSIVE_EJECT_MS);
            if ctx.tries < route.config.upstreams.len() {
                e.set_retry(true);
            }
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut HttpSession,
        upstream_req: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let route = chosen_route(ctx)?;
        ctx.upstream_started = Some(std::time::Instant::now());
        ctx.upstream_span = crate::child_span!(
            &ctx.span,
            "upstream",
            otel.kind = "client",
            upstream.route = route.config.name.as_str(),
            upstream.attempt = ctx.tries
        );
        upstream::rewrite(session, upstream_req, &route, ctx)
    }

    /// Keeps the DPoP nonce an upstream sends, and answers its `use_dpop_nonce` challenge
    /// by sending the request once more (with a fresh proof carrying the nonce) instead of
    /// passing the 401 on.
    async fn upstream_response_filter(
        &self,
        _session: &mut HttpSession,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        dpop::answer_nonce_challenge(resp, ctx)
    }

    /// A DPoP nonce challenge is retried whatever the method (the request never reached
    /// the API, and its body is replayed from Pingora's retry buffer when it fit there);
    /// other failures follow Pingora's rule: idempotent requests on reused connections.
    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut HttpSession,
        e: Box<Error>,
        ctx: &mut RequestCtx,
        client_reused: bool,
    ) -> Box<Error> {
        // Only the nonce challenge above raises a 401 error here, once per request.
        let nonce_retry = ctx.dpop_retried && matches!(e.etype, ErrorType::HTTPStatus(401));
        let mut e = e.more_context(format!("Peer: {peer}"));
        if nonce_retry && !session.as_ref().retry_buffer_truncated() {
            return e;
        }
        if !session.req_header().method.is_idempotent() || session.as_ref().retry_buffer_truncated()
        {
            e.set_retry(false);
        } else {
            e.retry.decide_reuse(client_reused);
        }
        e
    }

    /// Remembers the upstream socket of a request with a session (see `live_conns`).
    async fn connected_to_upstream(
        &self,
        _session: &mut HttpSession,
        _reused: bool,
        peer: &HttpPeer,
        fd: std::os::unix::io::RawFd,
        _digest: Option<&pingora::protocols::Digest>,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        live_conns::connected(ctx, peer, fd);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut HttpSession,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.upstream_span = tracing::Span::none();
        live_conns::on_response(&self.conns, self.guard.store(), resp, ctx);
        response::apply(resp, ctx)
    }

    /// Releases a long-lived connection's registration when its body ends.
    fn response_body_filter(
        &self,
        _session: &mut HttpSession,
        _body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if end_of_stream {
            live_conns::release(&self.conns, ctx);
        }
        Ok(None)
    }

    /// Turns a failure to proxy into the JSON error the SPA expects.
    async fn fail_to_proxy(
        &self,
        session: &mut HttpSession,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let failure = failure::classify(e);
        if let Some(route) = &ctx.route {
            failure::count(route, failure);
        }
        ctx.error_code = Some(failure.code());
        if let Failure::Answer(err) = failure {
            if session.response_written().is_none() {
                // The connection is not reused after a failed proxy attempt (the request
                // body may be half read): say so, so the client does not send its next
                // request on a connection that is about to close.
                session.set_keepalive(None);
                let resp = http::error_response(err, session.req_header(), &ctx.live);
                if let Err(send) = resp.send(session).await {
                    tracing::debug!(error = %send, "could not send the error response");
                }
            }
        }
        FailToProxy {
            error_code: failure.status(),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut HttpSession, e: Option<&Error>, ctx: &mut RequestCtx) {
        live_conns::release(&self.conns, ctx);
        log::record(session, e, ctx);
        if !ctx.span.is_none() {
            let status = session.response_written().map_or(0, |r| r.status.as_u16());
            ctx.span.record("http.response.status_code", status);
        }
    }

    /// What Pingora writes into its own error logs: method, path and route, never headers.
    fn request_summary(&self, session: &HttpSession, ctx: &RequestCtx) -> String {
        let req = session.req_header();
        format!("{} {} route={}", req.method, req.uri.path(), ctx.label())
    }
}

#[cfg(test)]
mod tests;
