//! Error answers by audience, against the real binary: a browser navigation gets a small
//! HTML page with a way back; `fetch`/XHR and API clients keep the JSON contract.

use crate::common::{client, expect_error, route, EchoServer, Gateway, GatewayConfig, APP_ORIGIN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigations_get_pages_and_programs_get_json() {
    let echo = EchoServer::start().await;
    let gw = Gateway::start(
        &GatewayConfig::new(vec![route("api", "/api", &echo.url(), "required", "")]).yaml(),
    )
    .await;
    let c = client();
    let navigate = |path: &str| {
        c.get(gw.url(path))
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .header("sec-fetch-mode", "navigate")
    };

    for (path, status, code) in [
        ("/nowhere", 404, "route_not_found"),
        ("/api/x", 401, "no_session"),
    ] {
        let resp = navigate(path).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let h = resp.headers().clone();
        assert_eq!(h["content-type"], "text/html; charset=utf-8", "{path}");
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("default-src 'none'"));
        assert_eq!(h["cache-control"], "no-store");
        let page = resp.text().await.unwrap();
        assert!(page.starts_with("<!doctype html>"), "{page}");
        assert!(page.contains(code), "{page}");
        assert!(
            page.contains("href=\"/bff/login\""),
            "a way to log in again: {page}"
        );
        assert!(
            page.contains(&format!("href=\"{APP_ORIGIN}\"")),
            "a way back: {page}"
        );
    }

    // The same requests from a script, or without a browser's Accept, stay JSON.
    let fetch = c
        .get(gw.url("/api/x"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "cors")
        .send()
        .await
        .unwrap();
    expect_error(fetch, 401, "no_session").await;
    let api_client = c.get(gw.url("/nowhere")).send().await.unwrap();
    expect_error(api_client, 404, "route_not_found").await;
    let json_client = c
        .get(gw.url("/api/x"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    expect_error(json_client, 401, "no_session").await;
}
