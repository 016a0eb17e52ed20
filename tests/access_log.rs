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

/// The fields of one access line in the text format: `key=value` pairs (string values are
/// quoted by the formatter).
fn text_fields(line: &str) -> std::collections::BTreeMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// The access line has what nginx and oauth2-proxy users expect, in both formats: client,
/// host, method, path, status, code, bytes in and out, duration, upstream and its time, the
/// request id (minted here: a client's is not taken from an untrusted peer; sent upstream
/// and answered), and the user as a hash of `sub`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_carry_every_field_in_text_and_json() {
    use crate::common::sessions::Sessions;
    use crate::common::{expect_echo, session_cookie, RedisProcess};
    use sha2::{Digest, Sha256};

    for json in [false, true] {
        let redis = RedisProcess::start();
        let echo = EchoServer::start().await;
        let template = GatewayConfig::new(vec![route("api", "/api", &echo.url(), "required", "")])
            .redis(redis.url())
            .yaml()
            .replace("access_log: false", "access_log: true");
        let gw = if json {
            Gateway::start_json(&template).await
        } else {
            Gateway::start(&template).await
        };
        let sessions = Sessions::open(gw.config_path()).await;
        let (_s, cookie) = sessions.login("ada@example.com", "at-log").await;
        let resp = client()
            .post(gw.url("/api/items"))
            .header("cookie", session_cookie(&cookie))
            .header("origin", crate::common::APP_ORIGIN)
            .header(crate::common::CSRF_HEADER, "1")
            .header("x-request-id", "client-chosen")
            .body("0123456789")
            .send()
            .await
            .unwrap();
        let answered_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        let echoed = expect_echo(resp).await;
        assert_ne!(
            answered_id, "client-chosen",
            "an untrusted client cannot name the id"
        );
        assert_eq!(answered_id.len(), 32, "{answered_id}");
        assert_eq!(
            echoed.header("x-request-id").as_deref(),
            Some(answered_id.as_str())
        );

        let deadline = Instant::now() + Duration::from_secs(5);
        let line = loop {
            let log = gw.log();
            let found = access_lines(&log)
                .into_iter()
                .find(|l| l.contains("/api/items"))
                .map(str::to_string);
            match found {
                Some(l) => break l,
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                None => panic!("no access line for /api/items:\n{log}"),
            }
        };
        let fields: std::collections::BTreeMap<String, String> = if json {
            assert!(!line.contains("log.file"), "{line}");
            let v: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
            v.as_object()
                .expect("flat object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_string)))
                .collect()
        } else {
            text_fields(&line)
        };
        let hashed: String = Sha256::digest(b"ada@example.com")[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let up = echo.url().trim_start_matches("http://").to_string();
        for (key, want) in [
            ("client", "127.0.0.1"),
            ("host", "127.0.0.1"),
            ("method", "POST"),
            ("path", "/api/items"),
            ("route", "api"),
            ("status", "200"),
            ("code", ""),
            ("bytes_in", "10"),
            ("upstream", up.as_str()),
            ("request_id", answered_id.as_str()),
            ("user", hashed.as_str()),
        ] {
            assert_eq!(
                fields.get(key).map(String::as_str),
                Some(want),
                "{key} in {line}"
            );
        }
        for key in ["bytes_out", "micros", "upstream_micros"] {
            let n: u64 = fields[key].parse().unwrap_or(0);
            assert!(n > 0, "{key} in {line}");
        }
        assert!(
            !line.contains("at-log") && !line.contains(&cookie),
            "{line}"
        );
    }
}
