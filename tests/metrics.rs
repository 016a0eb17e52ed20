//! The Prometheus listener after known traffic: counters carry the labels of the requests
//! that were made, with the counts that were made.

use std::time::Duration;

use crate::common::scrape::{parse, scrape, Sample};
use crate::common::sessions::Sessions;
use crate::common::{
    client, eventually, route, session_cookie, EchoServer, Gateway, GatewayConfig, RedisProcess,
};

/// Sum of the samples named `name` whose labels include all of `want`; `None` if no line
/// matches.
fn value(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect();
    (!matching.is_empty()).then(|| matching.iter().map(|s| s.value).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_traffic_that_was_sent() {
    let mut redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let up = echo.url();
    let cfg = GatewayConfig::new(vec![
        route("orders", "/api/orders", &up, "required", ""),
        route("public", "/api/public", &up, "none", ""),
    ])
    .redis(redis.url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (gone, gone_cookie) = sessions.login("user-gone", "at-gone").await;
    sessions.store.delete(&gone.id).await.unwrap();
    let (_s, cookie) = sessions.login("user-1", "at-metrics").await;
    let http = client();

    // orders: 2 × 200, 1 × 401 without cookie, 1 × 401 with a deleted session; public: 3 × 200.
    for _ in 0..2 {
        let resp = http
            .get(gw.url("/api/orders/1"))
            .header("cookie", session_cookie(&cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    assert_eq!(
        http.get(gw.url("/api/orders/1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let resp = http
        .get(gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&gone_cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    for _ in 0..3 {
        assert_eq!(
            http.get(gw.url("/api/public/x"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }

    // Metrics are recorded in the logging phase, after the response: allow a moment.
    let counted = eventually(Duration::from_secs(5), || async {
        let samples = parse(&scrape(&gw).await);
        value(
            &samples,
            "bff_requests_total",
            &[("route", "public"), ("status", "200")],
        ) == Some(3.0)
    })
    .await;
    let text = scrape(&gw).await;
    assert!(
        counted,
        "bff_requests_total for public never reached 3:\n{text}"
    );
    let samples = parse(&text);

    assert_eq!(
        value(
            &samples,
            "bff_requests_total",
            &[("route", "orders"), ("status", "200")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "bff_requests_total",
            &[("route", "orders"), ("status", "401")]
        ),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        value(
            &samples,
            "bff_request_duration_seconds_count",
            &[("route", "orders")]
        ),
        Some(4.0),
        "{text}"
    );
    assert!(
        value(
            &samples,
            "bff_request_duration_seconds_bucket",
            &[("route", "orders"), ("le", "+Inf")]
        ) == Some(4.0),
        "{text}"
    );
    assert!(
        value(&samples, "bff_session_lookups_total", &[("result", "ok")]).unwrap_or(0.0) >= 2.0,
        "{text}"
    );
    assert!(
        value(
            &samples,
            "bff_session_lookups_total",
            &[("result", "missing")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        value(
            &samples,
            "bff_store_duration_seconds_bucket",
            &[("le", "+Inf")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "{text}"
    );
    assert!(text.contains("# TYPE bff_requests_total counter"), "{text}");
    assert!(
        text.contains("# TYPE bff_request_duration_seconds histogram"),
        "{text}"
    );

    // A store outage shows up as store errors.
    redis.stop();
    let saw_503 = eventually(Duration::from_secs(5), || async {
        let resp = http
            .get(gw.url("/api/orders/1"))
            .header("cookie", session_cookie(&cookie))
            .send()
            .await;
        matches!(resp, Ok(r) if r.status() == 503)
    })
    .await;
    assert!(saw_503, "no 503 with Redis down");
    let errors_counted = eventually(Duration::from_secs(5), || async {
        let samples = parse(&scrape(&gw).await);
        value(&samples, "bff_store_errors_total", &[]).unwrap_or(0.0) >= 1.0
    })
    .await;
    let text = scrape(&gw).await;
    assert!(
        errors_counted,
        "bff_store_errors_total did not count the outage:\n{text}"
    );
    assert!(
        text.contains("# TYPE bff_store_errors_total counter"),
        "{text}"
    );
    let samples = parse(&text);
    assert!(
        value(
            &samples,
            "bff_requests_total",
            &[("route", "orders"), ("status", "503")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
}
