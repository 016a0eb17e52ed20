//! bffgate: an OAuth token-handler (backend-for-frontend) edge proxy on Pingora.
//!
//! The browser holds only an AES-256-GCM sealed, `HttpOnly` session cookie. bffgate keeps
//! the tokens server-side and forwards API calls with `Authorization: Bearer`.
//!
//! # Layout
//! - [`config`]: the YAML schema, `${ENV}`/`file:` secrets, validation with key paths.
//! - [`cookie`]: the session cookie's attributes and its sealing key ring. Never touches a store.
//! - [`session`]: sessions, their at-rest encryption, the Redis and in-memory stores.
//! - [`proxy`]: the Pingora `ProxyHttp` phases: routing, CSRF, session lookup, forwarding.
//! - [`metrics`]: every Prometheus metric.
//! - [`app`]: assembles the Pingora server; used by `main` and tests.
//! - [`reload`]: configuration hot reload (SIGHUP, file changes).
//! - [`health`]: active upstream health checks.
//! - [`drain`]: stop keeping connections alive during a graceful upgrade or shutdown.
//! - [`logging`], [`random`]: process logging; OS randomness.

#![warn(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod app;
pub mod config;
pub mod cookie;
pub mod drain;
pub mod health;
pub mod logging;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod random;
pub mod reload;
pub mod session;
