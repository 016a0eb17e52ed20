//! The login binding: `state` (tampered, replayed, from another browser), the ID token's
//! `nonce`, `login/start`, one login transaction per browser, and the end of the previous
//! session at a new login.

use super::*;

// ---------------------------------------------------------------------------------------
// state: tampered, replayed, from another browser; codes are never replayed

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_state_must_be_known_unused_and_from_this_browser() {
    let env = Env::start(Setup::default()).await;
    let browser = OpBrowser::new();

    let started = env.start_login(Some("/after"), "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let back = env.authorize(&browser, &started.authorization_url).await;
    let state = query_param(&back, "state").unwrap();
    let code = query_param(&back, "code").unwrap();

    // A tampered state is unknown (and leaves the real transaction alone).
    let tampered = with_param(&back, "state", Some(&flip_first(&state)));
    expect_error(
        env.callback(&tampered, &binding).await,
        400,
        "invalid_state",
    )
    .await;
    // A missing state too; a missing code is an invalid request.
    let no_state = with_param(&back, "state", None);
    expect_error(
        env.callback(&no_state, &binding).await,
        400,
        "invalid_state",
    )
    .await;
    let no_code = with_param(&back, "code", None);
    expect_error(
        env.callback(&no_code, &binding).await,
        400,
        "invalid_request",
    )
    .await;

    // A response naming another issuer (RFC 9207 mix-up) is refused, and leaves the real
    // transaction alone.
    assert!(
        query_param(&back, "iss").is_some(),
        "the provider sends iss: {back}"
    );
    let other_issuer = with_param(&back, "iss", Some("https://evil.test"));
    expect_error(
        env.callback(&other_issuer, &binding).await,
        400,
        "issuer_mismatch",
    )
    .await;

    // The real callback works once…
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.status(), 302, "{}", env.gw.log());
    let cookie = cookie_value(&set_cookie_for(resp.headers(), COOKIE).expect("session cookie"));
    expect_echo(env.api(&cookie).await).await;
    // …and a replay of the same URL is refused before the code reaches the provider.
    let resp = env.callback(&back, &binding).await;
    assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
    expect_error(resp, 400, "invalid_state").await;
    // The same replay from a browser whose session is live (a reload, or the back button
    // after the login worked) goes back to the application: no error beside a valid
    // session, no new session, and the code still never reaches the provider.
    let with_session = format!("{binding}; {COOKIE}={cookie}");
    let resp = env.callback(&back, &with_session).await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        crate::common::agent::POST_LOGIN
    );
    assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
    expect_echo(env.api(&cookie).await).await;
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );
    assert_eq!(stat(&stats, &["authorization_code_reuse"]), 0, "{stats}");

    // The used code with a fresh state (a new login in the same browser): bffgate sends
    // it with the new transaction's verifier, the provider refuses (PKCE), nothing burns.
    // The old login cookie names a finished login: it is not adopted, a new one is minted.
    let fresh = env.start_login(Some("/after"), &binding).await;
    let fresh_binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(
            fresh
                .login_set_cookie
                .as_deref()
                .expect("a new login cookie")
        )
    );
    assert_ne!(fresh_binding, binding);
    let replay = with_param(&back, "state", Some(&fresh.param("state")));
    assert_eq!(query_param(&replay, "code").as_deref(), Some(code.as_str()));
    expect_error(
        env.callback(&replay, &fresh_binding).await,
        400,
        "login_failed",
    )
    .await;
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grant_errors", "invalid_grant"]),
        1,
        "{stats}"
    );
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );
    // The first session is untouched (the provider did not revoke its grant).
    expect_echo(env.api(&cookie).await).await;

    // Another browser: no login cookie at all, or its own login cookie.
    for other in [
        "",
        "bff_session_login=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        let started = env.start_login(Some("/after"), "").await;
        let back = env
            .authorize(&OpBrowser::new(), &started.authorization_url)
            .await;
        let resp = env.callback(&back, other).await;
        assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
        expect_error(resp, 400, "invalid_state").await;
    }
    // Those two, and the two replays above (its browser's login was over): no login of
    // this browser was found.
    assert_eq!(
        metric_value(&env.gw, "bff_logins_total{outcome=\"binding_mismatch\"}").await,
        4.0
    );
    // Those codes were never exchanged.
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );
}

