//! The session store seen from outside: a Redis outage and recovery under one running
//! gateway, and a gateway with no Redis configured (the in-memory store).

use std::time::Duration;

use crate::common::sessions::Sessions;
use crate::common::{
    client, eventually, expect_echo, expect_error, route, session_cookie, EchoServer, Gateway,
    GatewayConfig, RedisProcess,
};

async fn status_of(url: &str, cookie: Option<&str>) -> u16 {
    let mut req = client().get(url).timeout(Duration::from_secs(5));
    if let Some(c) = cookie {
        req = req.header("cookie", session_cookie(c));
    }
    match req.send().await {
        Ok(resp) => resp.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_is_503_and_recovers_without_restart() {
    let mut redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let up = echo.url();
    let cfg = GatewayConfig::new(vec![
        route("orders", "/api/orders", &up, "required", ""),
        route("public", "/api/public", &up, "none", ""),
    ])
    .redis(redis.url());
    assert_eq!(cfg.store_timeout, "500ms");
    let mut gw = Gateway::start(&cfg.yaml()).await;
    let pid = gw.pid();
    let sessions = Sessions::open(gw.config_path()).await;
    let (session, cookie) = sessions.login("user-1", "at-outage").await;
    let orders = gw.url("/api/orders/1");
    let readyz = gw.url("/readyz");

    assert_eq!(status_of(&orders, Some(&cookie)).await, 200);
    assert_eq!(status_of(&readyz, None).await, 200);

    redis.stop();

    // Within a few seconds the auth route answers 503 (store timeout is 500 ms).
    let became_503 = eventually(Duration::from_secs(5), || async {
        status_of(&orders, Some(&cookie)).await == 503
    })
    .await;
    assert!(
        became_503,
        "auth route did not turn 503 with Redis down; log:\n{}",
        gw.log()
    );
    let resp = client()
        .get(&orders)
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    expect_error(resp, 503, "session_store_unavailable").await;

    assert!(
        eventually(Duration::from_secs(5), || async {
            status_of(&readyz, None).await == 503
        })
        .await,
        "/readyz stayed ready with Redis down"
    );
    // Routes without sessions and liveness are unaffected.
    let resp = client().get(gw.url("/api/public/x")).send().await.unwrap();
    expect_echo(resp).await;
    assert_eq!(status_of(&gw.url("/healthz"), None).await, 200);

    // Back on the same port, empty: the session is written again, as a new login would.
    redis.restart();
    let recreated = eventually(Duration::from_secs(10), || async {
        sessions.store.create(&session).await.is_ok()
    })
    .await;
    assert!(
        recreated,
        "could not write the session to the restarted Redis"
    );

    let recovered = eventually(Duration::from_secs(10), || async {
        status_of(&orders, Some(&cookie)).await == 200
    })
    .await;
    assert!(
        recovered,
        "auth route did not recover after Redis came back; log:\n{}",
        gw.log()
    );
    let resp = client()
        .get(&orders)
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_echo(resp).await.header("authorization").as_deref(),
        Some("Bearer at-outage")
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            status_of(&readyz, None).await == 200
        })
        .await,
        "/readyz did not recover"
    );
    assert_eq!(gw.pid(), pid);
    assert!(gw.is_running(), "the gateway process died");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_without_redis_runs_on_the_memory_store() {
    let echo = EchoServer::start().await;
    let up = echo.url();
    let cfg = GatewayConfig::new(vec![
        route("orders", "/api/orders", &up, "required", ""),
        route("public", "/api/public", &up, "none", ""),
    ]);
    assert!(cfg.redis.is_none());
    assert!(!cfg.yaml().contains("store:"));
    let gw = Gateway::start(&cfg.yaml()).await;

    assert_eq!(status_of(&gw.url("/readyz"), None).await, 200);
    assert_eq!(status_of(&gw.url("/healthz"), None).await, 200);
    let resp = client()
        .get(gw.url("/api/public/hello?x=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.path, "/api/public/hello?x=1");
    let resp = client().get(gw.url("/api/orders/1")).send().await.unwrap();
    expect_error(resp, 401, "no_session").await;
    let resp = client().get(gw.url("/nowhere")).send().await.unwrap();
    expect_error(resp, 404, "route_not_found").await;
}
