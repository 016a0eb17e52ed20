//! Refresh after refresh: twenty cycles without a new login, with and without rotation.

use super::*;

// ---------------------------------------------------------------------------------------
// Refresh after refresh

/// Requests every second, alternating the two instances, until the provider has granted
/// `cycles` refreshes (60 s at most). Every request must be forwarded with a token the
/// provider still accepts; no new login may happen. Returns the number of requests.
async fn refresh_cycles(rotate: bool, cycles: u64) -> usize {
    let redis = RedisProcess::start();
    // 2 s access tokens, refreshed 1 s before expiry: about one refresh a second.
    let env = Env::start(
        &Store::Single(redis.url()),
        2,
        provider_settings(2, rotate),
        "1s",
    )
    .await;
    let cookie = env.login(0).await;
    let start = env.provider.stats().await;
    let logins = stat(&start, &["logins", "success"]);
    let codes = stat(&start, &["grants", "authorization_code"]);
    let refreshes_at_start = stat(&start, &["grants", "refresh_token"]);
    assert_eq!(logins, 1, "{start}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut requests = 0usize;
    let mut tokens: BTreeSet<String> = BTreeSet::new();
    let mut refreshes;
    loop {
        // Alternate the instances: each refresh may happen on either.
        let i = requests % 2;
        let token = env.api_token(i, &cookie).await;
        requests += 1;
        let introspected = env.provider.introspect(&token).await;
        let stats = env.provider.stats().await;
        refreshes = stat(&stats, &["grants", "refresh_token"]) - refreshes_at_start;
        assert_eq!(
            introspected["active"],
            true,
            "request {requests} (instance {i}) was forwarded with a token the provider no \
             longer accepts: {introspected}; refresh_token grants so far +{refreshes}; \
             bffgate refreshes ok={} grace_hit={} lock_wait={}\n{}",
            env.metric_sum("bff_refreshes_total{outcome=\"ok\"}").await,
            env.metric_sum("bff_refreshes_total{outcome=\"grace_hit\"}")
                .await,
            env.metric_sum("bff_refreshes_total{outcome=\"lock_wait\"}")
                .await,
            env.logs()
        );
        tokens.insert(token);
        assert_eq!(stat(&stats, &["refresh_token_reuse"]), 0, "{stats}");
        assert_eq!(stats["grant_errors"], json!({}), "{stats}");
        if refreshes >= cycles {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {refreshes} refreshes in 60 s ({requests} requests)\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let end = env.provider.stats().await;
    eprintln!(
        "refresh cycles (rotation {}): {requests} requests, all 200 with an active token; \
         refresh_token grants +{refreshes}; distinct access tokens forwarded {}; logins {}; \
         authorization_code grants {}",
        if rotate { "on" } else { "off" },
        tokens.len(),
        stat(&end, &["logins", "success"]),
        stat(&end, &["grants", "authorization_code"]),
    );
    assert_eq!(
        stat(&end, &["logins", "success"]),
        logins,
        "a new login: {end}"
    );
    assert_eq!(
        stat(&end, &["grants", "authorization_code"]),
        codes,
        "{end}"
    );
    // Each refresh was made by a request that forwarded its result: one new token each,
    // plus the login's.
    assert_eq!(tokens.len() as u64, refreshes + 1);
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"ok\"}").await,
        refreshes as f64
    );
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_refresh_cycles_without_login() {
    refresh_cycles(true, 20).await;
}

/// Without rotation the refresh token never changes, so the grace record of one refresh
/// (old refresh token → new tokens, 30 s) must not stand in for the next refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rotation_every_due_refresh_reaches_the_provider() {
    refresh_cycles(false, 5).await;
}
