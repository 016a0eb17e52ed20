//! A WebSocket through an authenticated route: the session cookie becomes a bearer token on
//! the handshake, frames are relayed both ways, and refused handshakes (CSRF, no session)
//! never reach the upstream.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::common::sessions::Sessions;
use crate::common::streams::WsEcho;
use crate::common::{
    route, session_cookie, Gateway, GatewayConfig, RedisProcess, APP_ORIGIN, COOKIE,
};

/// A handshake request to `url` with the given headers.
fn ws_request(
    url: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// Expects the handshake to be refused with `status` and JSON `code`.
async fn ws_refused(url: &str, headers: &[(&str, &str)], status: u16, code: &str) {
    match tokio_tungstenite::connect_async(ws_request(url, headers)).await {
        Ok(_) => panic!("handshake with {headers:?} was accepted; expected {status} {code}"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            assert_eq!(resp.status().as_u16(), status, "{headers:?}: body {body}");
            let json: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            assert_eq!(json["code"], code, "{body}");
        }
        Err(e) => panic!("handshake with {headers:?}: unexpected error {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_authenticated_route() {
    let redis = RedisProcess::start();
    let ws = WsEcho::start().await;
    let cfg =
        GatewayConfig::new(vec![route("ws", "/ws", &ws.url(), "required", "")]).redis(redis.url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, sealed) = sessions.login("ws-user", "at-ws-1").await;
    let url = format!("ws://{}/ws/chat?room=1", gw.addr());
    let cookie = format!("theme=dark; {}", session_cookie(&sealed));

    let (mut conn, resp) = tokio_tungstenite::connect_async(ws_request(
        &url,
        &[("cookie", &cookie), ("origin", APP_ORIGIN)],
    ))
    .await
    .expect("handshake through the gateway");
    assert_eq!(resp.status().as_u16(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        conn.send(Message::text(text.clone())).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .expect("echo within 5 s")
            .expect("stream open")
            .expect("frame");
        assert_eq!(echoed, Message::text(text));
    }
    conn.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let echoed = tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("echo within 5 s")
        .expect("stream open")
        .expect("frame");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    conn.close(None).await.expect("close");

    let handshakes = ws.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    let seen = &handshakes[0];
    let values = |name: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("authorization"), vec!["Bearer at-ws-1"]);
    for c in values("cookie") {
        assert!(
            !c.contains(COOKIE) && !c.contains(&sealed),
            "session cookie reached the upstream: {c}"
        );
    }
    assert_eq!(values("cookie"), vec!["theme=dark"]);
    assert_eq!(values("upgrade"), vec!["websocket"]);

    // Refused handshakes never reach the upstream.
    ws_refused(&url, &[("cookie", &cookie)], 403, "csrf_violation").await;
    ws_refused(
        &url,
        &[("cookie", &cookie), ("origin", "http://evil.test")],
        403,
        "csrf_violation",
    )
    .await;
    ws_refused(&url, &[("origin", APP_ORIGIN)], 401, "no_session").await;
    assert_eq!(
        ws.handshakes().len(),
        1,
        "a refused handshake reached the upstream"
    );
}
