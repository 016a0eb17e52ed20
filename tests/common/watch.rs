//! Long-lived streams opened through a gateway and watched in the background: a WebSocket
//! (to [`super::streams::WsEcho`]) and an event stream (to [`super::streams::SseServer`]),
//! each recording when it ended, so tests can say how soon after a revocation it closed.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use super::{session_cookie, APP_ORIGIN};

/// A stream being read to its end in a background task. Stops reading when dropped.
pub struct Watched {
    what: String,
    ended: Arc<Mutex<Option<Instant>>>,
    task: JoinHandle<()>,
}

impl Watched {
    fn spawn(what: String, read: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        let ended: Arc<Mutex<Option<Instant>>> = Arc::default();
        let mark = Arc::clone(&ended);
        let task = tokio::spawn(async move {
            read.await;
            *mark.lock().expect("end mark") = Some(Instant::now());
        });
        Watched { what, ended, task }
    }

    /// When the stream ended (closed, reset or finished), if it has.
    pub fn ended(&self) -> Option<Instant> {
        *self.ended.lock().expect("end mark")
    }

    /// Waits up to `limit` for the stream to end; when it did.
    pub async fn wait_end(&self, limit: Duration) -> Option<Instant> {
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Some(at) = self.ended() {
                return Some(at);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.ended()
    }

    /// The stream's description (`websocket on 127.0.0.1:…`).
    pub fn what(&self) -> &str {
        &self.what
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Opens a WebSocket to `path` on the gateway at `addr` with the session cookie `sealed`
/// (handshake answered 101) and watches it until it ends.
pub async fn websocket(addr: SocketAddr, path: &str, sealed: &str) -> Watched {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("ws request");
    let headers = req.headers_mut();
    headers.insert(
        "cookie",
        HeaderValue::from_str(&session_cookie(sealed)).expect("cookie"),
    );
    headers.insert("origin", HeaderValue::from_static(APP_ORIGIN));
    let (mut conn, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket handshake through the gateway");
    assert_eq!(resp.status().as_u16(), 101);
    Watched::spawn(format!("websocket on {addr}"), async move {
        while let Some(Ok(msg)) = conn.next().await {
            if msg.is_close() {
                return;
            }
        }
    })
}

/// Opens an event stream at `path` on the gateway at `addr` with the session cookie
/// `sealed` (answered 200 `text/event-stream`, first event received) and watches it until
/// it ends.
pub async fn event_stream(addr: SocketAddr, path: &str, sealed: &str) -> Watched {
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("reqwest client");
    let mut resp = http
        .get(format!("http://{addr}{path}"))
        .header("cookie", session_cookie(sealed))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("event stream request");
    assert_eq!(resp.status(), 200, "event stream through {addr}");
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .expect("first event within 5 s");
    assert!(matches!(first, Ok(Some(_))), "first event: {first:?}");
    Watched::spawn(format!("event stream on {addr}"), async move {
        while let Ok(Some(_)) = resp.chunk().await {}
    })
}
