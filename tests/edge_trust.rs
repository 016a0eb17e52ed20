//! What bffgate vouches for comes from bffgate, against the real binary: every upstream
//! attempt (a retry on a pooled connection that turned out closed included) carries the
//! bearer and the header policy; forwarding headers are bffgate's, believed only from
//! `server.trusted_proxies`; an upstream cannot plant bffgate's cookies nor grant CORS on
//! routes with auth.

mod upstreams;

use std::collections::BTreeMap;
use std::time::Duration;

use upstreams::{FlakyUpstream, PlantingUpstream};

use crate::common::sessions::Sessions;
use crate::common::{
    client, eventually, expect_echo, refusing_port, route, session_cookie, EchoServer, Gateway,
    GatewayConfig, RedisProcess, APP_ORIGIN,
};

/// Every forwarding header a client might forge, with a forged value.
const FORGED: [(&str, &str); 14] = [
    ("x-forwarded-for", "6.6.6.6"),
    ("forwarded", "for=6.6.6.6;host=evil.example;proto=https"),
    ("x-real-ip", "6.6.6.6"),
    ("x-original-url", "/admin"),
    ("x-rewrite-url", "/admin"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-port", "443"),
    ("x-forwarded-prefix", "/admin"),
    ("x-forwarded-server", "evil.example"),
    ("true-client-ip", "6.6.6.6"),
    ("cf-connecting-ip", "6.6.6.6"),
    ("x-client-ip", "6.6.6.6"),
    ("x-cluster-client-ip", "6.6.6.6"),
];

// ---------------------------------------------------------------------------------------
// A retried upstream request keeps its credentials

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_a_closed_pooled_connection_carries_the_bearer_and_the_header_policy() {
    let redis = RedisProcess::start();
    let upstream = FlakyUpstream::start().await;
    let cfg = GatewayConfig::new(vec![route(
        "api",
        "/api",
        &format!("http://{}", upstream.addr),
        "required",
        "",
    )])
    .redis(redis.url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, cookie) = sessions.login("user-1", "at-retry").await;

    for n in 0..2 {
        let mut req = client()
            .get(gw.url(&format!("/api/{n}")))
            .header("cookie", format!("theme=dark; {}", session_cookie(&cookie)))
            .header("authorization", "Bearer forged-by-the-client");
        for (k, v) in FORGED {
            req = req.header(k, v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "request {n}: {}", gw.log());
    }
    let seen = upstream.seen();
    // Request 1 on connection 0; request 2 on the pooled connection 0 (closed unanswered);
    // its retry on a new connection.
    let conns: Vec<usize> = seen.iter().map(|s| s.conn).collect();
    assert_eq!(
        conns,
        [0, 0, 1],
        "the pooled connection was not reused: {seen:?}"
    );
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(
            s.all("authorization"),
            ["Bearer at-retry"],
            "attempt {i}: {s:?}"
        );
        assert_eq!(s.all("cookie"), ["theme=dark"], "attempt {i}: {s:?}");
        assert_eq!(
            s.all("x-forwarded-for"),
            ["127.0.0.1"],
            "attempt {i}: {s:?}"
        );
        assert_eq!(s.all("x-forwarded-proto"), ["http"], "attempt {i}: {s:?}");
        for (forged, _) in FORGED {
            if !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&forged) {
                assert!(
                    s.all(forged).is_empty(),
                    "attempt {i} carries {forged}: {s:?}"
                );
            }
        }
        assert!(
            !s.headers.iter().any(|(_, v)| v.contains(&cookie)),
            "attempt {i} carries the sealed cookie"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_the_next_upstream_after_a_refused_connect_carries_the_bearer() {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let (_held, dead) = refusing_port();
    let route = format!(
        "{{ name: api, match: {{ path_prefix: \"/api\" }}, upstreams: [\"http://127.0.0.1:{dead}\", \"{}\"], auth: required }}",
        echo.url()
    );
    let gw = Gateway::start(&GatewayConfig::new(vec![route]).redis(redis.url()).yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, cookie) = sessions.login("user-1", "at-next").await;
    // Round robin: one of the first two requests starts on the refusing upstream.
    for n in 0..2 {
        let resp = client()
            .get(gw.url(&format!("/api/{n}")))
            .header("cookie", session_cookie(&cookie))
            .header("x-real-ip", "6.6.6.6")
            .send()
            .await
            .unwrap();
        let seen = expect_echo(resp).await;
        assert_eq!(
            seen.header("authorization").as_deref(),
            Some("Bearer at-next")
        );
        assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
        assert!(seen.header_all("x-real-ip").is_empty());
        assert!(seen.header_all("cookie").is_empty());
    }
}

// ---------------------------------------------------------------------------------------
// Forwarding headers come from bffgate

/// A gateway on the echo upstream (`/pub`, auth none) with `server:` lines added.
async fn forwarding_gateway(echo: &EchoServer, server_lines: &str) -> Gateway {
    let yaml = GatewayConfig::new(vec![route("pub", "/pub", &echo.url(), "none", "")])
        .yaml()
        .replacen("server:\n", &format!("server:\n{server_lines}"), 1)
        .replace("access_log: false", "access_log: true");
    Gateway::start(&yaml).await
}

async fn forwarded(
    gw: &Gateway,
    host: Option<&str>,
    headers: &[(&str, &str)],
) -> crate::common::Echoed {
    let mut req = client().get(gw.url("/pub/x"));
    if let Some(h) = host {
        req = req.header("host", h);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    expect_echo(req.send().await.unwrap()).await
}

/// Whether the gateway's access log names `client` (the line is written after the
/// response, so it may lag it a little).
async fn logs_client(gw: &Gateway, client: &str) -> bool {
    let needle = format!("client={client} ");
    eventually(Duration::from_secs(5), || async {
        gw.log().contains(&needle)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_cannot_name_the_client_the_host_or_the_url() {
    let echo = EchoServer::start().await;
    // No trusted proxies (the default), and proxies that do not include this peer.
    for lines in ["", "  trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\"]\n"] {
        let gw = forwarding_gateway(&echo, lines).await;
        let seen = forwarded(&gw, Some("api.example.com:8443"), &FORGED).await;
        assert_eq!(
            seen.header_all("x-forwarded-for"),
            ["127.0.0.1"],
            "{seen:?}"
        );
        assert_eq!(seen.header_all("x-forwarded-proto"), ["http"]);
        assert_eq!(seen.header_all("x-forwarded-host"), ["api.example.com"]);
        for (name, _) in FORGED {
            if !["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"].contains(&name) {
                assert!(seen.header_all(name).is_empty(), "{name} passed: {seen:?}");
            }
        }
        // A host that is not a host name is not vouched for: it does not get upstream at
        // all (`400 invalid_host`, before routing).
        let resp = client()
            .get(gw.url("/pub/x"))
            .header("host", "evil.example/../x")
            .send()
            .await
            .unwrap();
        crate::common::expect_error(resp, 400, "invalid_host").await;
        // The access log names the peer, not what it claimed.
        assert!(logs_client(&gw, "127.0.0.1").await, "{}", gw.log());
        assert!(!gw.log().contains("client=6.6.6.6"), "{}", gw.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_names_the_client_right_to_left_or_in_its_header() {
    let echo = EchoServer::start().await;
    let gw = forwarding_gateway(&echo, "  trusted_proxies: [127.0.0.0/8]\n").await;
    let seen = forwarded(
        &gw,
        None,
        &[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.4, 127.0.0.9"),
            ("x-forwarded-proto", "https"),
            ("x-real-ip", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["198.51.100.4"],
        "{seen:?}"
    );
    assert_eq!(seen.header_all("x-forwarded-proto"), ["https"]);
    assert!(seen.header_all("x-real-ip").is_empty());
    // A garbage hop stops the walk at the last address a trusted hop vouched for.
    let seen = forwarded(&gw, None, &[("x-forwarded-for", "6.6.6.6, not-an-ip")]).await;
    assert_eq!(seen.header_all("x-forwarded-for"), ["127.0.0.1"]);
    assert!(logs_client(&gw, "198.51.100.4").await, "{}", gw.log());

    let gw = forwarding_gateway(
        &echo,
        "  trusted_proxies: [127.0.0.1]\n  client_ip_header: CF-Connecting-IP\n",
    )
    .await;
    let seen = forwarded(
        &gw,
        None,
        &[
            ("cf-connecting-ip", "203.0.113.7"),
            ("x-forwarded-for", "6.6.6.6"),
        ],
    )
    .await;
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        ["203.0.113.7"],
        "{seen:?}"
    );
    assert!(seen.header_all("cf-connecting-ip").is_empty());
    assert!(logs_client(&gw, "203.0.113.7").await, "{}", gw.log());
}

// ---------------------------------------------------------------------------------------
// Upstream Set-Cookie and CORS

/// Every way an upstream might try to set one of bffgate's cookies (the login cookie is
/// `bff_session_login` here: the test cookie is not `Secure`).
const PLANTED: [&str; 12] = [
    "bff_session=planted; Path=/",
    "bff_session =planted",
    " bff_session\t= planted",
    "__Host-bff_session=planted; Path=/; Secure",
    "__SECURE-bff_session=planted; Secure",
    "bff_session_login=planted; Path=/bff",
    "__Host-bff_session_login=planted; Path=/; Secure",
    "=bff_session=planted",
    " = bff_session_login=planted",
    "bff_session",
    "bff_session=; Max-Age=0",
    "bff_session_login =; Max-Age=0",
];

/// Cookies of the upstream's own, which pass.
const THEIRS: [&str; 4] = [
    "theme=dark; Path=/",
    "bff_sessionx=1",
    "BFF_SESSION=1",
    "xbff_session_login=1",
];

fn header_all(resp: &reqwest::Response, name: &str) -> Vec<String> {
    resp.headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_cannot_plant_our_cookies_nor_grant_cors_on_routes_with_auth() {
    let redis = RedisProcess::start();
    let upstream = PlantingUpstream::start().await;
    let url = format!("http://{}", upstream.addr);
    let cfg = GatewayConfig::new(vec![
        route("api", "/api", &url, "required", ""),
        route("maybe", "/maybe", &url, "optional", ""),
        route("pub", "/pub", &url, "none", ""),
    ])
    .redis(redis.url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, cookie) = sessions.login("user-1", "at-1").await;

    let mut by_path = BTreeMap::new();
    for path in ["/api/x", "/maybe/x", "/pub/x"] {
        for origin in ["https://evil.example", APP_ORIGIN] {
            let resp = client()
                .get(gw.url(path))
                .header("cookie", session_cookie(&cookie))
                .header("origin", origin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "{path}: {}", gw.log());
            // Every planted cookie is gone on every route; the upstream's own pass.
            let set = header_all(&resp, "set-cookie");
            assert_eq!(set, THEIRS, "{path} from {origin}");
            by_path.insert((path, origin), resp);
        }
    }
    for path in ["/api/x", "/maybe/x"] {
        // A foreign origin gets no CORS grant at all.
        let resp = &by_path[&(path, "https://evil.example")];
        let cors: Vec<_> = resp
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("access-control-"))
            .collect();
        assert!(cors.is_empty(), "{path}: {cors:?}");
        // A trusted origin gets bffgate's grant, and none of the upstream's extras.
        let resp = &by_path[&(path, APP_ORIGIN)];
        assert_eq!(
            header_all(resp, "access-control-allow-origin"),
            [APP_ORIGIN]
        );
        assert_eq!(
            header_all(resp, "access-control-allow-credentials"),
            ["true"]
        );
        assert!(header_all(resp, "access-control-expose-headers").is_empty());
        assert!(header_all(resp, "access-control-allow-methods").is_empty());
    }
    // On a route without auth the upstream owns its CORS (documented): it passes.
    let resp = &by_path[&("/pub/x", "https://evil.example")];
    assert_eq!(
        header_all(resp, "access-control-allow-origin"),
        ["https://evil.example"]
    );
}
