//! Routing and forwarding without sessions: exact path and query, strip_prefix, header
//! policy, the local error answers (404, 405, 400), upstream failures (502, 504) and
//! `/healthz`. These routes are `auth: none` on the in-memory store, so no Redis is needed.

use std::time::{Duration, Instant};

use crate::common::{
    client, closed_port, content_type, expect_echo, expect_error, raw_request, route, EchoServer,
    Echoed, Gateway, GatewayConfig,
};

async fn gateway(echo: &EchoServer, extra_routes: Vec<String>) -> Gateway {
    let up = echo.url();
    let mut routes = vec![
        route("orders", "/api/orders", &up, "none", "strip_prefix: /api"),
        route("svc", "/svc", &up, "none", ""),
        route(
            "headers",
            "/hdr",
            &up,
            "none",
            "headers: { remove: [x-internal], add: { x-from: bffgate } }",
        ),
        format!(
            "{{ name: readonly, match: {{ path_prefix: /ro, methods: [GET, HEAD] }}, upstreams: [\"{up}\"], auth: none }}"
        ),
    ];
    routes.extend(extra_routes);
    Gateway::start(&GatewayConfig::new(routes).yaml()).await
}

const ODD_TAIL: &str = "/a%20b/%E2%9C%93?q=1%2B1&x=%2F&empty=&dup=1&dup=2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_query_reach_upstream_byte_for_byte_after_strip_prefix() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;

    let resp = client()
        .get(gw.url(&format!("/api/orders{ODD_TAIL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.path, format!("/orders{ODD_TAIL}"));

    // The bare prefix, and a query on it.
    let resp = client().get(gw.url("/api/orders")).send().await.unwrap();
    assert_eq!(expect_echo(resp).await.path, "/orders");
    let resp = client()
        .get(gw.url("/api/orders?page=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.path, "/orders?page=2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_and_query_untouched_without_strip_prefix() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    let resp = client()
        .get(gw.url(&format!("/svc{ODD_TAIL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.path, format!("/svc{ODD_TAIL}"));

    // Same bytes on the wire, not through a URL library.
    let (status, body) = raw_request(gw.addr(), "GET", &format!("/svc{ODD_TAIL}"), &[]);
    assert_eq!(status, 200, "{body}");
    let seen: Echoed = serde_json::from_str(body.trim()).expect("echo JSON");
    assert_eq!(seen.path, format!("/svc{ODD_TAIL}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_match_whole_segments_only() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    let resp = client().get(gw.url("/api/ordersx")).send().await.unwrap();
    expect_error(resp, 404, "route_not_found").await;
    let resp = client().get(gw.url("/svcx/1")).send().await.unwrap();
    expect_error(resp, 404, "route_not_found").await;
    let resp = client().get(gw.url("/svc/")).send().await.unwrap();
    assert_eq!(expect_echo(resp).await.path, "/svc/");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_404() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    for path in ["/", "/nope", "/api", "/api/other/1"] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        expect_error(resp, 404, "route_not_found").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_outside_route_methods_is_405() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    let resp = client().get(gw.url("/ro/1")).send().await.unwrap();
    assert_eq!(expect_echo(resp).await.method, "GET");
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let resp = client()
            .request(method, gw.url("/ro/1"))
            .send()
            .await
            .unwrap();
        expect_error(resp, 405, "method_not_allowed").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_are_invalid_path() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    // A URL library would resolve these before sending; a raw request keeps them.
    for target in ["/svc/../api/orders", "/svc/./x", "/api/orders/../../svc"] {
        let (status, body) = raw_request(gw.addr(), "GET", target, &[]);
        assert_eq!(status, 400, "{target}: {body}");
        let body: serde_json::Value = serde_json::from_str(body.trim())
            .unwrap_or_else(|e| panic!("{target}: not JSON ({e}): {body}"));
        assert_eq!(body["code"], "invalid_path", "{target}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_header_policy_removes_and_adds() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    let resp = client()
        .get(gw.url("/hdr/1"))
        .header("x-internal", "secret")
        .header("x-from", "client")
        .header("x-kept", "yes")
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.header("x-internal"), None);
    assert_eq!(seen.header_all("x-from"), vec!["bffgate".to_owned()]);
    assert_eq!(seen.header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_upstream_is_502() {
    let echo = EchoServer::start().await;
    let down = format!("http://127.0.0.1:{}", closed_port());
    let gw = gateway(
        &echo,
        vec![route(
            "down",
            "/down",
            &down,
            "none",
            "timeouts: { connect: 1s }",
        )],
    )
    .await;
    let c = client();
    let resp = c.get(gw.url("/down/x")).send().await.unwrap();
    // The connection is not reused after a failed attempt, and the answer says so.
    assert_eq!(resp.headers()["connection"], "close");
    expect_error(resp, 502, "upstream_unavailable").await;
    // The gateway itself is fine, also for the same client right after.
    let resp = c.get(gw.url("/svc/ok")).send().await.unwrap();
    expect_echo(resp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_upstream_is_504_after_read_timeout() {
    let echo = EchoServer::start().await;
    let gw = gateway(
        &echo,
        vec![route(
            "hang",
            "/hang",
            &echo.url(),
            "none",
            "timeouts: { read: 1s }",
        )],
    )
    .await;
    let started = Instant::now();
    let resp = client().get(gw.url("/hang/slow")).send().await.unwrap();
    let elapsed = started.elapsed();
    expect_error(resp, 504, "upstream_timeout").await;
    // Correctness bound: the 1 s read timeout fired, not the echo's 10 s answer.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
    assert!(
        elapsed >= Duration::from_millis(900),
        "answered before the timeout: {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_200_json() {
    let echo = EchoServer::start().await;
    let gw = gateway(&echo, vec![]).await;
    let resp = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let content_type = content_type(&resp);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: serde_json::Value = resp.json().await.expect("healthz JSON");
    assert!(body.is_object(), "{body}");
}
