//! Session cookies on API routes: token injection, cookie stripping, every way a cookie
//! can be wrong, key rotation, expiry, CSRF, and the three auth modes.
//!
//! Each test runs its own redis-server, echo upstream and bffgate process.

use crate::common::sessions::{cipher_of, Sessions};
use crate::common::{
    client, expect_echo, expect_error, now, route, session_cookie, write_config, EchoServer,
    Gateway, GatewayConfig, RedisProcess, APP_ORIGIN, COOKIE, CSRF_HEADER,
};

/// Redis, the echo upstream and a gateway with three routes:
/// `/api/orders` (required, strip `/api`), `/api/public` (none), `/api/maybe` (optional).
struct Env {
    gw: Gateway,
    sessions: Sessions,
    _echo: EchoServer,
    _redis: RedisProcess,
}

fn routes(upstream: &str) -> Vec<String> {
    vec![
        route(
            "orders",
            "/api/orders",
            upstream,
            "required",
            "strip_prefix: /api",
        ),
        route("public", "/api/public", upstream, "none", ""),
        route("maybe", "/api/maybe", upstream, "optional", ""),
    ]
}

async fn setup_with_keys(keys: &[&str]) -> Env {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let cfg = GatewayConfig::new(routes(&echo.url()))
        .redis(redis.url())
        .keys(keys);
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    Env {
        gw,
        sessions,
        _echo: echo,
        _redis: redis,
    }
}

async fn setup() -> Env {
    setup_with_keys(&["k1"]).await
}

/// The value of our cookie in the response's `Set-Cookie` headers, if any.
fn set_cookie_value(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            let first = v.split(';').next()?.trim();
            let (name, value) = first.split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })
}

