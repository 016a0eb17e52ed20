//! The misbehaving upstreams of the edge tests: one that closes a pooled connection under
//! the next request, one that plants cookies and grants CORS to anyone.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{PLANTED, THEIRS};

/// One request head as the flaky upstream read it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Which accepted connection (0 = the first).
    pub conn: usize,
    /// Header names (lower-case) and values, in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// An HTTP/1.1 upstream that keeps its first connection alive after the first answer, then
/// closes it when the second request arrives on it, unanswered: the pooled connection
/// "turns out closed" and Pingora retries on a new one. Other connections answer `200 {}`.
pub struct FlakyUpstream {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl FlakyUpstream {
    pub async fn start() -> FlakyUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            for conn in 0..16 {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(Self::serve(conn, stream, Arc::clone(&log)));
            }
        });
        FlakyUpstream { addr, seen, task }
    }

    async fn serve(conn: usize, mut stream: TcpStream, log: Arc<Mutex<Vec<Seen>>>) {
        let mut buf = Vec::new();
        for nth in 1..=16 {
            let head = loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head: Vec<u8> = buf.drain(..end + 4).collect();
                    break head;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let text = String::from_utf8_lossy(&head).into_owned();
            let headers = text
                .split("\r\n")
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            log.lock().unwrap().push(Seen { conn, headers });
            if conn == 0 && nth == 2 {
                return; // closed under the pooled request, unanswered
            }
            let answer =
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FlakyUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream that sets all of [`PLANTED`] and [`THEIRS`] and answers CORS for whatever
/// `Origin` it is sent, with credentials.
pub struct PlantingUpstream {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PlantingUpstream {
    pub async fn start() -> PlantingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(Self::answer))
                        .await;
                });
            }
        });
        PlantingUpstream { addr, task }
    }

    async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let mut resp = Response::builder().status(200);
        for c in PLANTED.iter().chain(THEIRS.iter()) {
            resp = resp.header("set-cookie", *c);
        }
        if let Some(origin) = req.headers().get("origin") {
            resp = resp
                .header("access-control-allow-origin", origin)
                .header("access-control-allow-credentials", "true")
                .header("access-control-expose-headers", "x-internal")
                .header("access-control-allow-methods", "DELETE");
        }
        Ok(resp.body(Full::new(Bytes::from_static(b"{}"))).unwrap())
    }
}

impl Drop for PlantingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
