//! bffgate: an OAuth token-handler (backend-for-frontend) edge proxy on Pingora.
//!
//! The browser holds only an AES-256-GCM sealed, `HttpOnly` session cookie. bffgate keeps
//! the tokens server-side and forwards API calls with `Authorization: Bearer`.
//!
//! # Layout
//! Two halves, [`proxy`] and [`agent`], stand on a shared floor and never import each other.
//!
//! The halves:
//! - [`proxy`]: the Pingora `ProxyHttp` phases: classify a request, admit it through the
//!   guard, choose the upstream, rewrite the request and response, map failures, log.
//! - [`agent`]: the OAuth endpoints the SPA calls (login, callback, session and userinfo,
//!   refresh, logout and back-channel logout, the `private_key_jwt` JWKS), one file per group.
//!
//! The floor:
//! - [`http`]: the HTTP vocabulary: local responses, the one [`http::ApiError`], CORS,
//!   request helpers, and the seam through which the proxy hands requests to the agent.
//! - [`guard`]: who is this, may it go on: CSRF and Origin rules, cookie → session, token
//!   freshness and refresh over a trait the provider client implements, request-rate limits
//!   per session and per client address.
//! - [`live`]: the reloadable runtime configuration (compiled routes with upstream health
//!   and current addresses, cookie policy, agent settings) behind one atomic swap, and the
//!   registry of this process's long-lived connections (WebSockets, event streams) by session.
//! - [`path`]: path rules: segment prefixes and the normalisation lenient upstreams apply.
//! - [`host`]: host names in the one form requests, routes and `server.hosts` compare.
//!
//! Beneath:
//! - [`oidc`]: the OpenID Connect client: discovery and keys, the code flow, token calls,
//!   logout-token validation.
//! - [`session`]: sessions, their at-rest encryption under a rotating key ring, the Redis
//!   and in-memory stores, refresh coordination primitives (locks, grace records), rate
//!   budgets (GCRA), and the revocation bus that announces every deletion to every instance.
//! - [`cookie`]: every cookie bffgate owns, names and attributes in one place; sealing.
//! - [`config`]: the YAML schema, loading, one checker per section, every default.
//! - [`metrics`]: every Prometheus metric.
//! - [`random`]: OS randomness; [`jose`]: bffgate's own signing key (`private_key_jwt`);
//!   [`dpop`]: the sessions' DPoP keys and proofs.
//!
//! Around them:
//! - [`app`]: wiring only: assembles the Pingora server; used by `main` and tests.
//! - [`admin`]: the admin API on its own listener (list and revoke a user's sessions, an
//!   audit line per call) and the `bffgate admin` client.
//! - [`service`]: background services: config reload, upstream name resolution, upstream
//!   health checks, gauges, the at-rest key census, drain, closing live connections of
//!   revoked or expired sessions.
//! - [`logging`]: process logging set-up; [`telemetry`]: OpenTelemetry traces (the OTLP
//!   exporter, trace-context propagation, a request's spans).

pub mod admin;
pub mod agent;
pub mod app;
pub mod config;
pub mod cookie;
pub mod dpop;
pub mod guard;
pub mod host;
pub mod http;
pub mod jose;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod path;
pub mod proxy;
pub mod random;
pub mod service;
pub mod session;
pub mod telemetry;
