//! Upstream host names resolved in the background, against a DNS server the test controls
//! (`common::dns`): a name that does not resolve at start-up leaves its route answering
//! 502 `upstream_unavailable`, `/readyz` naming it and `bff_upstream_healthy` at 0; once
//! the name resolves, requests reach that address; when its address changes, they follow;
//! when it stops resolving, the last good address is kept. `--check` reports resolution
//! apart from the config's validity, and `--no-resolve` skips it. A reload adding a route
//! whose name does not resolve is applied, and the route serves once it resolves.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::scrape::{parse, scrape};
use crate::common::{
    bffgate_command, client, eventually, expect_error, free_port, get_json, route, EchoServer,
    Gateway, GatewayConfig,
};

const NAME: &str = "api.bffgate.test";

/// Two echo upstreams on one port, at 127.0.0.2 and 127.0.0.3.
async fn two_upstreams() -> (EchoServer, EchoServer, u16) {
    for _ in 0..20 {
        let port = free_port();
        let Ok(a) = EchoServer::start_at(SocketAddr::from(([127, 0, 0, 2], port))).await else {
            continue;
        };
        if let Ok(b) = EchoServer::start_at(SocketAddr::from(([127, 0, 0, 3], port))).await {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// A gateway config whose `api` route goes to `http://NAME:port`, resolved through `dns`
/// with short refresh intervals.
fn config(dns: SocketAddr, port: u16) -> String {
    let routes = vec![route(
        "api",
        "/api",
        &format!("http://{NAME}:{port}"),
        "none",
        "",
    )];
    GatewayConfig::new(routes).yaml().replace(
        "server:\n",
        &format!(
            "server:\n  dns: {{nameservers: [\"{dns}\"], refresh_min: 200ms, refresh_max: 1s}}\n"
        ),
    )
}

/// The `bff_upstream_healthy` value of the api route's upstream, if published.
async fn healthy(gw: &Gateway, upstream: &str) -> Option<f64> {
    parse(&scrape(gw).await)
        .into_iter()
        .find(|s| {
            s.name == "bff_upstream_healthy"
                && s.labels.get("route").map(String::as_str) == Some("api")
                && s.labels.get("upstream").map(String::as_str) == Some(upstream)
        })
        .map(|s| s.value)
}

/// Which echo upstream served `GET /api/x`, or the status when it failed.
async fn served_by(gw: &Gateway) -> Result<String, u16> {
    let resp = client()
        .get(gw.url("/api/x"))
        .send()
        .await
        .expect("request");
    if resp.status() != 200 {
        return Err(resp.status().as_u16());
    }
    Ok(resp
        .headers()
        .get("x-echo-server")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_name_that_resolves_later_and_moves_is_followed() {
    let dns = DnsServer::start().await;
    let (a, b, port) = two_upstreams().await;
    let upstream = format!("{NAME}:{port}");
    let gw = Gateway::start(&config(dns.addr(), port)).await;

    // Not resolvable yet: the route answers the JSON error, readiness names it, gauge 0.
    assert!(
        eventually(Duration::from_secs(5), || async { dns.queries() > 0 }).await,
        "bffgate never asked the DNS server; log:\n{}",
        gw.log()
    );
    let resp = client().get(gw.url("/api/x")).send().await.unwrap();
    expect_error(resp, 502, "upstream_unavailable").await;
    let ready = client().get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(
        body["unresolved_upstreams"],
        serde_json::json!([{"route": "api", "upstream": upstream}]),
        "{body}"
    );
    assert!(
        eventually(Duration::from_secs(3), || async {
            healthy(&gw, &upstream).await == Some(0.0)
        })
        .await,
        "bff_upstream_healthy is not 0 for the unresolved upstream"
    );

    // The name starts resolving: requests reach the first upstream within the interval.
    dns.set(NAME, &[Ipv4Addr::new(127, 0, 0, 2)]);
    let first = a.addr().to_string();
    assert!(
        eventually(Duration::from_secs(5), || async {
            served_by(&gw).await.as_deref() == Ok(first.as_str())
        })
        .await,
        "requests never reached {first}; log:\n{}",
        gw.log()
    );
    let body = get_json(&gw.url("/readyz")).await;
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    assert!(
        eventually(Duration::from_secs(3), || async {
            healthy(&gw, &upstream).await == Some(1.0)
        })
        .await,
        "bff_upstream_healthy is not 1 once resolved"
    );

    // The address changes: requests follow it.
    dns.set(NAME, &[Ipv4Addr::new(127, 0, 0, 3)]);
    let second = b.addr().to_string();
    assert!(
        eventually(Duration::from_secs(5), || async {
            served_by(&gw).await.as_deref() == Ok(second.as_str())
        })
        .await,
        "requests never moved to {second}; log:\n{}",
        gw.log()
    );

    // The name stops resolving: the last good address is kept.
    dns.set(NAME, &[]);
    let asked = dns.queries();
    assert!(
        eventually(Duration::from_secs(5), || async {
            dns.queries() >= asked + 2
        })
        .await,
        "bffgate stopped asking"
    );
    for _ in 0..5 {
        assert_eq!(served_by(&gw).await.as_deref(), Ok(second.as_str()));
    }
    let log = gw.log();
    assert!(
        log.contains("upstream host does not resolve; keeping its last addresses"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_resolution_apart_and_no_resolve_skips_it() {
    let dns = DnsServer::start().await;
    dns.set("known.bffgate.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    let routes = vec![
        route(
            "known",
            "/known",
            "http://known.bffgate.test:8080",
            "none",
            "",
        ),
        route(
            "unknown",
            "/unknown",
            "http://unknown.bffgate.test:8080",
            "none",
            "",
        ),
    ];
    let yaml = GatewayConfig::new(routes).yaml().replace(
        "server:\n",
        &format!("server:\n  dns: {{nameservers: [\"{}\"]}}\n", dns.addr()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = crate::common::write_config(dir.path(), "bff.yaml", &yaml);
    let run = |extra: &[&str]| {
        let mut cmd = bffgate_command();
        cmd.arg("--check").arg("--config").arg(&path).args(extra);
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    };
    let (status, out) = run(&[]);
    assert!(status.success(), "{out}");
    assert!(out.contains(": ok: 2 route(s)"), "{out}");
    assert!(
        out.contains("resolve known.bffgate.test: 127.0.0.2"),
        "{out}"
    );
    assert!(
        out.contains("warning: resolve unknown.bffgate.test: no such name"),
        "{out}"
    );
    let asked = dns.queries();
    let (status, out) = run(&["--no-resolve"]);
    assert!(status.success(), "{out}");
    assert!(!out.contains("resolve "), "{out}");
    assert_eq!(dns.queries(), asked, "--no-resolve asked the DNS server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adding_a_name_that_does_not_resolve_is_applied() {
    let dns = DnsServer::start().await;
    let (a, _b, port) = two_upstreams().await;
    let routes = vec![route("ip", "/ip", &a.url(), "none", "")];
    let yaml = GatewayConfig::new(routes).yaml().replace(
        "server:\n",
        &format!(
            "server:\n  dns: {{nameservers: [\"{}\"], refresh_min: 200ms, refresh_max: 1s}}\n",
            dns.addr()
        ),
    );
    let gw = Gateway::start(&yaml).await;
    let resp = client().get(gw.url("/api/x")).send().await.unwrap();
    expect_error(resp, 404, "route_not_found").await;

    // Add a route whose name does not resolve (yet): the reload is applied, not refused.
    let mut text = std::fs::read_to_string(gw.config_path()).unwrap();
    text.push_str(&format!(
        "  - {}\n",
        route(
            "api",
            "/api",
            &format!("http://late.bffgate.test:{port}"),
            "none",
            ""
        )
    ));
    let tmp = gw.dir().join("next.yaml");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, gw.config_path()).unwrap();
    let status = || async {
        client()
            .get(gw.url("/api/x"))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert!(
        eventually(Duration::from_secs(5), || async { status().await == 502 }).await,
        "the reload with an unresolvable upstream was not applied; log:\n{}",
        gw.log()
    );
    assert!(gw.log().contains("configuration reloaded"), "{}", gw.log());

    // The name starts resolving: the new route serves.
    dns.set("late.bffgate.test", &[Ipv4Addr::new(127, 0, 0, 2)]);
    assert!(
        eventually(Duration::from_secs(5), || async { status().await == 200 }).await,
        "the reloaded route never served; log:\n{}",
        gw.log()
    );
}
