//! Baseline for the hot-path benchmark: the smallest Pingora proxy that forwards every
//! request to one upstream, with nothing else on the path (no routing, no cookies, no
//! session store, no metrics).
//!
//! ```text
//! cargo run --release --example passthrough -- LISTEN_ADDR UPSTREAM_ADDR [THREADS] [RUN_DIR]
//! ```
//!
//! `UPSTREAM_ADDR` is an `ip:port` resolved once at start. `THREADS` (default 1) matches
//! bffgate's `server.threads` in the bench config; `RUN_DIR` (default the system temp
//! dir) holds the pid file and upgrade socket so several instances do not collide.
//! `PASSTHROUGH_WORK_STEALING=false` runs Pingora's no-steal runtime (one single-threaded
//! runtime per thread) instead of its default work-stealing one.
//! SIGINT stops it at once. Used by `bench/run.sh`; see `bench/README.md`.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a dev tool: it stops at the first error"
)]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use std::path::PathBuf;

struct Passthrough {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn usage() -> ! {
    eprintln!("usage: passthrough LISTEN_ADDR UPSTREAM_ADDR [THREADS] [RUN_DIR]");
    std::process::exit(2)
}

/// Runs the passthrough (also the entry of `passthrough_mimalloc`, the same program with
/// bffgate's allocator).
pub fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 || args.len() > 4 {
        usage();
    }
    let listen = args[0].clone();
    let upstream: SocketAddr = args[1].parse().unwrap_or_else(|_| usage());
    let threads: usize = match args.get(2) {
        Some(t) => t.parse().unwrap_or_else(|_| usage()),
        None => 1,
    };
    let run_dir = args
        .get(3)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);

    let work_stealing = std::env::var("PASSTHROUGH_WORK_STEALING").map_or(true, |v| v != "false");
    let conf = ServerConf {
        threads,
        work_stealing,
        pid_file: run_dir
            .join(format!("passthrough-{}.pid", std::process::id()))
            .to_string_lossy()
            .into_owned(),
        upgrade_sock: run_dir
            .join(format!("passthrough-{}.sock", std::process::id()))
            .to_string_lossy()
            .into_owned(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);

    eprintln!(
        "passthrough: {listen} -> {upstream} ({threads} thread(s), work stealing {work_stealing})"
    );
    server.run_forever()
}