/// The provider answers the authorization request with an error (here `prompt=none`
/// without a provider session): the browser goes back to the SPA with `login_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_error_at_the_callback_goes_back_to_the_spa() {
    let env = Env::start(Setup::default()).await;
    let started = env.start_login(Some("/after"), "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let silent = with_param(&started.authorization_url, "prompt", Some("none"));
    let back = env.authorize(&OpBrowser::new(), &silent).await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("login_required")
    );
    assert!(query_param(&back, "code").is_none());
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.status(), 302);
    assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        (location.origin().ascii_serialization(), location.path()),
        ("http://app.test".to_string(), "/after")
    );
    assert_eq!(
        query_param(&location, "login_error").as_deref(),
        Some("login_required")
    );
    // The provider's description comes along as text (oidc-provider explains the error).
    assert!(query_param(&location, "login_error_description").is_some_and(|d| !d.is_empty()));
    // The transaction is over.
    let code_back = with_param(&with_param(&back, "error", None), "code", Some("x"));
    expect_error(
        env.callback(&code_back, &binding).await,
        400,
        "invalid_state",
    )
    .await;
}

/// The provider's error is kept whole (not filtered to lowercase letters), its description
/// passed on bounded and without control characters; the SPA gets them URL-encoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_error_is_kept_whole() {
    let env = Env::start(Setup::default()).await;
    let started = env.start_login(Some("/after"), "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let state = query_param(&started.authorization_url, "state").unwrap();
    let error = "Your account is locked: call +1 555 0100 & ask for <Ops>";
    let description = format!("<script>alert(1)</script>\nsecond line {}", "x".repeat(400));
    let mut back = url::Url::parse(&env.gw.url("/bff/callback")).unwrap();
    back.query_pairs_mut()
        .append_pair("state", &state)
        .append_pair("error", error)
        .append_pair("error_description", &description);
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.status(), 302);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert_eq!(
        query_param(&location, "login_error").as_deref(),
        Some(error)
    );
    let passed = query_param(&location, "login_error_description").unwrap();
    assert!(
        passed.starts_with("<script>alert(1)</script>second line x"),
        "{passed}"
    );
    assert_eq!(passed.chars().count(), 300);
    assert!(!passed.chars().any(char::is_control));
    // Raw text never reaches the Location header unencoded.
    let raw = resp.headers()["location"].to_str().unwrap();
    assert!(!raw.contains('<') && !raw.contains(' '), "{raw}");
    assert!(env
        .gw
        .log()
        .contains("the provider answered the login with an error"));
}

// ---------------------------------------------------------------------------------------
// nonce

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_token_with_another_nonce_or_none_is_refused() {
    let env = Env::start(Setup::default()).await;
    let browser = OpBrowser::new();

    // A pure nonce mismatch: the browser alters the nonce of bffgate's authorization
    // request. The code is bound to bffgate's PKCE challenge, so the exchange succeeds at
    // the provider; the ID token then carries the wrong nonce.
    let mut exchanged = 0;
    for nonce in [Some("an-attacker-chosen-nonce-0123456789abcdef"), None] {
        let started = env.start_login(Some("/after"), "").await;
        let binding = format!(
            "{LOGIN_COOKIE}={}",
            cookie_value(started.login_set_cookie.as_deref().unwrap())
        );
        let altered = with_param(&started.authorization_url, "nonce", nonce);
        let back = env.authorize(&browser, &altered).await;
        let resp = env.callback(&back, &binding).await;
        assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
        expect_error(resp, 400, "login_failed").await;
        exchanged += 1;
        let stats = env.stats().await;
        assert_eq!(
            stat(&stats, &["grants", "authorization_code"]),
            exchanged,
            "the provider did not hand out tokens, so this was not the nonce check: {stats}"
        );
        assert_eq!(
            stat(&stats, &["grant_errors", "invalid_grant"]),
            0,
            "{stats}"
        );
    }
    assert!(
        env.gw.log().contains("ID token refused") || env.gw.log().contains("nonce"),
        "the gateway did not log why: {}",
        env.gw.log()
    );

    // Two logins in one browser (B replaces A); login A's code delivered with login B's
    // state: bffgate uses B's verifier and nonce, the provider refuses the PKCE verifier.
    let a = env.start_login(Some("/a"), "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(a.login_set_cookie.as_deref().unwrap())
    );
    let b = env.start_login(Some("/b"), &binding).await;
    assert_ne!(a.param("nonce"), b.param("nonce"));
    let back_a = env.authorize(&browser, &a.authorization_url).await;
    let crossed = with_param(&back_a, "state", Some(&b.param("state")));
    expect_error(env.callback(&crossed, &binding).await, 400, "login_failed").await;
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grant_errors", "invalid_grant"]),
        1,
        "{stats}"
    );
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        2,
        "{stats}"
    );
    // A was replaced by B, and B's transaction was used by the crossed callback: A's own
    // callback finds nothing.
    let resp = env.callback(&back_a, &binding).await;
    assert!(set_cookie_for(resp.headers(), COOKIE).is_none());
    expect_error(resp, 400, "invalid_state").await;
    assert_eq!(
        metric_value(&env.gw, "bff_logins_total{outcome=\"failed\"}").await,
        3.0
    );
}

