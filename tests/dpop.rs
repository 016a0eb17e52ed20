//! DPoP (RFC 9449) end to end, against the real `oidc-provider` requiring DPoP nonces and a
//! resource server that verifies every proof: each session gets its own key, the provider
//! binds the tokens to it (at login and refresh, after the nonce dance), every proxied
//! request carries a fresh proof for its method and URL with `ath` and the upstream's
//! nonce, a replayed proof is refused by the upstream, and a route may still ask for
//! bearer.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::agent::OidcBlock;
use crate::common::dpop_upstream::DpopUpstream;
use crate::common::provider::{stat, Provider, ProviderSettings, USER};
use crate::common::{
    client, echo_get, login_alice, route, session_cookie, EchoServer, Gateway, GatewayConfig,
    APP_ORIGIN, CSRF_HEADER,
};

fn template(provider: &Provider, api: &str, bearer: &str) -> String {
    let routes = vec![
        route("api", "/api", api, "required", ""),
        route("legacy", "/legacy", bearer, "required", "dpop: false"),
    ];
    OidcBlock::of(provider, "  dpop: true\n").append_to(&GatewayConfig::new(routes).yaml())
}

async fn call(gw: &Gateway, method: &str, path: &str, cookie: &str, body: &str) -> (u16, Value) {
    let resp = client()
        .request(method.parse().unwrap(), gw.url(path))
        .header("cookie", session_cookie(cookie))
        .header(CSRF_HEADER, "1")
        .header("origin", APP_ORIGIN)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_sessions_prove_possession_to_the_provider_and_every_upstream() {
    // The upstream demands its nonce and changes it after every 3 accepted requests.
    let upstream = DpopUpstream::start(Some(3)).await;
    let echo = EchoServer::start().await;
    let mut provider = Provider::start(ProviderSettings {
        extra: json!({ "dpop_require_nonce": true }),
        ..Default::default()
    })
    .await;
    let gw = Gateway::start(&template(&provider, &upstream.url(), &echo.url())).await;
    provider
        .update_client(json!({ "redirect_uris": [gw.url("/bff/callback")] }))
        .await;
    gw.wait_ready(Duration::from_secs(10)).await;
    let cookie = login_alice(&gw, &provider).await;

    // The code exchange carried a proof (after the provider's nonce challenge).
    let stats = provider.stats().await;
    assert_eq!(stat(&stats, &["dpop_grants"]), 1, "{stats}");
    assert!(
        stat(&stats, &["grant_errors", "use_dpop_nonce"]) >= 1,
        "{stats}"
    );

    // Ten requests, POST with a body and GET, through three upstream nonce changes: each
    // proof verifies for its own method and URL, no request fails. The first (a POST) meets
    // the upstream's nonce challenge and is sent again, body and all; the later nonces come
    // with the answers and are used without a challenge.
    let mut jkts = Vec::new();
    for i in 0..10 {
        let (method, body) = if i % 2 == 0 {
            ("POST", "payload")
        } else {
            ("GET", "")
        };
        let (status, answer) =
            call(&gw, method, &format!("/api/items/{i}?q=1"), &cookie, body).await;
        assert_eq!(
            status,
            200,
            "{answer}\n{:?}\n{}",
            upstream.outcomes(),
            gw.log()
        );
        assert_eq!(answer["path"], format!("/api/items/{i}"));
        assert_eq!(answer["body"], body);
        jkts.push(answer["jkt"].as_str().unwrap().to_string());
    }
    assert!(jkts.iter().all(|j| j == &jkts[0]), "one key per session");
    let outcomes = upstream.outcomes();
    let ok = outcomes.iter().filter(|o| *o == "ok").count();
    let challenged = outcomes.iter().filter(|o| *o == "use_dpop_nonce").count();
    assert_eq!(ok, 10, "{outcomes:?}");
    assert_eq!(challenged, 1, "{outcomes:?}");
    assert_eq!(outcomes[..2], ["use_dpop_nonce", "ok"], "{outcomes:?}");

    // The provider bound the access token to that very key.
    let (auth, proof) = upstream.last().expect("an accepted request");
    let token = auth.strip_prefix("DPoP ").expect("DPoP scheme");
    let introspected = provider.introspect(token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(
        introspected["cnf"]["jkt"],
        jkts[0].as_str(),
        "{introspected}"
    );

    // A proof seen once is refused when replayed, even with its own token.
    let replay = client()
        .get(format!("{}/api/items/9", upstream.url()))
        .header("authorization", &auth)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert!(upstream.outcomes().last().is_some_and(|o| o != "ok"));

    // Refresh and userinfo prove possession to the provider too.
    let (status, body) = call(&gw, "POST", "/bff/refresh", &cookie, "").await;
    assert_eq!(status, 200, "{body}\n{}", gw.log());
    let (status, info) = call(&gw, "GET", "/bff/userinfo", &cookie, "").await;
    assert_eq!(status, 200, "{info}\n{}", gw.log());
    assert_eq!(info["sub"], USER);
    let (status, answer) = call(&gw, "GET", "/api/after-refresh", &cookie, "").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["jkt"],
        jkts[0].as_str(),
        "the refreshed token is bound to the same key"
    );
    assert_eq!(stat(&provider.stats().await, &["dpop_grants"]), 2);

    // A route that asks for bearer gets the token as such, with no proof.
    let echoed = echo_get(&gw, "/legacy/x", &cookie).await;
    assert!(echoed
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    assert_eq!(echoed.header("dpop"), None);
}
