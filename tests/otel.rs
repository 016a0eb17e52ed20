//! OpenTelemetry traces against a real OTLP/HTTP receiver (the official protobuf
//! definitions): a request is a `request` span with children for the session lookup (and
//! its store call) and the upstream call, whose context reaches the upstream as
//! `traceparent`; a client's `traceparent` is continued when `otel.accept_traceparent` is
//! on, and replaced when it is off. The lookup span says what it found and whether the
//! session cache answered.

use std::time::{Duration, Instant};

use crate::common::otlp::{OtlpReceiver, ReceivedSpan};
use crate::common::scrape::{metric, scrape};
use crate::common::sessions::Sessions;
use crate::common::{
    client, expect_echo, route, session_cookie, EchoServer, Gateway, GatewayConfig, RedisProcess,
};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// Waits until the receiver holds `n` spans named `request` (health probes aside), then
/// returns every span.
async fn wait_for_requests(rx: &OtlpReceiver, n: usize) -> Vec<ReceivedSpan> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let spans = rx.spans();
        let requests = spans
            .iter()
            .filter(|s| s.name == "request" && s.attr("url.path") != Some("/healthz"))
            .count();
        if requests >= n || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn only<'a>(
    spans: &'a [ReceivedSpan],
    what: impl Fn(&ReceivedSpan) -> bool,
    name: &str,
) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| what(s)).collect();
    assert_eq!(
        found.len(),
        1,
        "one {name} span expected; all spans: {spans:#?}"
    );
    found[0]
}

/// `(trace id, parent span id)` of a `traceparent` value.
fn traceparent(value: &str) -> (String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "{value}");
    (parts[1].to_string(), parts[2].to_string())
}

