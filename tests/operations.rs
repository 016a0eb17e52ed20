//! Operations under real conditions: hot reload under load (file watcher and SIGHUP), a
//! graceful upgrade (SIGQUIT + `--upgrade`) under load, TLS termination with HTTP/2 and
//! HTTPS upstreams, WebSockets through an authenticated route, server-sent events streamed
//! as they come, streams ending with their session's expiry, and upstream health (active
//! checks and passive ejection).
//!
//! Every test runs real processes on loopback: the `bffgate` binary, in-process upstreams,
//! and redis-server where sessions are needed. Load loops (`common::load`) are bounded in
//! count and time.

mod graceful_upgrade;
mod live_expiry;
mod reload;
mod sse;
mod tls;
mod upstream_health;
mod websocket;
