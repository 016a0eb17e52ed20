//! The integration tests: one test binary (one link of bffgate's dependencies), one module
//! per feature, and the helpers they share in [`common`].
//!
//! A feature on its own: `cargo nextest run -E 'test(/^refresh::/)'`, or
//! `cargo nextest run --test integration operations::`.

// Cargo.toml denies both for every target; clippy.toml lets test functions use them, and
// the helpers here are test code as much.
#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test code: a failed expectation is a failed test"
)]

mod common;

mod access_log;
mod admin_api;
mod agent_login;
mod browser_e2e;
mod client_auth;
mod config_check;
mod deploy;
mod dpop;
mod edge_routing;
mod edge_trust;
mod error_pages;
mod harness;
mod identity;
mod key_rotation;
mod metrics;
mod metrics_catalogue;
mod operations;
mod otel;
mod provider_smoke;
mod provider_tls;
mod proxy_auth;
mod proxy_paths;
mod rate_limits;
mod readme;
mod redis_causes;
mod refresh;
mod revocation_bus;
mod route_tokens;
mod session_cache;
mod session_store;
mod store_outage;
mod upstream_dns;
