//! Per-route tokens against the real `oidc-provider` and two bffgate instances sharing a
//! real Redis: routes with different resources get tokens with different `aud`, obtained by
//! token exchange (RFC 8693) once per session and resource however many requests race on
//! both instances; a client-credentials route shares the client's own token across
//! sessions; `token: none` forwards no `Authorization` at all.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::agent::{jwt_payload, OidcBlock};
use crate::common::provider::{stat, Provider, ProviderSettings, USER};
use crate::common::{
    client, expect_echo, login_alice, route, session_cookie, EchoServer, Gateway, GatewayConfig,
    RedisProcess,
};

const ORDERS: &str = "https://orders.test";
const BILLING: &str = "https://billing.test";
const REPORTS: &str = "https://reports.test";
const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// One instance's config: five routes over `upstream`, one per token policy.
fn template(provider: &Provider, upstream: &str, redis: &str) -> String {
    let routes = vec![
        route(
            "orders",
            "/orders",
            upstream,
            "required",
            &format!("token: {{resource: \"{ORDERS}\", scopes: [orders:read]}}"),
        ),
        route(
            "billing",
            "/billing",
            upstream,
            "required",
            &format!("token: {{resource: \"{BILLING}\"}}"),
        ),
        route(
            "reports",
            "/reports",
            upstream,
            "required",
            &format!("token: {{grant: client, resource: \"{REPORTS}\"}}"),
        ),
        route("user", "/api", upstream, "required", ""),
        route("anon", "/public", upstream, "none", "token: none"),
    ];
    OidcBlock::of(provider, "")
        .append_to(&GatewayConfig::new(routes).redis(redis.to_string()).yaml())
}

/// The bearer tokens the upstream saw for `n` concurrent requests to `path`, alternating
/// between the instances.
async fn storm(gws: &[&Gateway], path: &str, cookie: &str, n: usize) -> Vec<String> {
    let http = client();
    let mut tasks = Vec::new();
    for i in 0..n {
        let req = http
            .get(gws[i % gws.len()].url(path))
            .header("cookie", session_cookie(cookie))
            .send();
        tasks.push(tokio::spawn(req));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        let echoed = expect_echo(t.await.unwrap().unwrap()).await;
        let auth = echoed.header("authorization").expect("a bearer upstream");
        tokens.push(auth.strip_prefix("Bearer ").expect("bearer").to_string());
    }
    tokens
}

fn only(tokens: &[String]) -> String {
    let distinct: BTreeSet<&String> = tokens.iter().collect();
    assert_eq!(distinct.len(), 1, "one token for the whole storm");
    tokens[0].clone()
}

fn grants(stats: &Value, grant: &str, resource: &str) -> u64 {
    stat(stats, &["resource_grants", &format!("{grant} {resource}")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_get_tokens_for_their_own_resource_once_per_storm() {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let mut provider = Provider::start(ProviderSettings {
        access_token_ttl: 600,
        extra: json!({ "resource_servers": {
            ORDERS: "orders:read orders:write",
            BILLING: "billing:read",
            REPORTS: "reports:read",
        }}),
        ..Default::default()
    })
    .await;
    let a = Gateway::start(&template(&provider, &echo.url(), &redis.url())).await;
    let b = Gateway::start(&template(&provider, &echo.url(), &redis.url())).await;
    provider
        .update_client(json!({ "redirect_uris": [a.url("/bff/callback"), b.url("/bff/callback")] }))
        .await;
    a.wait_ready(Duration::from_secs(10)).await;
    b.wait_ready(Duration::from_secs(10)).await;
    let cookie = login_alice(&a, &provider).await;
    let both = [&a, &b];

    // The user's own token on a plain route: opaque, as the login issued it.
    let user = only(&storm(&both, "/api/x", &cookie, 4).await);
    assert_eq!(user.split('.').count(), 1, "the user token is opaque");

    // 30 concurrent requests over both instances, per resource: one exchange each, a JWT
    // for that resource and the same user, with only the scopes the route asked for.
    let orders = only(&storm(&both, "/orders/1", &cookie, 30).await);
    let billing = only(&storm(&both, "/billing/1", &cookie, 30).await);
    let stats = provider.stats().await;
    assert_eq!(grants(&stats, EXCHANGE, ORDERS), 1, "{stats}");
    assert_eq!(grants(&stats, EXCHANGE, BILLING), 1, "{stats}");
    let (o, bl) = (jwt_payload(&orders), jwt_payload(&billing));
    assert_eq!(o["aud"], ORDERS, "{o}");
    assert_eq!(bl["aud"], BILLING, "{bl}");
    assert_eq!(
        (o["sub"].as_str(), bl["sub"].as_str()),
        (Some(USER), Some(USER))
    );
    assert_eq!(o["scope"], "orders:read", "{o}");
    assert_ne!(orders, user);

    // Kept in the session: later requests on either instance make no call.
    assert_eq!(
        storm(&both, "/orders/2", &cookie, 6).await,
        vec![orders.clone(); 6]
    );
    assert_eq!(grants(&provider.stats().await, EXCHANGE, ORDERS), 1);

    // A client-credentials route: the client's own token, at most one call per instance,
    // the same for another session.
    let reports = storm(&both, "/reports/1", &cookie, 20).await;
    let other = login_alice(&b, &provider).await;
    let reports_other = storm(&both, "/reports/1", &other, 20).await;
    let calls = grants(&provider.stats().await, "client_credentials", REPORTS);
    assert!(
        (1..=2).contains(&calls),
        "{calls} client-credentials calls for 2 instances"
    );
    let distinct: BTreeSet<&String> = reports.iter().chain(&reports_other).collect();
    assert!(distinct.len() <= 2, "one client token per instance");
    let r = jwt_payload(&reports[0]);
    assert_eq!(r["aud"], REPORTS, "{r}");
    assert_ne!(r["sub"], USER, "a client token names no user: {r}");

    // The other session exchanges for itself: its own user, its own token.
    let orders_other = only(&storm(&both, "/orders/1", &other, 10).await);
    assert_ne!(orders_other, orders);
    assert_eq!(grants(&provider.stats().await, EXCHANGE, ORDERS), 2);

    // `token: none` forwards no Authorization, even with a session cookie and a client's
    // own header.
    let echoed = expect_echo(
        client()
            .get(a.url("/public/x"))
            .header("cookie", session_cookie(&cookie))
            .header("authorization", "Bearer forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(echoed.header("authorization"), None);
}