/// The same string with the character in the middle replaced by another base64url one.
fn flip_middle(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    let mid = chars.len() / 2;
    chars[mid] = if chars[mid] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_cookie_becomes_bearer_and_only_our_cookie_is_stripped() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-123").await;

    let resp = client()
        .get(env.gw.url("/api/orders/7"))
        .header(
            "cookie",
            format!("theme=dark; {}; lang=en", session_cookie(&cookie)),
        )
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;

    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer at-123")
    );
    assert_eq!(
        seen.cookies(),
        vec![
            ("theme".to_owned(), "dark".to_owned()),
            ("lang".to_owned(), "en".to_owned())
        ]
    );
    for value in seen.header_all("cookie") {
        assert!(
            !value.contains(COOKIE),
            "session cookie reached the upstream: {value}"
        );
        assert!(
            !value.contains(&cookie),
            "sealed value reached the upstream: {value}"
        );
    }
    assert_eq!(seen.path, "/orders/7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cookie_is_session_cookie_leaves_no_cookie_header() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-only").await;
    let resp = client()
        .get(env.gw.url("/api/orders"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer at-only")
    );
    assert!(
        seen.cookies().is_empty(),
        "cookies forwarded: {:?}",
        seen.cookies()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_authorization_is_replaced_by_session_token() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-real").await;
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("authorization", "Bearer forged-by-client")
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(
        seen.header_all("authorization"),
        vec!["Bearer at-real".to_owned()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_cookie_is_no_session() {
    let env = setup().await;
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "no_session").await;
    // Other cookies do not count as a session.
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", "theme=dark; lang=en")
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "no_session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_cookie_is_invalid_session() {
    let env = setup().await;
    for garbage in ["not-a-cookie", "%%%", "AAAA", "x"] {
        let resp = client()
            .get(env.gw.url("/api/orders/1"))
            .header("cookie", session_cookie(garbage))
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "invalid_session").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_cookie_is_invalid_session() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-123").await;
    let tampered = flip_middle(&cookie);
    assert_ne!(tampered, cookie);
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&tampered))
        .send()
        .await
        .unwrap();
    // The dead cookie is cleared so the SPA starts a clean login.
    assert_eq!(
        set_cookie_value(&resp).as_deref(),
        Some(""),
        "no clearing Set-Cookie"
    );
    expect_error(resp, 401, "invalid_session").await;
    // The untouched cookie still works: the 401 was the tampering.
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    expect_echo(resp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_cookie_is_invalid_session() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-123").await;
    for truncated in [
        &cookie[..cookie.len() / 2],
        &cookie[..cookie.len() - 1],
        &cookie[..4],
    ] {
        let resp = client()
            .get(env.gw.url("/api/orders/1"))
            .header("cookie", session_cookie(truncated))
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "invalid_session").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_sealed_with_unknown_key_is_invalid_session() {
    let env = setup().await;
    let (session, _cookie) = env.sessions.login("user-1", "at-123").await;
    // Sealed by a ring [k9] the gateway (ring [k1]) does not have.
    let dir = tempfile::tempdir().unwrap();
    let other = GatewayConfig::new(routes("http://127.0.0.1:9")).keys(&["k9"]);
    let other_path = write_config(dir.path(), "k9.yaml", &other.yaml());
    let foreign = cipher_of(&other_path).seal(&session.id);
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&foreign))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_reseals_old_cookies_with_the_current_key() {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let old = GatewayConfig::new(routes(&echo.url()))
        .redis(redis.url())
        .keys(&["k1"]);
    let old_path = write_config(dir.path(), "old.yaml", &old.yaml());

    let rotated = Gateway::start(&old.clone().keys(&["k2", "k1"]).yaml()).await;
    let only_new = Gateway::start(&old.clone().keys(&["k2"]).yaml()).await;
    let sessions = Sessions::open(rotated.config_path()).await;
    let (session, _) = sessions.login("user-r", "at-rot").await;
    let old_cookie = cipher_of(&old_path).seal(&session.id);

    // The ring [k2, k1] opens a k1 cookie and hands back a k2 one.
    let resp = client()
        .get(rotated.url("/api/orders/1"))
        .header("cookie", session_cookie(&old_cookie))
        .send()
        .await
        .unwrap();
    let new_cookie = set_cookie_value(&resp).expect("a Set-Cookie re-sealing the session");
    assert_ne!(new_cookie, old_cookie);
    assert_eq!(
        expect_echo(resp).await.header("authorization").as_deref(),
        Some("Bearer at-rot")
    );

    // The new cookie works on the next request.
    let resp = client()
        .get(rotated.url("/api/orders/2"))
        .header("cookie", session_cookie(&new_cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_echo(resp).await.header("authorization").as_deref(),
        Some("Bearer at-rot")
    );

    // It is sealed with k2: a ring of [k2] alone accepts it, and refuses the k1 one.
    let resp = client()
        .get(only_new.url("/api/orders/3"))
        .header("cookie", session_cookie(&new_cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(
        expect_echo(resp).await.header("authorization").as_deref(),
        Some("Bearer at-rot")
    );
    let resp = client()
        .get(only_new.url("/api/orders/3"))
        .header("cookie", session_cookie(&old_cookie))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_session").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_past_expires_at_is_session_expired() {
    let env = setup().await;
    let mut session = env
        .sessions
        .new_session("user-old", Some("sid-old"), "at-old");
    session.expires_at = now() - 10;
    env.sessions
        .store
        .create(&session)
        .await
        .expect("create expired session");
    let cookie = env.sessions.seal(&session);
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "session_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_session_is_session_expired() {
    let env = setup().await;
    let (session, cookie) = env.sessions.login("user-gone", "at-gone").await;
    // Works while it exists...
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    expect_echo(resp).await;
    // ...and is expired once the store no longer has it.
    env.sessions
        .store
        .delete(&session.id)
        .await
        .expect("delete");
    let resp = client()
        .get(env.gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "session_expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_unsafe_methods_need_allowed_origin_and_header() {
    let env = setup().await;
    let (_s, cookie) = env.sessions.login("user-1", "at-csrf").await;
    let cookie = session_cookie(&cookie);
    let url = env.gw.url("/api/orders/1");

    // Foreign origin, even with the header.
    let resp = client()
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", "http://evil.test")
        .header(CSRF_HEADER, "1")
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "csrf_violation").await;

    // Allowed origin without the header.
    let resp = client()
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", APP_ORIGIN)
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "csrf_violation").await;

    // Same for DELETE.
    let resp = client()
        .delete(&url)
        .header("cookie", &cookie)
        .header("origin", "http://evil.test")
        .header(CSRF_HEADER, "1")
        .send()
        .await
        .unwrap();
    expect_error(resp, 403, "csrf_violation").await;

    // Both: forwarded, body intact.
    let resp = client()
        .post(&url)
        .header("cookie", &cookie)
        .header("origin", APP_ORIGIN)
        .header(CSRF_HEADER, "1")
        .body(r#"{"item":42}"#)
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body, r#"{"item":42}"#);
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer at-csrf")
    );

    // GET needs neither.
    let resp = client()
        .get(&url)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.method, "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_none_forwards_without_session_and_still_strips_our_cookie() {
    let env = setup().await;
    let resp = client()
        .get(env.gw.url("/api/public/x"))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.path, "/api/public/x");

    let (_s, cookie) = env.sessions.login("user-1", "at-public").await;
    let resp = client()
        .get(env.gw.url("/api/public/x"))
        .header("cookie", format!("{}; theme=dark", session_cookie(&cookie)))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(
        seen.header("authorization"),
        None,
        "auth: none must not forward a token"
    );
    assert_eq!(
        seen.cookies(),
        vec![("theme".to_owned(), "dark".to_owned())]
    );

    // An invalid cookie does not matter on an auth: none route.
    let resp = client()
        .get(env.gw.url("/api/public/x"))
        .header("cookie", session_cookie("garbage"))
        .send()
        .await
        .unwrap();
    assert_eq!(expect_echo(resp).await.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_optional_uses_a_session_when_present() {
    let env = setup().await;
    let url = env.gw.url("/api/maybe/me");

    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(expect_echo(resp).await.header("authorization"), None);

    let (_s, cookie) = env.sessions.login("user-1", "at-opt").await;
    let resp = client()
        .get(&url)
        .header("cookie", format!("lang=en; {}", session_cookie(&cookie)))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(
        seen.header("authorization").as_deref(),
        Some("Bearer at-opt")
    );
    assert_eq!(seen.cookies(), vec![("lang".to_owned(), "en".to_owned())]);

    let resp = client()
        .get(&url)
        .header("cookie", session_cookie(&flip_middle(&cookie)))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "invalid_session").await;
}
