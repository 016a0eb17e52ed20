//! Origins: `return_to` must stay on trusted origins (no open redirect), and CORS for
//! the allowed origins only.

use super::*;

// ---------------------------------------------------------------------------------------
// Open redirects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_to_must_stay_on_trusted_origins() {
    let env = Env::start(Setup::default()).await;
    for bad in [
        "//evil.test",
        "https://evil.test/",
        "/\\evil.test",
        "https:evil.test",
        "javascript:alert(1)",
        "http://app.test.evil.test/",
        "http://app.test@evil.test/",
        "http://app.test:8080/",
        "///evil.test",
    ] {
        let resp = env.get(&login_path("/bff/login", Some(bad)), "").await;
        assert!(
            set_cookie_headers(resp.headers()).is_empty(),
            "{bad:?} started a login"
        );
        let body = expect_error(resp, 400, "invalid_return_to").await;
        assert!(!body.to_string().contains("evil"), "{body}");
        let resp = env
            .post(
                &login_path("/bff/login/start", Some(bad)),
                None,
                Some(APP_ORIGIN),
                true,
            )
            .await;
        expect_error(resp, 400, "invalid_return_to").await;
    }

    // A URL on an allowed origin goes through, all the way back.
    let started = env.start_login(Some("http://app.test/x?y=1"), "").await;
    assert_eq!(
        started.authorization_url.as_str().split('?').next(),
        env.provider.discovery().await["authorization_endpoint"].as_str()
    );
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let back = env
        .authorize(&OpBrowser::new(), &started.authorization_url)
        .await;
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "http://app.test/x?y=1"
    );
    // No return_to: the post-login page.
    let started = env.start_login(None, "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let back = env
        .authorize(&OpBrowser::new(), &started.authorization_url)
        .await;
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.headers()["location"].to_str().unwrap(), POST_LOGIN);
}

// ---------------------------------------------------------------------------------------
// CORS

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_for_allowed_origins_only() {
    let env = Env::start(Setup::default()).await;
    let preflight = |path: &str, origin: &str| {
        env.http
            .request(reqwest::Method::OPTIONS, env.gw.url(path))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", CSRF_HEADER)
            .send()
    };
    for path in ["/bff/session", "/bff/logout", "/api/x"] {
        let resp = preflight(path, APP_ORIGIN).await.unwrap();
        assert_eq!(resp.status(), 204, "{path}");
        let h = resp.headers();
        assert_eq!(h["access-control-allow-origin"], APP_ORIGIN, "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true", "{path}");
        assert!(
            h["access-control-allow-headers"]
                .to_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains(CSRF_HEADER),
            "{path}: {h:?}"
        );
        assert!(
            h["access-control-allow-methods"]
                .to_str()
                .unwrap()
                .contains("POST"),
            "{path}: {h:?}"
        );
        assert!(
            h.get_all("vary").iter().any(|v| v == "Origin"),
            "{path}: {h:?}"
        );

        let resp = preflight(path, "http://evil.test").await.unwrap();
        assert!(resp.headers().get("access-control-allow-origin").is_none());
        expect_error(resp, 403, "cors_origin_not_allowed").await;
    }

    let me = env.login(&OpBrowser::new()).await;
    let with_origin = |path: &str, origin: &str, cookie: &str| {
        env.http
            .get(env.gw.url(path))
            .header("origin", origin)
            .header("cookie", session_cookie(cookie))
            .send()
    };
    for path in ["/bff/session", "/api/x"] {
        let resp = with_origin(path, APP_ORIGIN, &me.cookie).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(
            resp.headers()["access-control-allow-origin"],
            APP_ORIGIN,
            "{path}"
        );
        assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
        let resp = with_origin(path, "http://evil.test", &me.cookie)
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers().get("access-control-allow-origin").is_none(),
            "{path}: {:?}",
            resp.headers()
        );
    }
    // Errors carry it too, so the SPA can read them.
    let resp = with_origin("/api/x", APP_ORIGIN, "garbage").await.unwrap();
    assert_eq!(resp.headers()["access-control-allow-origin"], APP_ORIGIN);
    expect_error(resp, 401, "invalid_session").await;
}
