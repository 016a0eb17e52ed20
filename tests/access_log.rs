//! The access log: one line per request, carrying the error code of every answer bffgate
//! writes itself (and none for a proxied success), read from the real gateway's log.

use std::time::{Duration, Instant};

use crate::common::{
    client, raw_request, refusing_port, route, EchoServer, Gateway, GatewayConfig, COOKIE,
};

/// The access-log lines of `log` (target `bffgate::access`).
fn access_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("bffgate::access"))
        .collect()
}

/// Whether an access line records `path`, `status` and `code` (the text formatter quotes
/// string fields).
fn records(line: &str, path: &str, status: u16, code: &str) -> bool {
    let code_field = if code.is_empty() {
        "code=\"\"".to_string()
    } else {
        format!("code=\"{code}\"")
    };
    line.contains(&format!("path={path} "))
        && line.contains(&format!("status={status} "))
        && line.contains(&code_field)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_local_answer_is_logged_with_its_code() {
    let echo = EchoServer::start().await;
    let (_held, dead) = refusing_port();
    let routes = vec![
        route("api", "/api", &echo.url(), "required", ""),
        route("public", "/public", &echo.url(), "none", ""),
        route(
            "gone",
            "/gone",
            &format!("http://127.0.0.1:{dead}"),
            "none",
            "",
        ),
    ];
    let template = GatewayConfig::new(routes)
        .yaml()
        .replace("access_log: false", "access_log: true");
    let gw = Gateway::start(&template).await;
    let c = client();

    let expected: Vec<(&str, u16, &str)> = vec![
        ("/api/x", 401, "no_session"),
        ("/api/y", 401, "invalid_session"),
        ("/api/z", 403, "csrf_violation"),
        ("/nowhere", 404, "route_not_found"),
        ("/bff/session", 404, "agent_disabled"),
        ("/gone/x", 502, "upstream_unavailable"),
        ("/public/x", 200, ""),
    ];
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(c.get(gw.url("/api/x")).send().await.unwrap()), 401);
    let garbage = format!("{COOKIE}=bm90LWEtY29va2ll");
    let r = c
        .get(gw.url("/api/y"))
        .header("cookie", garbage)
        .send()
        .await;
    assert_eq!(status(r.unwrap()), 401);
    assert_eq!(status(c.post(gw.url("/api/z")).send().await.unwrap()), 403);
    assert_eq!(status(c.get(gw.url("/nowhere")).send().await.unwrap()), 404);
    assert_eq!(
        status(c.get(gw.url("/bff/session")).send().await.unwrap()),
        404
    );
    assert_eq!(status(c.get(gw.url("/gone/x")).send().await.unwrap()), 502);
    assert_eq!(
        status(c.get(gw.url("/public/x")).send().await.unwrap()),
        200
    );
    let addr = gw.addr();
    let (code, _) =
        tokio::task::spawn_blocking(move || raw_request(addr, "GET", "/api/%2e%2e/x", &[]))
            .await
            .unwrap();
    assert_eq!(code, 400);

    // The line is written when the request ends: give the log a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = gw.log();
        if access_lines(&log).len() > expected.len() || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines = access_lines(&log);
    for (path, status, code) in &expected {
        assert!(
            lines.iter().any(|l| records(l, path, *status, code)),
            "no access line for {path} {status} {code:?}; access lines:\n{}",
            lines.join("\n")
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| records(l, "/api/%2e%2e/x", 400, "invalid_path")),
        "no access line for the dot-segment path:\n{}",
        lines.join("\n")
    );
    // Nothing the client sent as a credential is logged.
    assert!(
        !log.contains("bm90LWEtY29va2ll"),
        "the cookie value reached the log"
    );
}
