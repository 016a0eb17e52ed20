//! Rate limits against the real binary: two bffgate instances on one redis-server spend
//! one budget per session and per client address (the limit is spent across both, while
//! another session on the same address is served); limits reload; the limiter fails open
//! when Redis is gone; the memory store limits by the address bffgate trusts; `--check`
//! refuses a bad limit. The agent endpoints' limit and the memory store's per-session
//! limit need real logins: `agent_login::rate`.
//!
//! Rates are per hour so no budget refills while a test runs: outcomes do not depend on
//! how fast the requests go.

use std::time::Duration;

use crate::common::scrape::{metric, scrape};
use crate::common::sessions::Sessions;
use crate::common::{
    check_file, client, eventually, expect_error, expect_limited, route, session_cookie,
    write_config, EchoServer, Gateway, GatewayConfig, RedisProcess,
};

/// `api` (auth required): 10 per hour per session, all at once. `pub` (auth none): 3 per
/// hour per client address.
fn routes(upstream: &str, per_session: &str) -> Vec<String> {
    vec![
        route(
            "api",
            "/api",
            upstream,
            "required",
            &format!("rate_limit: {{ {per_session} }}"),
        ),
        route(
            "pub",
            "/pub",
            upstream,
            "none",
            "rate_limit: { per_client_ip: 3/h, burst: 3 }",
        ),
    ]
}

const SLOW: &str = "per_session: 10/h, burst: 10";
const FAST: &str = "per_session: 100/s, burst: 100";

async fn get(gw: &Gateway, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut req = client().get(gw.url(path));
    if let Some(c) = cookie {
        req = req.header("cookie", session_cookie(c));
    }
    req.send().await.expect("request to bffgate")
}

async fn value(gw: &Gateway, series: &str) -> Option<f64> {
    metric(&scrape(gw).await, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_each_budget_and_limits_reload() {
    let mut redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let yaml = GatewayConfig::new(routes(&echo.url(), SLOW))
        .redis(redis.url())
        .yaml();
    let a = Gateway::start(&yaml).await;
    let b = Gateway::start(&yaml).await;
    let both = [&a, &b];
    let sessions = Sessions::open(a.config_path()).await;
    let (_, heavy) = sessions.login("user-heavy", "at-heavy").await;
    let (_, other) = sessions.login("user-other", "at-other").await;

    // Before any refusal every configured limit has a zero series; unconfigured ones none.
    for gw in both {
        let text = scrape(gw).await;
        assert_eq!(
            metric(
                &text,
                r#"bff_rate_limited_total{kind="session",route="api"}"#
            ),
            Some(0.0),
            "{text}"
        );
        assert_eq!(
            metric(
                &text,
                r#"bff_rate_limited_total{kind="client_ip",route="pub"}"#
            ),
            Some(0.0)
        );
        assert_eq!(
            metric(
                &text,
                r#"bff_rate_limited_total{kind="client_ip",route="api"}"#
            ),
            None
        );
    }

    // Ten requests of one session, alternating instances, spend its budget of ten...
    for n in 0..10 {
        let resp = get(both[n % 2], "/api/x", Some(&heavy)).await;
        assert_eq!(resp.status(), 200, "request {n}");
    }
    // ... so the eleventh is refused on either instance (10/h: within 360 s again).
    for gw in both {
        expect_limited(get(gw, "/api/x", Some(&heavy)).await, 360).await;
    }
    // Another session from the same address is served on both.
    for gw in both {
        assert_eq!(get(gw, "/api/x", Some(&other)).await.status(), 200);
    }

    // An anonymous route, per client address: three across both instances, then refused.
    for n in 0..3 {
        assert_eq!(get(both[n % 2], "/pub/x", None).await.status(), 200);
    }
    for gw in both {
        expect_limited(get(gw, "/pub/x", None).await, 1200).await;
    }
    for gw in both {
        assert_eq!(
            value(gw, r#"bff_rate_limited_total{kind="session",route="api"}"#).await,
            Some(1.0)
        );
        assert_eq!(
            value(
                gw,
                r#"bff_rate_limited_total{kind="client_ip",route="pub"}"#
            )
            .await,
            Some(1.0)
        );
    }

    // Raising the limit by rewriting the files serves the spent session again, with no
    // restart.
    for gw in both {
        let path = gw.config_path();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.contains(SLOW));
        std::fs::write(path, text.replace(SLOW, FAST)).unwrap();
    }
    for gw in both {
        let served = eventually(Duration::from_secs(5), || async {
            get(gw, "/api/x", Some(&heavy)).await.status() == 200
        })
        .await;
        assert!(served, "still limited after the reload:\n{}", gw.log());
    }

    // Redis gone: the limiter fails open (the spent anonymous budget no longer refuses),
    // and counts the failed check; a session route cannot read its session anyway.
    redis.stop();
    for gw in both {
        assert_eq!(get(gw, "/pub/x", None).await.status(), 200, "{}", gw.log());
        assert!(
            value(gw, r#"bff_store_errors_total{op="rate"}"#)
                .await
                .unwrap_or(0.0)
                >= 1.0
        );
        expect_error(
            get(gw, "/api/x", Some(&other)).await,
            503,
            "session_store_unavailable",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_limits_each_trusted_client_address() {
    let echo = EchoServer::start().await;
    let yaml = GatewayConfig::new(routes(&echo.url(), SLOW))
        .yaml()
        .replacen("server:\n", "server:\n  trusted_proxies: [127.0.0.1]\n", 1);
    let gw = Gateway::start(&yaml).await;
    let from = |ip: &'static str| {
        let url = gw.url("/pub/x");
        async move {
            client()
                .get(url)
                .header("x-forwarded-for", ip)
                .send()
                .await
                .expect("request to bffgate")
        }
    };
    for _ in 0..3 {
        assert_eq!(from("192.0.2.1").await.status(), 200);
    }
    expect_limited(from("192.0.2.1").await, 1200).await;
    // Another client behind the same trusted proxy has its own budget.
    assert_eq!(from("192.0.2.2").await.status(), 200);
    assert_eq!(
        value(
            &gw,
            r#"bff_rate_limited_total{kind="client_ip",route="pub"}"#
        )
        .await,
        Some(1.0)
    );
}

#[test]
fn check_refuses_a_bad_limit_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut routes = routes("http://127.0.0.1:9", "per_session: 10/d");
    routes.push(route(
        "anon",
        "/anon",
        "http://127.0.0.1:9",
        "none",
        "rate_limit: { per_session: 1/s }",
    ));
    let yaml = GatewayConfig::new(routes).yaml().replacen(
        "  csrf_header:",
        "  rate_limit: { per_client_ip: 0/s }\n  csrf_header:",
        1,
    );
    let path = write_config(dir.path(), "bff.yaml", &yaml);
    let (status, out) = check_file(&path, &[]);
    assert!(!status.success(), "{out}");
    for line in [
        "bff.yaml: agent.rate_limit.per_client_ip: `0` is not a whole number of at least 1",
        "bff.yaml: routes[0].rate_limit.per_session: `d` is not a rate unit",
        "bff.yaml: routes[2].rate_limit.per_session: an `auth: none` route reads no session",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
}