/// A gateway over Redis exporting to a fresh receiver, its session cache window
/// `cache_window` (`"0"`: no cache).
async fn gateway(
    accept_traceparent: bool,
    cache_window: &str,
) -> (Gateway, Sessions, OtlpReceiver, EchoServer, RedisProcess) {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let rx = OtlpReceiver::start().await;
    let yaml = GatewayConfig::new(vec![route(
        "orders",
        "/api/orders",
        &echo.url(),
        "required",
        "",
    )])
    .redis(redis.url())
    .cache_window(cache_window)
    .yaml();
    let yaml = format!(
        "{yaml}otel:\n  endpoint: \"{}\"\n  service_name: bffgate-test\n  accept_traceparent: {accept_traceparent}\n",
        rx.endpoint()
    );
    let gw = Gateway::start(&yaml).await;
    let sessions = Sessions::open(gw.config_path()).await;
    (gw, sessions, rx, echo, redis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_a_trace_with_lookup_store_and_upstream_spans() {
    // Every request reads Redis (with the session cache a repeat would be served from it,
    // with no store call to show).
    let (gw, sessions, rx, _echo, _redis) = gateway(true, "0").await;
    let (_s, cookie) = sessions.login("ada", "at-otel").await;

    // 1: a new trace.
    let resp = client()
        .get(gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    let first = expect_echo(resp).await;
    // 2: continuing the client's trace.
    let resp = client()
        .get(gw.url("/api/orders/2"))
        .header("cookie", session_cookie(&cookie))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    let second = expect_echo(resp).await;

    let spans = wait_for_requests(&rx, 2).await;
    assert!(
        spans.iter().all(|s| s.service == "bffgate-test"),
        "{spans:#?}"
    );
    let requests: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "request" && s.attr("url.path") != Some("/healthz"))
        .collect();
    assert_eq!(requests.len(), 2, "{spans:#?}\n{}", gw.log());

    for (echoed, path) in [(&first, "/api/orders/1"), (&second, "/api/orders/2")] {
        let request = only(
            &spans,
            |s| s.name == "request" && s.attr("url.path") == Some(path),
            "request",
        );
        assert_eq!(request.attr("http.route"), Some("orders"));
        assert_eq!(request.attr("http.response.status_code"), Some("200"));
        let lookup = only(
            &spans,
            |s| s.name == "session.lookup" && s.parent_span_id == request.span_id,
            "session.lookup",
        );
        assert_eq!(lookup.attr("bff.session.result"), Some("ok"));
        assert_eq!(
            lookup.attr("bff.session.cache"),
            None,
            "no cache, no answer from it"
        );
        let store = only(
            &spans,
            |s| s.name == "store" && s.parent_span_id == lookup.span_id,
            "store",
        );
        assert_eq!(store.attr("db.operation"), Some("get"));
        let upstream = only(
            &spans,
            |s| s.name == "upstream" && s.parent_span_id == request.span_id,
            "upstream",
        );
        for s in [lookup, store, upstream] {
            assert_eq!(
                s.trace_id, request.trace_id,
                "{} in the request's trace",
                s.name
            );
        }
        // The upstream is told the trace, with bffgate's upstream span as the parent.
        let sent = echoed.header("traceparent").expect("traceparent upstream");
        assert_eq!(
            traceparent(&sent),
            (request.trace_id.clone(), upstream.span_id.clone())
        );
    }
    let continued = only(
        &spans,
        |s| s.name == "request" && s.attr("url.path") == Some("/api/orders/2"),
        "request",
    );
    assert_eq!(continued.trace_id, CLIENT_TRACE);
    assert_eq!(continued.parent_span_id, CLIENT_SPAN);
    let fresh = only(
        &spans,
        |s| s.name == "request" && s.attr("url.path") == Some("/api/orders/1"),
        "request",
    );
    assert_ne!(fresh.trace_id, CLIENT_TRACE);
    assert!(fresh.parent_span_id.is_empty() || fresh.parent_span_id == "0000000000000000");
    // Nothing secret in any attribute.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains("at-otel") && !v.contains(&cookie),
                "{}: {k}={v}",
                s.name
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_traceparent_is_replaced_unless_accepted() {
    let (gw, sessions, rx, _echo, _redis) = gateway(false, "0").await;
    let (_s, cookie) = sessions.login("ada", "at-otel").await;
    let resp = client()
        .get(gw.url("/api/orders/3"))
        .header("cookie", session_cookie(&cookie))
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .header("tracestate", "vendor=client-chosen")
        .send()
        .await
        .unwrap();
    let echoed = expect_echo(resp).await;
    let spans = wait_for_requests(&rx, 1).await;
    let request = only(
        &spans,
        |s| s.name == "request" && s.attr("url.path") == Some("/api/orders/3"),
        "request",
    );
    assert_ne!(
        request.trace_id, CLIENT_TRACE,
        "a client cannot choose the trace"
    );
    let upstream = only(&spans, |s| s.name == "upstream", "upstream");
    let sent = echoed.header("traceparent").expect("traceparent upstream");
    assert_eq!(
        traceparent(&sent),
        (request.trace_id.clone(), upstream.span_id.clone())
    );
    assert_eq!(
        echoed.header("tracestate"),
        None,
        "the client's tracestate is not passed on"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lookup_span_says_what_was_found_and_whether_the_cache_answered() {
    let (gw, sessions, rx, _echo, _redis) = gateway(false, "5s").await;
    // The cache serves once the revocation bus is subscribed: warm up with another
    // session until a request is answered from it.
    let (_w, warm) = sessions.login("bea", "at-warm").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        client()
            .get(gw.url("/api/orders/warm"))
            .header("cookie", session_cookie(&warm))
            .send()
            .await
            .expect("warm-up request");
        let hits = metric(
            &scrape(&gw).await,
            "bff_session_cache_total{result=\"hit\"}",
        );
        if hits.unwrap_or(0.0) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cache never answered\n{}",
            gw.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_s, cookie) = sessions.login("ada", "at-otel").await;
    for (path, cookie) in [
        ("/api/orders/1", Some(session_cookie(&cookie))),
        ("/api/orders/2", Some(session_cookie(&cookie))),
        ("/api/orders/3", None),
    ] {
        let mut req = client().get(gw.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", c);
        }
        req.send().await.expect("request");
    }
    let measured = ["/api/orders/1", "/api/orders/2", "/api/orders/3"];
    let deadline = Instant::now() + Duration::from_secs(15);
    let spans = loop {
        let spans = rx.spans();
        let all_there = measured.iter().all(|p| {
            spans
                .iter()
                .any(|s| s.name == "request" && s.attr("url.path") == Some(p))
        });
        if all_there || Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lookup_of = |path: &str| {
        let request = only(
            &spans,
            |s| s.name == "request" && s.attr("url.path") == Some(path),
            "request",
        );
        let lookup = only(
            &spans,
            |s| s.name == "session.lookup" && s.parent_span_id == request.span_id,
            "session.lookup",
        );
        let stores = spans
            .iter()
            .filter(|s| s.name == "store" && s.parent_span_id == lookup.span_id)
            .count();
        (
            lookup.attr("bff.session.result"),
            lookup.attr("bff.session.cache"),
            stores,
        )
    };
    // The first read goes to Redis and is kept; the second is answered from the cache.
    assert_eq!(lookup_of("/api/orders/1"), (Some("ok"), Some("miss"), 1));
    assert_eq!(lookup_of("/api/orders/2"), (Some("ok"), Some("hit"), 0));
    assert_eq!(lookup_of("/api/orders/3"), (Some("missing"), None, 0));
}
