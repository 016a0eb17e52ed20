//! Identity to upstreams, declared per route: claim headers set from the session (never
//! from the client) and claim requirements (`403 forbidden` with the JSON contract).

use crate::common::sessions::Sessions;
use crate::common::{
    client, expect_echo, expect_error, session_cookie, EchoServer, Gateway, GatewayConfig,
    RedisProcess,
};
use bffgate::session::{Tokens, UserSession};

async fn login(sessions: &Sessions, sub: &str, groups: &[&str]) -> String {
    let tokens = Tokens {
        access_token: format!("at-{sub}"),
        refresh_token: None,
        id_token: None,
        access_expires_at: None,
        refresh_expires_at: None,
    };
    let s = UserSession::new(
        sub.into(),
        None,
        serde_json::json!({ "sub": sub, "groups": groups, "email": format!("{sub}@example.com") }),
        tokens,
        &sessions.cfg.session,
    );
    sessions.store.create(&s).await.unwrap();
    sessions.seal(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_headers_come_from_the_session_and_requirements_hold() {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let up = echo.url();
    let routes = vec![
        format!(
            "{{ name: admin, match: {{ path_prefix: /admin }}, upstreams: [\"{up}\"], auth: required, \
             identity: {{ headers: {{ X-User-Sub: sub, X-User-Groups: groups, X-User-Email: email }}, \
             require: {{ groups: [admin] }} }} }}"
        ),
        format!(
            "{{ name: me, match: {{ path_prefix: /me }}, upstreams: [\"{up}\"], auth: optional, \
             identity: {{ headers: {{ X-User-Sub: sub }} }} }}"
        ),
    ];
    let gw = Gateway::start(&GatewayConfig::new(routes).redis(redis.url()).yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let alice = login(&sessions, "alice", &["dev", "admin"]).await;
    let bob = login(&sessions, "bob", &["dev"]).await;
    let c = client();

    // Alice is an admin: the upstream learns who she is from bffgate, whatever she claims.
    let resp = c
        .get(gw.url("/admin/x"))
        .header("cookie", session_cookie(&alice))
        .header("x-user-sub", "mallory")
        .header("x-user-groups", "root")
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.header("x-user-sub").as_deref(), Some("alice"));
    assert_eq!(seen.header("x-user-groups").as_deref(), Some("dev,admin"));
    assert_eq!(
        seen.header("x-user-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer at-alice")
    );

    // Bob is not: 403 with the JSON contract, nothing reaches the upstream.
    let resp = c
        .get(gw.url("/admin/x"))
        .header("cookie", session_cookie(&bob))
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "forbidden").await;
    // Nobody logged in: 401, as for any route that needs a session.
    expect_error(
        c.get(gw.url("/admin/x")).send().await.unwrap(),
        401,
        "no_session",
    )
    .await;

    // An anonymous request on an optional route: the forged header is dropped, none is set.
    let resp = c
        .get(gw.url("/me"))
        .header("x-user-sub", "mallory")
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.header("x-user-sub"), None, "{seen:?}");
    let resp = c
        .get(gw.url("/me"))
        .header("cookie", session_cookie(&bob))
        .header("x-user-sub", "mallory")
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_echo(resp).await.header("x-user-sub").as_deref(),
        Some("bob")
    );
}
