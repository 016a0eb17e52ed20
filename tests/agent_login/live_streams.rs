//! Revocation reaches live connections: a session's WebSocket and event stream close
//! within a second of `/bff/logout` or a back-channel logout, on every instance sharing
//! the store (Redis pub/sub) and in-process with the memory store, while other sessions'
//! streams stay open.

use super::*;
use crate::common::sessions::Sessions;
use crate::common::streams::{SseServer, WsEcho};
use crate::common::watch::{self, Watched};

/// The deadline the issue sets: a revoked session's streams close within a second.
const DEADLINE: Duration = Duration::from_secs(1);

/// The streaming upstreams and the routes to them (`/ws` and `/events`, session required).
struct Upstreams {
    _ws: WsEcho,
    _sse: SseServer,
    routes: Vec<String>,
}

async fn upstreams() -> Upstreams {
    let ws = WsEcho::start().await;
    // An event every 100 ms for far longer than a test runs.
    let sse = SseServer::start(100_000, Duration::from_millis(100)).await;
    let routes = vec![
        route("ws", "/ws", &ws.url(), "required", ""),
        route("events", "/events", &sse.url(), "required", ""),
    ];
    Upstreams {
        _ws: ws,
        _sse: sse,
        routes,
    }
}

/// Asserts every stream of `revoked` ended within [`DEADLINE`] of `requested` (when the
/// revocation was sent, so its own round trip counts against the deadline), and prints how
/// long each took; returns the longest.
async fn closed_in_time(revoked: &[&Watched], requested: Instant, gw: &Gateway) -> Duration {
    let mut longest = Duration::ZERO;
    for s in revoked {
        let ended = s
            .wait_end(DEADLINE + Duration::from_secs(2))
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{} still open 3 s after the revocation\n{}",
                    s.what(),
                    gw.log()
                )
            });
        let took = ended.saturating_duration_since(requested);
        eprintln!("{} closed {took:?} after the revocation was sent", s.what());
        assert!(took <= DEADLINE, "{} closed only after {took:?}", s.what());
        longest = longest.max(took);
    }
    longest
}

/// Asserts none of `open` has ended.
fn still_open(open: &[&Watched]) {
    for s in open {
        assert!(
            s.ended().is_none(),
            "{} of another session closed",
            s.what()
        );
    }
}

/// Two instances over one Redis: alice's WebSocket on A and event stream on B, bob's
/// streams on both. `revoke` ends alice's session; alice's streams close within a second
/// on both instances, bob's stay open.
async fn two_instances(revoke: impl AsyncFnOnce(&Env, &str)) {
    let up = upstreams().await;
    let env = Env::start(Setup {
        redis: true,
        routes: up.routes.clone(),
        ..Setup::default()
    })
    .await;
    let b = Gateway::start(&env.template).await;
    b.wait_ready(READY).await;
    let alice = env.login(&OpBrowser::new()).await.cookie;
    let sessions = Sessions::open(env.gw.config_path()).await;
    let (_bob, bob) = sessions.login("bob", "at-bob").await;

    let alice_ws = watch::websocket(env.gw.addr(), "/ws/chat", &alice).await;
    let alice_sse = watch::event_stream(b.addr(), "/events/feed", &alice).await;
    let bob_ws = watch::websocket(b.addr(), "/ws/chat", &bob).await;
    let bob_sse = watch::event_stream(env.gw.addr(), "/events/feed", &bob).await;
    // Every stream is registered once its response header passed; give the last a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(metric_value(&env.gw, "bff_live_connections").await, 2.0);
    assert_eq!(metric_value(&b, "bff_live_connections").await, 2.0);

    let requested = Instant::now();
    revoke(&env, &alice).await;
    eprintln!("revocation answered after {:?}", requested.elapsed());
    closed_in_time(&[&alice_ws, &alice_sse], requested, &env.gw).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_open(&[&bob_ws, &bob_sse]);
    expect_echo(
        client()
            .get(b.url("/api/x"))
            .header("cookie", session_cookie(&bob))
            .send()
            .await
            .expect("bob's request"),
    )
    .await;
    for gw in [&env.gw, &b] {
        let revoked = "bff_live_connections_closed_total{reason=\"revoked\"}";
        assert_eq!(metric_value(gw, revoked).await, 1.0, "{}", gw.log());
        assert_eq!(metric_value(gw, "bff_live_connections").await, 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_sessions_streams_on_every_instance() {
    two_instances(async |env: &Env, alice: &str| {
        let resp = env
            .post("/bff/logout", Some(alice), Some(APP_ORIGIN), true)
            .await;
        assert_eq!(resp.status(), 200);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_closes_the_sessions_streams_on_every_instance() {
    two_instances(async |env: &Env, _alice: &str| {
        let answer = env.provider.backchannel_logout("alice").await;
        assert_eq!(answer["sent"], 1, "{answer}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_logout_closes_the_sessions_streams_in_process() {
    let up = upstreams().await;
    let env = Env::start(Setup {
        routes: up.routes.clone(),
        ..Setup::default()
    })
    .await;
    let one = env.login(&OpBrowser::new()).await.cookie;
    let two = env.login(&OpBrowser::new()).await.cookie;
    let one_ws = watch::websocket(env.gw.addr(), "/ws/chat", &one).await;
    let one_sse = watch::event_stream(env.gw.addr(), "/events/feed", &one).await;
    let two_ws = watch::websocket(env.gw.addr(), "/ws/chat", &two).await;

    let requested = Instant::now();
    let resp = env
        .post("/bff/logout", Some(&one), Some(APP_ORIGIN), true)
        .await;
    assert_eq!(resp.status(), 200);
    closed_in_time(&[&one_ws, &one_sse], requested, &env.gw).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    still_open(&[&two_ws]);
    assert_eq!(
        metric_value(
            &env.gw,
            "bff_live_connections_closed_total{reason=\"revoked\"}"
        )
        .await,
        2.0
    );
}
