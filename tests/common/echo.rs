//! The echo upstream: an HTTP/1.1 server that answers every request `200` with a JSON
//! description of what it received, so tests can assert on exactly what bffgate forwarded.
//!
//! Body: `{"method": "GET", "path": "<raw request target, query included>",
//! "headers": {"name": ["value", ...]}, "body": "<utf-8 body>"}`. Header names are
//! lower-case (as hyper gives them); values keep their order. A path containing `/slow`
//! waits 10 s before answering (for upstream timeout tests). The `x-echo-server` response
//! header names the address the request arrived at (which upstream served it).
//!
//! Shared by the integration tests (`tests/common`) and `examples/echo_upstream.rs` (used
//! by the benchmark and the demo), so it depends only on hyper, tokio and serde_json and
//! logs nothing per request.

// `examples/echo_upstream.rs` includes this file for `serve` alone; the tests use it all.
#![cfg_attr(not(test), allow(dead_code))]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a `/slow` request waits before its answer.
pub const SLOW_DELAY: Duration = Duration::from_secs(10);

/// An echo server running on the current tokio runtime; stops when dropped.
pub struct EchoServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start() -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind echo upstream");
        let addr = listener.local_addr().expect("echo local addr");
        let task = tokio::spawn(serve(listener));
        EchoServer { addr, task }
    }

    /// Binds `addr` (e.g. `127.0.0.2:PORT`, so two upstreams share a port on different
    /// loopback addresses) and serves in a background task.
    pub async fn start_at(addr: SocketAddr) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener));
        Ok(EchoServer { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, as written in a route's `upstreams`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections forever, each served on its own task (HTTP/1.1, keep-alive).
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // e.g. EMFILE under load: back off a little rather than spin.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |req| echo(req, local.clone())),
                )
                .await;
        });
    }
}

async fn echo(req: Request<Incoming>, local: String) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    // The request target as it came on the wire: hyper keeps the bytes of an origin-form
    // target as they were (no decoding, no normalisation).
    let path = match parts.uri.path_and_query() {
        Some(pq) => pq.as_str().to_owned(),
        None => parts.uri.to_string(),
    };
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    if path.contains("/slow") {
        tokio::time::sleep(SLOW_DELAY).await;
    }
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let bytes = Bytes::from(serde_json::to_vec(&json).unwrap_or_default());
    let response = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-echo-server", local)
        .body(Full::new(bytes))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(response)
}
