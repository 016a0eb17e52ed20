//! The whole journey: login through the provider, the session it creates, token
//! injection, userinfo and logout with revocation, on both session stores.

use super::*;

// ---------------------------------------------------------------------------------------
// The whole journey

async fn full_login(setup: Setup) {
    let env = Env::start(setup).await;
    let discovery = env.provider.discovery().await;
    let browser = OpBrowser::new();
    let t0 = now();

    // /bff/login: 302 to the provider's authorization endpoint with PKCE, state, nonce.
    let started = env.start_login(Some("/after"), "").await;
    let az = &started.authorization_url;
    let mut endpoint = az.clone();
    endpoint.set_query(None);
    assert_eq!(endpoint.as_str(), discovery["authorization_endpoint"]);
    assert_eq!(started.param("client_id"), env.provider.client_id());
    assert_eq!(started.param("response_type"), "code");
    assert_eq!(started.param("redirect_uri"), env.callback_url());
    assert_eq!(started.param("code_challenge_method"), "S256");
    assert_eq!(started.param("code_challenge").len(), 43, "{az}");
    let scopes = started.param("scope");
    for s in ["openid", "profile", "email", "offline_access"] {
        assert!(
            scopes.split(' ').any(|x| x == s),
            "scope {scopes:?} lacks {s}"
        );
    }
    let (state, nonce) = (started.param("state"), started.param("nonce"));
    assert!(state.len() >= 32 && nonce.len() >= 32, "{az}");
    assert_ne!(state, nonce);
    // The login-binding cookie: HttpOnly, Lax (the way back is a cross-site navigation),
    // scoped to the agent, as long as the login may take; no session cookie yet.
    let login_set = started.login_set_cookie.clone().expect("login cookie");
    let login_cookie = cookie_value(&login_set);
    assert_eq!(login_cookie.len(), 43, "{login_set}");
    assert_eq!(
        cookie_attributes(&login_set),
        vec!["Path=/bff", "HttpOnly", "SameSite=Lax", "Max-Age=600"],
        "{login_set}"
    );
    assert_eq!(started.set_cookies.len(), 1, "{:?}", started.set_cookies);

    // The provider's login form, then back to bffgate's callback with code, state, iss.
    let back = env.authorize(&browser, az).await;
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.as_str()));
    assert_eq!(query_param(&back, "iss"), Some(env.provider.issuer()));
    assert!(query_param(&back, "code").is_some_and(|c| !c.is_empty()));
    assert_eq!(stat(&env.stats().await, &["logins", "success"]), 1);

    // The callback: 302 to return_to on the post-login origin, with the session cookie.
    let resp = env
        .callback(&back, &format!("{LOGIN_COOKIE}={login_cookie}"))
        .await;
    let (status, headers, callback_text) = whole_text(resp).await;
    assert_eq!(status, 302, "{callback_text}\n{}", env.gw.log());
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some("http://app.test/after")
    );
    let set = set_cookie_for(&headers, COOKIE).expect("session cookie");
    let cookie = cookie_value(&set);
    let attrs = cookie_attributes(&set);
    assert_eq!(
        &attrs[..3],
        ["Path=/", "HttpOnly", "SameSite=Strict"],
        "{set}"
    );
    let max_age: u64 = attrs[3]
        .strip_prefix("Max-Age=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Max-Age last in {set}"));
    assert!((ABSOLUTE - 5..=ABSOLUTE).contains(&max_age), "{set}");
    let stats = env.stats().await;
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );

    // /bff/session: who, without any token.
    let resp = env.get("/bff/session", &session_cookie(&cookie)).await;
    assert_eq!(resp.status(), 200);
    let session_text = resp.text().await.unwrap();
    let s: Value = serde_json::from_str(&session_text).unwrap();
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token_expires_at",
            "authenticated",
            "claims",
            "ends_at",
            "expires_at",
            "idle_expires_at",
            "logout_url",
            "sub"
        ],
        "{s}"
    );
    assert_eq!(s["authenticated"], true);
    // When it really ends: the idle timeout (30m in test configs) from now, or the hard
    // end, the sooner; and where to log out.
    let idle = s["idle_expires_at"].as_u64().unwrap();
    assert!(idle.abs_diff(crate::common::now() + 30 * 60) <= 2, "{s}");
    assert_eq!(
        s["ends_at"].as_u64().unwrap(),
        idle.min(s["expires_at"].as_u64().unwrap())
    );
    assert_eq!(s["logout_url"], "/bff/logout");
    assert_eq!(s["sub"], "alice");
    assert_eq!(
        s["claims"],
        json!({"sub": "alice", "name": "Alice Liddell", "email": "alice@example.com"})
    );
    let t1 = now();
    let expires_at = s["expires_at"].as_u64().expect("expires_at");
    assert!((t0 + ABSOLUTE..=t1 + ABSOLUTE).contains(&expires_at), "{s}");
    let at_exp = s["access_token_expires_at"]
        .as_u64()
        .expect("access_token_expires_at");
    assert!((t0 + ACCESS_TTL..=t1 + ACCESS_TTL).contains(&at_exp), "{s}");
    let mut all = Vec::new();
    strings(&s, &mut all);
    assert!(
        all.iter().all(|x| x.len() < 32 && !x.starts_with("eyJ")),
        "a token-like string in /bff/session: {s}"
    );

    // An API call: the upstream gets the provider's access token, never the cookie.
    let resp = env
        .get(
            "/api/x",
            &format!("theme=dark; {}", session_cookie(&cookie)),
        )
        .await;
    let seen = expect_echo(resp).await;
    let bearer = seen
        .header("authorization")
        .expect("Authorization upstream");
    let at = bearer
        .strip_prefix("Bearer ")
        .expect("a Bearer token")
        .to_owned();
    assert!(at.len() >= 32, "{bearer}");
    assert_eq!(
        seen.cookies(),
        vec![("theme".to_owned(), "dark".to_owned())]
    );
    for v in seen.header_all("cookie") {
        assert!(!v.contains(COOKIE) && !v.contains(&cookie), "{v}");
    }
    let info = env.provider.introspect(&at).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!(info["sub"], "alice", "{info}");
    assert_eq!(info["client_id"], env.provider.client_id(), "{info}");
    assert!(
        !callback_text.contains(&at),
        "access token in the callback answer"
    );
    assert!(!session_text.contains(&at), "access token in /bff/session");

    // /bff/userinfo: the provider's answer for that token.
    let resp = env.get("/bff/userinfo", &session_cookie(&cookie)).await;
    assert_eq!(resp.status(), 200);
    let ui: Value = resp.json().await.unwrap();
    assert_eq!(ui["sub"], "alice", "{ui}");
    assert_eq!(ui["email"], "alice@example.com", "{ui}");
    assert_eq!(ui["name"], "Alice Liddell", "{ui}");
    assert_eq!(stat(&env.stats().await, &["userinfo", "success"]), 1);
    // The SPA asks again: the answer comes from bffgate's short cache, not the provider.
    for _ in 0..3 {
        let again = env.get("/bff/userinfo", &session_cookie(&cookie)).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.json::<Value>().await.unwrap()["sub"], "alice");
    }
    assert_eq!(stat(&env.stats().await, &["userinfo", "success"]), 1);

    // Logout: a one-time link to the provider's end-session URL, the cookie cleared, the
    // session gone.
    let resp = env
        .post("/bff/logout", Some(&cookie), Some(APP_ORIGIN), true)
        .await;
    assert_eq!(resp.status(), 200);
    let cleared = set_cookie_for(resp.headers(), COOKIE).expect("logout clears the cookie");
    assert_eq!(cookie_value(&cleared), "", "{cleared}");
    assert!(
        cookie_attributes(&cleared).contains(&"Max-Age=0".to_owned()),
        "{cleared}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body.as_object().map(|o| o.len()), Some(1), "{body}");
    // No token in the answer: a one-time link on bffgate…
    let link = Url::parse(body["logout_url"].as_str().expect("logout_url")).unwrap();
    assert_eq!(link.path(), "/bff/logout/end", "{link}");
    assert_eq!(link.query_pairs().count(), 1, "{link}");
    let handle = query_param(&link, "handle").expect("handle");
    assert!(handle.len() >= 43, "{link}");
    let link_path = format!("/bff/logout/end?{}", link.query().unwrap_or_default());
    // …that redirects, once, to the provider's end-session URL with the hint added there.
    let resp = env.get(&link_path, "").await;
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()
            .get("referrer-policy")
            .and_then(|v| v.to_str().ok()),
        Some("no-referrer")
    );
    let logout_url = Url::parse(
        resp.headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("location"),
    )
    .unwrap();
    expect_error(env.get(&link_path, "").await, 400, "invalid_request").await;
    let mut end = logout_url.clone();
    end.set_query(None);
    assert_eq!(end.as_str(), discovery["end_session_endpoint"]);
    assert_eq!(
        query_param(&logout_url, "client_id").as_deref(),
        Some(env.provider.client_id())
    );
    assert_eq!(
        query_param(&logout_url, "post_logout_redirect_uri").as_deref(),
        Some(POST_LOGOUT)
    );
    let id_token = query_param(&logout_url, "id_token_hint").expect("id_token_hint");
    let claims = jwt_payload(&id_token);
    assert_eq!(claims["iss"], env.provider.issuer(), "{claims}");
    assert_eq!(claims["aud"], env.provider.client_id(), "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    // The ID token of this very login.
    assert_eq!(claims["nonce"].as_str(), Some(nonce.as_str()), "{claims}");
    assert!(
        !callback_text.contains(&id_token),
        "ID token in the callback answer"
    );
    assert!(
        !session_text.contains(&id_token),
        "ID token in /bff/session"
    );

    expect_error(env.api(&cookie).await, 401, "session_expired").await;
    let s = env.session(&cookie).await;
    assert_eq!(s, json!({"authenticated": false}));
    // Logging out again: nothing to end, no URL, the cookie cleared all the same.
    let resp = env
        .post("/bff/logout", Some(&cookie), Some(APP_ORIGIN), true)
        .await;
    assert_eq!(resp.status(), 200);
    assert!(set_cookie_for(resp.headers(), COOKIE).is_some_and(|c| cookie_value(&c).is_empty()));
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"logout_url": null})
    );

    // The refresh token was revoked at the provider, which revokes the whole grant: the
    // access token the upstream saw is dead too.
    let revoked = eventually(Duration::from_secs(5), || async {
        stat(&env.stats().await, &["revocation"]) == 1
    })
    .await;
    assert!(
        revoked,
        "no revocation at the provider: {}",
        env.stats().await
    );
    let info = env.provider.introspect(&at).await;
    assert_eq!(info["active"], false, "{info}");

    // The provider accepts the logout URL (id_token_hint valid, redirect registered).
    let landed = browser
        .follow_logout(logout_url.as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.provider.log()));
    assert!(landed.as_str().starts_with(POST_LOGOUT), "{landed}");
    assert_eq!(stat(&env.stats().await, &["end_session"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_login_session_api_userinfo_logout_memory_store() {
    full_login(Setup::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_login_session_api_userinfo_logout_redis_store() {
    full_login(Setup {
        redis: true,
        ..Setup::default()
    })
    .await;
}

/// With `client_secret_post` the client authenticates in the request body everywhere:
/// the code exchange, and the revocation at logout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_post_login_and_logout_revokes_the_refresh_token() {
    let env = Env::start(Setup {
        client_secret_post: true,
        ..Setup::default()
    })
    .await;
    let me = env.login(&OpBrowser::new()).await;
    let seen = expect_echo(env.api(&me.cookie).await).await;
    let at = seen.header("authorization").unwrap()["Bearer ".len()..].to_owned();
    assert_eq!(env.provider.introspect(&at).await["active"], true);

    let resp = env
        .post("/bff/logout", Some(&me.cookie), Some(APP_ORIGIN), true)
        .await;
    assert_eq!(resp.status(), 200);
    expect_error(env.api(&me.cookie).await, 401, "session_expired").await;
    let revoked = eventually(Duration::from_secs(5), || async {
        stat(&env.stats().await, &["revocation"]) == 1
    })
    .await;
    assert!(
        revoked,
        "the refresh token was not revoked at the provider; stats {}; gateway log:\n{}",
        env.stats().await,
        env.gw.log()
    );
    assert_eq!(env.provider.introspect(&at).await["active"], false);
}
