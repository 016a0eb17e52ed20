//! A session's long-lived streams end with it when it expires: at its absolute end on
//! every instance, and once it went idle in the store, while a session still in use keeps
//! its stream.

use std::time::{Duration, Instant};

use crate::common::scrape::{metric, scrape};
use crate::common::sessions::Sessions;
use crate::common::streams::{SseServer, WsEcho};
use crate::common::watch;
use crate::common::{client, now_f64, route, session_cookie, Gateway, GatewayConfig, RedisProcess};

/// A gateway template over `redis` with `/ws` and `/events` routes and these lifetimes.
fn template(redis: String, ws: &WsEcho, sse: &SseServer, idle: &str, absolute: &str) -> String {
    GatewayConfig::new(vec![
        route("ws", "/ws", &ws.url(), "required", ""),
        route("events", "/events", &sse.url(), "required", ""),
    ])
    .redis(redis)
    .yaml()
    .replace(
        "idle_timeout: 30m\n  absolute_timeout: 12h",
        &format!("idle_timeout: {idle}\n  absolute_timeout: {absolute}"),
    )
}

/// The `bff_live_connections_closed_total{reason="expired"}` of a gateway.
async fn expired_closes(gw: &Gateway) -> f64 {
    metric(
        &scrape(gw).await,
        "bff_live_connections_closed_total{reason=\"expired\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_close_at_the_sessions_absolute_end_on_every_instance() {
    let redis = RedisProcess::start();
    let ws = WsEcho::start().await;
    let sse = SseServer::start(100_000, Duration::from_millis(100)).await;
    let template = template(redis.url(), &ws, &sse, "3s", "3s");
    assert!(template.contains("absolute_timeout: 3s"), "{template}");
    let a = Gateway::start(&template).await;
    let b = Gateway::start(&template).await;
    let sessions = Sessions::open(a.config_path()).await;
    let (session, sealed) = sessions.login("ada", "at-ada").await;
    // The absolute end as an instant of this process's clock.
    let end = Instant::now() + Duration::from_secs_f64(session.expires_at as f64 - now_f64());
    let on_a = watch::websocket(a.addr(), "/ws/chat", &sealed).await;
    let on_b = watch::event_stream(b.addr(), "/events/feed", &sealed).await;

    for s in [&on_a, &on_b] {
        let ended = s
            .wait_end(Duration::from_secs(6))
            .await
            .unwrap_or_else(|| panic!("{} still open 6 s on\n{}", s.what(), a.log()));
        assert!(
            ended + Duration::from_millis(50) >= end,
            "{} closed {:?} before the session's end",
            s.what(),
            end - ended
        );
        let late = ended.saturating_duration_since(end);
        eprintln!(
            "{} closed {late:?} after the session's absolute end",
            s.what()
        );
        assert!(
            late <= Duration::from_secs(1),
            "{} closed {late:?} late",
            s.what()
        );
    }
    assert_eq!(expired_closes(&a).await, 1.0);
    assert_eq!(expired_closes(&b).await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_closes_once_its_session_idled_out_and_a_used_session_keeps_its_own() {
    let redis = RedisProcess::start();
    let ws = WsEcho::start().await;
    let sse = SseServer::start(100_000, Duration::from_millis(100)).await;
    let gw = Gateway::start(&template(redis.url(), &ws, &sse, "2s", "1h")).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_idle, idle) = sessions.login("ida", "at-ida").await;
    let (_busy, busy) = sessions.login("bea", "at-bea").await;

    let opened = Instant::now();
    let idle_ws = watch::websocket(gw.addr(), "/ws/chat", &idle).await;
    let busy_ws = watch::websocket(gw.addr(), "/ws/chat", &busy).await;
    // bea keeps using her session (each request restarts its idle timeout); ida does not.
    let http = client();
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let resp = http
            .get(gw.url("/events/keepalive"))
            .header("cookie", session_cookie(&busy))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("bea's request");
        assert_eq!(resp.status(), 200);
        drop(resp);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let ended = idle_ws
        .ended()
        .unwrap_or_else(|| panic!("ida's stream still open 5 s on\n{}", gw.log()));
    // The session left the store 2 s after its last use (the handshake).
    let after = ended.saturating_duration_since(opened + Duration::from_secs(2));
    eprintln!("idle session's websocket closed {after:?} after its idle timeout");
    assert!(
        ended >= opened + Duration::from_secs(2) - Duration::from_millis(50),
        "closed before the idle timeout"
    );
    assert!(
        after <= Duration::from_secs(1),
        "closed {after:?} after the idle timeout"
    );
    assert!(
        busy_ws.ended().is_none(),
        "a session in use lost its stream"
    );
    assert_eq!(expired_closes(&gw).await, 1.0);
}
