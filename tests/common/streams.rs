//! Streaming upstreams for the operations tests: a WebSocket echo server that records the
//! handshake headers it saw, and a server-sent-events server that sends a few events
//! spaced out in time and records when it sent each one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::StreamBody;
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};

/// Header `(name, value)` pairs of one request, names lower-case, in order.
pub type Headers = Vec<(String, String)>;

/// A WebSocket echo upstream: every text or binary message is sent back as it came.
/// Stops when dropped.
pub struct WsEcho {
    addr: SocketAddr,
    handshakes: Arc<Mutex<Vec<Headers>>>,
    task: JoinHandle<()>,
}

impl WsEcho {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start() -> WsEcho {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind websocket upstream");
        let addr = listener.local_addr().expect("local addr");
        let handshakes: Arc<Mutex<Vec<Headers>>> = Arc::default();
        let seen = Arc::clone(&handshakes);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    // The callback's signature is tungstenite's.
                    #[allow(clippy::result_large_err)]
                    let record =
                        |req: &WsRequest, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (
                                        k.as_str().to_owned(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            seen.lock().expect("handshake log").push(headers);
                            Ok(resp)
                        };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await
                    else {
                        return;
                    };
                    while let Some(Ok(msg)) = ws.next().await {
                        if msg.is_close() {
                            return;
                        }
                        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        WsEcho {
            addr,
            handshakes,
            task,
        }
    }

    /// `http://127.0.0.1:PORT`, as written in a route's `upstreams`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The headers of every handshake accepted so far.
    pub fn handshakes(&self) -> Vec<Headers> {
        self.handshakes.lock().expect("handshake log").clone()
    }
}

impl Drop for WsEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A server-sent-events upstream: every request gets `200 text/event-stream` (chunked) and
/// `count` events, the first at once and the others `gap` apart, then the end of the body.
/// Stops when dropped.
pub struct SseServer {
    addr: SocketAddr,
    sent: Arc<Mutex<Vec<Instant>>>,
    task: JoinHandle<()>,
}

impl SseServer {
    /// Binds `127.0.0.1:0` and serves in a background task.
    pub async fn start(count: usize, gap: Duration) -> SseServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind sse upstream");
        let addr = listener.local_addr().expect("local addr");
        let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let log = Arc::clone(&sent);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let service = service_fn(move |_req: Request<Incoming>| {
                        let log = Arc::clone(&log);
                        async move {
                            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(count.max(1));
                            tokio::spawn(async move {
                                for i in 0..count {
                                    if i > 0 {
                                        tokio::time::sleep(gap).await;
                                    }
                                    let event =
                                        format!("id: {i}\nevent: tick\ndata: {{\"n\": {i}}}\n\n");
                                    log.lock().expect("send log").push(Instant::now());
                                    if tx.send(Bytes::from(event)).await.is_err() {
                                        return;
                                    }
                                }
                            });
                            let body = futures_util::stream::unfold(rx, |mut rx| async move {
                                rx.recv()
                                    .await
                                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
                            });
                            let resp = Response::builder()
                                .status(200)
                                .header("content-type", "text/event-stream")
                                .header("cache-control", "no-cache")
                                .body(StreamBody::new(body))
                                .expect("sse response");
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        SseServer { addr, sent, task }
    }

    /// `http://127.0.0.1:PORT`, as written in a route's `upstreams`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When each event was handed to the connection, across all requests, in order.
    pub fn sent(&self) -> Vec<Instant> {
        self.sent.lock().expect("send log").clone()
    }
}

impl Drop for SseServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
