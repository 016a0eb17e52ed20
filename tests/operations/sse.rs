//! Server-sent events stream through the gateway one by one, as the upstream sends them,
//! not buffered until the body ends.

use std::time::{Duration, Instant};

use crate::common::streams::SseServer;
use crate::common::{client, route, Gateway, GatewayConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_stream_one_by_one() {
    const EVENTS: usize = 5;
    let sse = SseServer::start(EVENTS, Duration::from_millis(300)).await;
    let gw = Gateway::start(
        &GatewayConfig::new(vec![route("events", "/events", &sse.url(), "none", "")]).yaml(),
    )
    .await;

    let start = Instant::now();
    let mut resp = client()
        .get(gw.url("/events/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut buf = String::new();
    let mut arrivals: Vec<Duration> = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("next chunk within 10 s")
        .expect("body chunk")
    {
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            assert!(
                event.contains(&format!("data: {{\"n\": {}}}", arrivals.len())),
                "event {} out of order: {event:?}",
                arrivals.len()
            );
            arrivals.push(start.elapsed());
        }
    }
    let total = start.elapsed();
    let sent = sse.sent();
    assert_eq!(arrivals.len(), EVENTS, "events received: {arrivals:?}");
    assert_eq!(sent.len(), EVENTS);
    let first_arrived = start + arrivals[0];
    eprintln!("sse_events_stream_one_by_one: arrivals {arrivals:?}, total {total:?}");
    assert!(
        first_arrived < sent[EVENTS - 1],
        "the first event arrived only after the last was sent: buffered ({arrivals:?})"
    );
    assert!(
        arrivals[0] < Duration::from_secs(1),
        "first event after {:?}",
        arrivals[0]
    );
    assert!(
        total >= Duration::from_millis(1200),
        "the stream took only {total:?}"
    );
    for k in 1..EVENTS {
        assert!(
            start + arrivals[k] >= sent[k],
            "event {k} arrived before it was sent?"
        );
        assert!(
            start + arrivals[k - 1] < sent[k],
            "event {} arrived only after event {k} was sent: buffered ({arrivals:?})",
            k - 1
        );
    }
}
