//! Logout: CSRF on `POST /bff/logout`, and back-channel logout (with replay, and with a
//! store failure in the middle).

use super::*;

// ---------------------------------------------------------------------------------------
// CSRF on logout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_without_csrf_header_or_from_a_foreign_origin_is_refused() {
    let env = Env::start(Setup::default()).await;
    let me = env.login(&OpBrowser::new()).await;

    let cases = [
        (Some(APP_ORIGIN), false),
        (Some("http://evil.test"), true),
        (Some("http://app.test.evil.test"), true),
        (None, true),
        (None, false),
    ];
    for (origin, csrf) in cases {
        let resp = env
            .post("/bff/logout", Some(&me.cookie), origin, csrf)
            .await;
        assert!(
            set_cookie_for(resp.headers(), COOKIE).is_none(),
            "a refused logout touched the cookie ({origin:?}, csrf {csrf})"
        );
        expect_error(resp, 403, "csrf_violation").await;
    }
    // login/start is CSRF-protected the same way.
    let resp = env
        .post("/bff/login/start", None, Some(APP_ORIGIN), false)
        .await;
    expect_error(resp, 403, "csrf_violation").await;

    let s = env.session(&me.cookie).await;
    assert_eq!(s["authenticated"], true, "{s}");
    expect_echo(env.api(&me.cookie).await).await;
    assert_eq!(stat(&env.stats().await, &["revocation"]), 0);
    assert_eq!(
        metric_value(&env.gw, "bff_csrf_rejections_total{route=\"agent_logout\"}").await,
        5.0
    );
}

// ---------------------------------------------------------------------------------------
// Back-channel logout

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_exactly_the_named_session_and_tokens_are_single_use() {
    let env = Env::start(Setup {
        relay: true,
        session_claims: Some(vec!["sub", "name", "sid"]),
        ..Setup::default()
    })
    .await;
    let relay = env.relay.as_ref().unwrap();
    let (b1, b2) = (OpBrowser::new(), OpBrowser::new());
    let one = env.login(&b1).await;
    let two = env.login(&b2).await;
    let sid1 = env.session(&one.cookie).await["claims"]["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    let sid2 = env.session(&two.cookie).await["claims"]["sid"]
        .as_str()
        .expect("sid")
        .to_owned();
    assert_ne!(sid1, sid2, "two provider sessions, two sids");

    // Browser 1 logs out at the provider itself (another tab, another app): the provider
    // tells bffgate, which ends that session only.
    b1.follow_logout(&env.provider.url("/session/end"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.provider.log()));
    let tokens = relay.tokens();
    assert_eq!(tokens.len(), 1, "{}", env.provider.log());
    assert_eq!(relay.statuses(), vec![200], "{}", env.gw.log());
    let claims = jwt_payload(&tokens[0]);
    assert_eq!(claims["sid"], sid1.as_str(), "{claims}");
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert!(claims.get("nonce").is_none(), "{claims}");

    expect_error(env.api(&one.cookie).await, 401, "session_expired").await;
    expect_echo(env.api(&two.cookie).await).await;

    // The same token again: a replay.
    let resp = env.backchannel(&[("logout_token", &tokens[0])]).await;
    expect_error(resp, 400, "invalid_logout_token").await;
    expect_echo(env.api(&two.cookie).await).await;

    // The provider ends alice's remaining session: session two goes too.
    let answer = env.provider.backchannel_logout("alice").await;
    assert_eq!(answer["sessions"], 1, "{answer}");
    assert_eq!(answer["sent"], 1, "{answer}");
    let tokens = relay.tokens();
    assert_eq!(tokens.len(), 2);
    assert_eq!(jwt_payload(&tokens[1])["sid"], sid2.as_str());
    assert_eq!(relay.statuses(), vec![200, 200]);
    expect_error(env.api(&two.cookie).await, 401, "session_expired").await;

    // Tampered, garbage, missing.
    let mut forged = tokens[1].clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let resp = env.backchannel(&[("logout_token", &forged)]).await;
    expect_error(resp, 400, "invalid_logout_token").await;
    let resp = env.backchannel(&[("logout_token", "not-a-jwt")]).await;
    expect_error(resp, 400, "invalid_logout_token").await;
    let resp = env.backchannel(&[("something_else", "x")]).await;
    expect_error(resp, 400, "invalid_request").await;
    let huge = "a".repeat(70 * 1024);
    let resp = env.backchannel(&[("logout_token", &huge)]).await;
    expect_error(resp, 413, "body_too_large").await;

    let stats = env.stats().await;
    assert_eq!(stat(&stats, &["backchannel_logout", "error"]), 0, "{stats}");
    assert_eq!(
        metric_value(&env.gw, "bff_logouts_total{outcome=\"backchannel\"}").await,
        2.0
    );
    assert_eq!(
        metric_value(&env.gw, "bff_logouts_total{outcome=\"backchannel_replay\"}").await,
        1.0
    );
}

// ---------------------------------------------------------------------------------------
// Back-channel logout with a store failure in the middle

/// The store fails while a back-channel logout is handled (Redis refuses `DEL`): bffgate
/// answers 503 with the `jti` unclaimed, so the provider's retry of the same logout token,
/// once the store is back, ends the session instead of being refused as a replay. A third
/// delivery is the replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_retried_after_a_store_failure_is_not_a_replay() {
    use crate::common::redis::redis_cli;
    let env = Env::start(Setup {
        redis: true,
        relay: true,
        ..Setup::default()
    })
    .await;
    let relay = env.relay.as_ref().unwrap();
    let port = env._redis.as_ref().expect("redis").port();
    let browser = OpBrowser::new();
    let me = env.login(&browser).await;

    assert!(redis_cli(port, &["ACL", "SETUSER", "default", "-del"]).is_some());
    browser
        .follow_logout(&env.provider.url("/session/end"))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", env.provider.log()));
    let tokens = relay.tokens();
    assert_eq!(tokens.len(), 1, "{}", env.provider.log());
    assert_eq!(relay.statuses(), vec![503], "{}", env.gw.log());
    // The session could not be ended: it is still there.
    expect_echo(env.api(&me.cookie).await).await;

    assert!(redis_cli(port, &["ACL", "SETUSER", "default", "+del"]).is_some());
    let resp = env.backchannel(&[("logout_token", &tokens[0])]).await;
    assert_eq!(resp.status(), 200, "{}", env.gw.log());
    expect_error(env.api(&me.cookie).await, 401, "session_expired").await;

    let resp = env.backchannel(&[("logout_token", &tokens[0])]).await;
    expect_error(resp, 400, "invalid_logout_token").await;
    assert_eq!(
        metric_value(&env.gw, "bff_logouts_total{outcome=\"backchannel\"}").await,
        1.0
    );
    assert_eq!(
        metric_value(&env.gw, "bff_logouts_total{outcome=\"backchannel_replay\"}").await,
        1.0
    );
}
