//! The provider having a bad day: its token endpoint made to fail on purpose (the provider's
//! `/__faults` answers every token request with a chosen status and error, after a chosen
//! delay), its signing key rotated mid-session, and a flood of tokens naming unknown keys.

use super::*;

/// `GET /api/x` on instance 0, timed: `(status, code, Retry-After, took)`.
async fn timed_api(env: &Env, cookie: &str) -> (u16, String, Option<String>, Duration) {
    let sent = Instant::now();
    let resp = env.api(0, cookie).await;
    let took = sent.elapsed();
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.text().await.unwrap_or_default();
    let code = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| v["code"].as_str().map(str::to_owned))
        .unwrap_or(text);
    (status, code, retry_after, took)
}

/// One gateway on a real Redis, access tokens living 3 s; logs alice in and waits until
/// her access token has expired.
async fn expired_session(redis: &RedisProcess) -> (Env, String, String) {
    let env = Env::start(
        &Store::Single(redis.url()),
        1,
        provider_settings(3, true),
        "1s",
    )
    .await;
    let cookie = env.login(0).await;
    let login_token = env.api_token(0, &cookie).await;
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    (env, cookie, login_token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_every_provider_failure_but_invalid_grant() {
    let redis = RedisProcess::start();
    let (env, cookie, login_token) = expired_session(&redis).await;

    // 5xx, temporarily_unavailable, invalid_client (a client-secret rotation), another
    // refusal, and a token endpoint slower than the 10 s call limit.
    let faults = [
        (500, "server_error", 0),
        (503, "temporarily_unavailable", 0),
        (401, "invalid_client", 0),
        (400, "invalid_request", 0),
        (503, "temporarily_unavailable", 11_000),
    ];
    for (status, error, delay_ms) in faults {
        env.provider
            .set_token_fault(json!({ "status": status, "error": error, "delay_ms": delay_ms }))
            .await;
        let (got, code, retry_after, took) = timed_api(&env, &cookie).await;
        assert_eq!(
            (got, code.as_str()),
            (503, "refresh_unavailable"),
            "fault {status} {error}\n{}",
            env.logs()
        );
        assert_eq!(retry_after.as_deref(), Some("1"), "fault {status} {error}");
        assert!(
            took < Duration::from_secs(6),
            "fault {status} {error}: answered after {took:?} (refresh_lock_wait is 5 s)"
        );
        let s = env.session(0, &cookie).await;
        assert_eq!(s["authenticated"], true, "fault {status} {error}: {s}");
        // Let the refresh finish (the slow one runs into the call limit) and the failure
        // hold pass before the next fault.
        tokio::time::sleep(Duration::from_millis(delay_ms.min(10_000) + 2_000)).await;
    }
    let stats = env.provider.stats().await;
    assert_eq!(
        stat(&stats, &["token_faults"]),
        faults.len() as u64,
        "{stats}"
    );

    // The provider recovers: the same session refreshes.
    env.provider.set_token_fault(Value::Null).await;
    let token = env.api_token(0, &cookie).await;
    assert_ne!(token, login_token);
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
    assert_eq!(stat(&stats, &["refresh_token_reuse"]), 0, "{stats}");

    // A real invalid_grant: the provider revokes the grant (no back-channel logout is
    // configured, so bffgate learns it at the next refresh) and the session ends.
    let answer = env.provider.backchannel_logout(USER).await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    let (got, code, _, _) = timed_api(&env, &cookie).await;
    assert_eq!(
        (got, code.as_str()),
        (401, "session_expired"),
        "{}",
        env.logs()
    );
    let s = env.session(0, &cookie).await;
    assert_eq!(s["authenticated"], false, "{s}");
    let stats = env.provider.stats().await;
    assert_eq!(
        stat(&stats, &["grant_errors", "invalid_grant"]),
        1,
        "{stats}"
    );
    assert_eq!(
        env.metric(0, "bff_refreshes_total{outcome=\"invalid_grant\"}")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_against_a_failing_provider_makes_one_token_call() {
    let redis = RedisProcess::start();
    let (env, cookie, login_token) = expired_session(&redis).await;
    // Fails after 7 s: longer than refresh_lock_wait (5 s), so every request stops waiting.
    env.provider
        .set_token_fault(json!({ "status": 500, "error": "server_error", "delay_ms": 7_000 }))
        .await;
    let env = Arc::new(env);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (env, cookie) = (Arc::clone(&env), cookie.clone());
        tasks.push(tokio::spawn(async move { timed_api(&env, &cookie).await }));
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut slowest = Duration::ZERO;
    for t in tasks {
        let (status, code, retry_after, took) = t.await.expect("task");
        slowest = slowest.max(took);
        *outcomes
            .entry(format!("{status} {code} retry-after={retry_after:?}"))
            .or_default() += 1;
    }
    eprintln!(
        "storm: 200 requests in {:?}, slowest {slowest:?}: {outcomes:?}",
        started.elapsed()
    );
    assert_eq!(
        outcomes.get("503 refresh_unavailable retry-after=Some(\"1\")"),
        Some(&200),
        "{outcomes:?}\n{}",
        env.logs()
    );
    assert!(
        slowest <= Duration::from_secs(6),
        "slowest answer {slowest:?} (refresh_lock_wait 5 s + 1 s)"
    );
    // The one call fails at 7 s; after it, and the failure hold, the provider is back.
    tokio::time::sleep_until((started + Duration::from_millis(8_300)).into()).await;
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["token_faults"]), 1, "{stats}");
    env.provider.set_token_fault(Value::Null).await;
    // Under load the failed call may end a little later: until the hold is over the
    // answer is still the shared failure.
    let mut answers = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let token = loop {
        let (status, code, _, _) = timed_api(&env, &cookie).await;
        if status == 200 {
            break env.api_token(0, &cookie).await;
        }
        answers.push(format!("{status} {code}"));
        assert!(
            status == 503 && code == "refresh_unavailable" && Instant::now() < deadline,
            "after the provider recovered: {answers:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_ne!(token, login_token);
    assert_eq!(env.session(0, &cookie).await["authenticated"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_signing_key_rotation_keeps_users_logged_in() {
    let redis = RedisProcess::start();
    let mut env = Env::start(
        &Store::Single(redis.url()),
        1,
        provider_settings(3, true),
        "1s",
    )
    .await;
    let cookie = env.login(0).await;
    let login_token = env.api_token(0, &cookie).await;
    let old_kid = env.provider.discovery().await;
    let old_jwks: Value = env
        .http
        .get(old_kid["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks JSON");
    let new_kid = env.provider.rotate_keys().await;
    assert_ne!(old_jwks["keys"][0]["kid"], new_kid.as_str());

    // The refreshed ID token is signed with a key bffgate has never seen.
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    let token = env.api_token(0, &cookie).await;
    assert_ne!(token, login_token);
    assert_eq!(env.session(0, &cookie).await["authenticated"], true);
    let stats = env.provider.stats().await; // since the restart
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
    assert_eq!(stat(&stats, &["jwks"]), 1, "{stats}");
    assert_eq!(
        env.metric(0, "bff_refreshes_total{outcome=\"ok\"}").await,
        1.0,
        "{}",
        env.refresh_outcomes(0).await
    );
    // And again, now with the new key known.
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    assert_ne!(env.api_token(0, &cookie).await, token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tokens_naming_an_unknown_key_cause_one_key_fetch() {
    use base64::Engine;
    let redis = RedisProcess::start();
    let env = Env::start(
        &Store::Single(redis.url()),
        1,
        provider_settings(300, true),
        "1s",
    )
    .await;
    let b64 = |v: Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    let forged = format!(
        "{}.{}.{}",
        b64(json!({ "alg": "RS256", "kid": "not-a-key-of-the-provider", "typ": "logout+jwt" })),
        b64(json!({ "iss": env.provider.issuer(), "sub": USER })),
        "c2lnbmF0dXJl"
    );
    // Keys fetched at discovery are older than the 1 s re-fetch floor by now.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let before = stat(&env.provider.stats().await, &["jwks"]);
    let url = env.gws[0].url("/bff/backchannel-logout");
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (http, url, forged) = (env.http.clone(), url.clone(), forged.clone());
        tasks.push(tokio::spawn(async move {
            http.post(url)
                .form(&[("logout_token", forged)])
                .send()
                .await
                .expect("back-channel request")
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.expect("task"), 400);
    }
    let after = stat(&env.provider.stats().await, &["jwks"]);
    assert_eq!(
        after - before,
        1,
        "JWKS fetches for 40 concurrent unknown-key tokens"
    );
}

/// `/bff/userinfo` with an expired access token refreshes it first, like a proxied call,
/// and passes on the provider's answer for the session's user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_refreshes_an_expired_access_token() {
    let redis = RedisProcess::start();
    let (env, cookie, login_token) = expired_session(&redis).await;
    let resp = env
        .http
        .get(env.gws[0].url("/bff/userinfo"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .expect("userinfo");
    let status = resp.status();
    let info: Value = resp.json().await.expect("userinfo JSON");
    assert_eq!(status, 200, "{info}\n{}", env.logs());
    assert_eq!(info["sub"], USER, "{info}");
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
    assert_eq!(stat(&stats, &["userinfo", "success"]), 1, "{stats}");
    // The proxied call now uses the token userinfo's refresh got.
    assert_ne!(env.api_token(0, &cookie).await, login_token);
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
}

/// The whole path over a TLS Redis: login, proxied calls and an inline refresh with the
/// sessions in a `rediss://` store whose certificate a test CA signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_refresh_over_redis_tls() {
    let redis = crate::common::redis_tls::TlsRedis::start();
    let store = Store::SingleTls(redis.url(), redis.ca_file().display().to_string());
    let env = Env::start(&store, 1, provider_settings(3, true), "1s").await;
    let cookie = env.login(0).await;
    let login_token = env.api_token(0, &cookie).await;
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    assert_ne!(env.api_token(0, &cookie).await, login_token);
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
    let keys = crate::common::redis::redis_cli(redis.port, &["DBSIZE"]).unwrap_or_default();
    assert_ne!(keys.trim(), "0", "no session in the TLS server");
}

/// The provider says how long the refresh token lives (`refresh_expires_in`, 20 s here):
/// the session ends then (well before the 12 h absolute timeout), `/bff/session` says so,
/// and each refresh moves the end with the new refresh token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_token_lifetime_sets_the_session_end() {
    let redis = RedisProcess::start();
    let settings = ProviderSettings {
        refresh_token_ttl: 20,
        extra: json!({ "report_refresh_expires_in": true }),
        ..provider_settings(3, true)
    };
    let env = Env::start(&Store::Single(redis.url()), 1, settings, "1s").await;
    let cookie = env.login(0).await;
    let logged_in = now_f64();
    let s = env.session(0, &cookie).await;
    let end = s["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("no expires_at: {s}"));
    assert!(
        (end as f64 - (logged_in + 20.0)).abs() <= 3.0,
        "session end {end}, login at {logged_in}: {s}"
    );
    let expires_at = env.access_expires_at(0, &cookie).await;
    sleep_until_epoch(expires_at as f64 + 1.3).await;
    let refreshed = now_f64();
    env.api_token(0, &cookie).await;
    let s = env.session(0, &cookie).await;
    let moved = s["expires_at"].as_u64().expect("expires_at");
    assert!(
        moved > end,
        "the refresh did not move the end: {end} -> {moved}"
    );
    assert!(
        (moved as f64 - (refreshed + 20.0)).abs() <= 3.0,
        "session end {moved}, refreshed at {refreshed}"
    );
}
