//! Upstream health: with active checks a dead upstream leaves the rotation; with passive
//! ejection alone a refused connect retries on the other upstream and takes the dead one
//! out for a while. No request fails either way.

use std::time::Duration;

use crate::common::scrape::{metric, scrape_url, time_until_metric};
use crate::common::{
    client, closed_port, eventually, fresh_connection_client, EchoServer, Echoed, Gateway,
    GatewayConfig,
};

/// A route on `/hc` over a closed port first, then the echo upstream.
fn two_upstreams(closed: u16, echo: &str, extra: &str) -> String {
    format!(
        "{{ name: hc, match: {{ path_prefix: \"/hc\" }}, upstreams: [\"http://127.0.0.1:{closed}\", \"{echo}\"], auth: none{extra} }}"
    )
}

/// `sequential` requests one after another, then `concurrent` at once; the failures.
async fn hammer(gw: &Gateway, sequential: usize, concurrent: usize) -> Vec<String> {
    let c = client();
    let mut failures = Vec::new();
    for i in 0..sequential {
        match c.get(gw.url(&format!("/hc/s{i}"))).send().await {
            Ok(r) if r.status() == 200 => {
                let seen: Echoed = r.json().await.expect("echo body");
                assert_eq!(seen.path, format!("/hc/s{i}"));
            }
            Ok(r) => failures.push(format!(
                "s{i}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failures.push(format!("s{i}: {e:?}")),
        }
    }
    let tasks: Vec<_> = (0..concurrent)
        .map(|i| {
            let (c, url) = (fresh_connection_client(), gw.url(&format!("/hc/c{i}")));
            tokio::spawn(async move {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => None,
                    Ok(r) => Some(format!("c{i}: {}", r.status())),
                    Err(e) => Some(format!("c{i}: {e:?}")),
                }
            })
        })
        .collect();
    for t in tasks {
        if let Some(f) = t.await.expect("task") {
            failures.push(f);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_health() {
    let echo = EchoServer::start().await;
    let closed = closed_port();

    // Active checks: the dead upstream leaves the rotation.
    let active = Gateway::start(
        &GatewayConfig::new(vec![two_upstreams(
            closed,
            &echo.url(),
            ", health_check: { interval: 200ms }",
        )])
        .yaml(),
    )
    .await;
    let early = hammer(&active, 10, 10).await;
    assert!(
        eventually(Duration::from_secs(3), || async {
            active.log().lines().any(|l| {
                l.contains("upstream health changed")
                    && l.contains(&format!("127.0.0.1:{closed}"))
                    && l.contains("healthy=false")
            })
        })
        .await,
        "no health change logged:\n{}",
        active.log()
    );
    let later = hammer(&active, 40, 20).await;
    assert!(
        early.is_empty() && later.is_empty(),
        "active: {early:?} {later:?}"
    );
    // Requests are counted after their response is sent: give the last one a moment.
    let series = "bff_requests_total{route=\"hc\",status=\"200\"}";
    assert!(
        time_until_metric(&active.metrics_url(), series, 80.0, Duration::from_secs(2))
            .await
            .is_some(),
        "active: 80 requests answered 200 by the route:\n{}",
        scrape_url(&active.metrics_url()).await
    );

    // Passive only: a refused connect retries on the other upstream and ejects the dead one.
    let passive =
        Gateway::start(&GatewayConfig::new(vec![two_upstreams(closed, &echo.url(), "")]).yaml())
            .await;
    let failures = hammer(&passive, 40, 20).await;
    assert!(
        failures.is_empty(),
        "passive: {failures:?}\n{}",
        passive.log()
    );
    assert!(
        time_until_metric(&passive.metrics_url(), series, 60.0, Duration::from_secs(2))
            .await
            .is_some(),
        "passive: 60 requests answered 200 by the route:\n{}",
        scrape_url(&passive.metrics_url()).await
    );
    let page = scrape_url(&passive.metrics_url()).await;
    // The series exists from the start (created at zero for every route): it stays zero.
    assert_eq!(
        metric(
            &page,
            "bff_upstream_errors_total{kind=\"unavailable\",route=\"hc\"}"
        ),
        Some(0.0),
        "no request should have failed upstream"
    );
    // Passive ejection: only the first request tried the dead upstream (5 s out of
    // rotation afterwards); plain round robin would have sent it half of them.
    let dead = format!("Fail to connect to addr: 127.0.0.1:{closed}");
    let passive_tries = passive.log().matches(&dead).count();
    let active_tries = active.log().matches(&dead).count();
    eprintln!(
        "upstream_health: active 80/80 ok ({active_tries} connects to the dead upstream), passive 60/60 ok ({passive_tries} connects to the dead upstream)"
    );
    assert!(
        (1..=3).contains(&passive_tries),
        "passive: {passive_tries} connects to the dead upstream:\n{}",
        passive.log()
    );
    assert!(
        active_tries <= 10,
        "active: {active_tries} connects to the dead upstream:\n{}",
        active.log()
    );
}