// ---------------------------------------------------------------------------------------
// login/start; one login transaction per browser; the previous session ends

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_login_per_browser_and_a_new_login_ends_the_previous_session() {
    let env = Env::start(Setup::default()).await;
    let discovery = env.provider.discovery().await;

    let resp = env
        .post(
            &login_path("/bff/login/start", Some("/a")),
            None,
            Some(APP_ORIGIN),
            true,
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"]
            .to_str()
            .unwrap(),
        APP_ORIGIN
    );
    let login_set = set_cookie_for(resp.headers(), LOGIN_COOKIE).expect("login cookie");
    assert_eq!(set_cookie_headers(resp.headers()).len(), 1);
    let binding = format!("{LOGIN_COOKIE}={}", cookie_value(&login_set));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    let az_a = Url::parse(
        body["authorization_url"]
            .as_str()
            .expect("authorization_url"),
    )
    .unwrap();
    assert_eq!(
        az_a.as_str().split('?').next(),
        discovery["authorization_endpoint"].as_str()
    );
    assert_eq!(
        query_param(&az_a, "code_challenge_method").as_deref(),
        Some("S256")
    );

    // A second login in the same browser (another tab) keeps the login cookie (the same
    // binding, its lifetime renewed) and replaces the first login.
    let b = env.start_login(Some("/b"), &binding).await;
    let again = b.login_set_cookie.as_deref().expect("login cookie renewed");
    assert_eq!(cookie_value(again), cookie_value(&login_set));
    assert_ne!(query_param(&az_a, "state"), Some(b.param("state")));

    // A's callback finds B's transaction (another state) and is refused, leaving B alone;
    // B completes, and the login cookie is cleared.
    let browser = OpBrowser::new();
    let back_a = env.authorize(&browser, &az_a).await;
    let back_b = env.authorize(&browser, &b.authorization_url).await;
    expect_error(env.callback(&back_a, &binding).await, 400, "invalid_state").await;
    let resp = env.callback(&back_b, &binding).await;
    assert_eq!(resp.status(), 302, "{}", env.gw.log());
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        "http://app.test/b"
    );
    let cleared = set_cookie_for(resp.headers(), LOGIN_COOKIE).expect("login cookie cleared");
    assert!(
        cookie_attributes(&cleared).contains(&"Max-Age=0".to_string()),
        "{cleared}"
    );
    assert_eq!(cookie_value(&cleared), "");
    let cookie_b = cookie_value(&set_cookie_for(resp.headers(), COOKIE).unwrap());
    expect_echo(env.api(&cookie_b).await).await;
    assert_eq!(
        metric_value(&env.gw, "bff_logins_total{outcome=\"invalid_state\"}").await,
        1.0
    );

    // A new login while the browser holds session B: the Strict session cookie is sent to
    // `/bff/login` (same-site) but not on the provider's cross-site redirect back. The
    // session is recorded at the start and ended at the callback.
    let c = env
        .start_login(Some("/c"), &session_cookie(&cookie_b))
        .await;
    let binding_c = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(c.login_set_cookie.as_deref().expect("new login cookie"))
    );
    assert_ne!(
        binding_c, binding,
        "a finished login's cookie is not adopted"
    );
    let back_c = env.authorize(&browser, &c.authorization_url).await;
    let resp = env.callback(&back_c, &binding_c).await;
    assert_eq!(resp.status(), 302, "{}", env.gw.log());
    let cookie_c = cookie_value(&set_cookie_for(resp.headers(), COOKIE).unwrap());
    assert_ne!(cookie_c, cookie_b);
    expect_echo(env.api(&cookie_c).await).await;
    expect_error(env.api(&cookie_b).await, 401, "session_expired").await;

    // The same when the session cookie is visible at the callback (e.g. `SameSite=Lax`).
    let d = env.start_login(Some("/d"), "").await;
    let binding_d = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(d.login_set_cookie.as_deref().expect("new login cookie"))
    );
    let back_d = env.authorize(&browser, &d.authorization_url).await;
    let resp = env
        .callback(
            &back_d,
            &format!("{binding_d}; {}", session_cookie(&cookie_c)),
        )
        .await;
    assert_eq!(resp.status(), 302, "{}", env.gw.log());
    let cookie_d = cookie_value(&set_cookie_for(resp.headers(), COOKIE).unwrap());
    expect_echo(env.api(&cookie_d).await).await;
    expect_error(env.api(&cookie_c).await, 401, "session_expired").await;
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        3,
        "{stats}"
    );
    assert_eq!(
        stat(&stats, &["logins", "success"]),
        1,
        "single sign-on after the first time"
    );
}
