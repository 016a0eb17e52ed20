//! Two bffgate instances on one Redis: a burst of requests with an expired access token
//! refreshes exactly once (Cluster, standalone, rotation off), and a logout on one
//! instance ends the session on the other.

use super::*;

// ---------------------------------------------------------------------------------------
// A burst over two instances refreshes once

/// Login through instance 0, let the access token expire, then 200 concurrent API calls
/// split 100/100 over the two instances.
async fn burst_refreshes_once(store: Store, rotate: bool) {
    const BURST: usize = 200;
    // Access tokens live 4 s; bffgate refreshes 1 s before expiry.
    let env = Env::start(&store, 2, provider_settings(4, rotate), "1s").await;
    let cookie = env.login(0).await;

    // The login's token, forwarded as is by both instances (the cookie works on B too).
    let login_token = env.api_token(0, &cookie).await;
    assert_eq!(env.api_token(1, &cookie).await, login_token);
    let expires_at = env.access_expires_at(1, &cookie).await;

    // Wait until the access token has expired (at bffgate and at the provider).
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    let introspected = env.provider.introspect(&login_token).await;
    assert_eq!(
        introspected["active"], false,
        "the login's access token should have expired by now: {introspected}"
    );
    let before = env.provider.stats().await;
    assert_eq!(
        stat(&before, &["grants", "refresh_token"]),
        0,
        "no refresh before the burst: {before}"
    );

    // Open the burst's connections beforehand (100 to each instance, kept alive in the
    // client's pool), so the 200 requests reach the gateways together.
    let mut warm = tokio::task::JoinSet::new();
    let warm_barrier = Arc::new(tokio::sync::Barrier::new(BURST));
    for n in 0..BURST {
        let url = env.gws[n % 2].url("/healthz");
        let http = env.http.clone();
        let b = Arc::clone(&warm_barrier);
        warm.spawn(async move {
            b.wait().await;
            http.get(&url).send().await.map(|r| r.status().as_u16())
        });
    }
    while let Some(r) = warm.join_next().await {
        assert_eq!(r.expect("warm-up task").expect("warm-up request"), 200);
    }

    // 200 concurrent requests, released together, 100 to each instance.
    let barrier = Arc::new(tokio::sync::Barrier::new(BURST));
    let mut set = tokio::task::JoinSet::new();
    for n in 0..BURST {
        let i = n % 2;
        let url = env.gws[i].url("/api/x");
        let http = env.http.clone();
        let barrier = Arc::clone(&barrier);
        let cookie = session_cookie(&cookie);
        set.spawn(async move {
            barrier.wait().await;
            let resp = http
                .get(&url)
                .header("cookie", cookie)
                .send()
                .await
                .expect("burst request");
            let status = resp.status().as_u16();
            (i, status, resp.text().await.unwrap_or_default())
        });
    }
    let mut per_instance = [0usize; 2];
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut tokens: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    while let Some(r) = set.join_next().await {
        let (i, status, text) = r.expect("burst task");
        *statuses.entry(status).or_default() += 1;
        if status != 200 {
            failures.push(format!("instance {i}: {status} {text}"));
            continue;
        }
        per_instance[i] += 1;
        let echoed: Echoed =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an echo ({e}): {text}"));
        *tokens.entry(bearer(&echoed)).or_default() += 1;
    }
    let after = env.provider.stats().await;
    let refreshes =
        stat(&after, &["grants", "refresh_token"]) - stat(&before, &["grants", "refresh_token"]);
    eprintln!(
        "burst ({}, rotation {}): statuses {statuses:?}, per instance {per_instance:?}, \
         distinct forwarded tokens {}, refresh_token grants +{refreshes}, \
         refresh_token_reuse {}, grant_errors {}",
        match store {
            Store::Single(_) => "standalone Redis",
            Store::SingleTls(..) => "standalone Redis over TLS",
            Store::Cluster(_) => "Redis Cluster",
            Store::Sentinel(_) => "Sentinel",
        },
        if rotate { "on" } else { "off" },
        tokens.len(),
        stat(&after, &["refresh_token_reuse"]),
        after["grant_errors"],
    );
    eprintln!(
        "  bffgate refreshes: A {}; B {}",
        env.refresh_outcomes(0).await,
        env.refresh_outcomes(1).await
    );
    assert!(
        failures.is_empty(),
        "{} of {BURST} requests failed: {:?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        env.logs()
    );
    assert_eq!(per_instance, [BURST / 2, BURST / 2]);
    assert_eq!(
        refreshes,
        1,
        "expected exactly one refresh_token grant; stats {after}\n{}",
        env.logs()
    );
    assert_eq!(stat(&after, &["refresh_token_reuse"]), 0, "{after}");
    assert_eq!(after["grant_errors"], json!({}), "{after}");
    assert_eq!(
        tokens.len(),
        1,
        "every request should forward the one refreshed token; got {} distinct",
        tokens.len()
    );
    let (new_token, count) = tokens.into_iter().next().expect("one token");
    assert_eq!(count, BURST);
    assert_ne!(new_token, login_token, "the expired token was forwarded");
    let introspected = env.provider.introspect(&new_token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    // The gateways agree: one refresh in all, the other requests waited for it.
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"ok\"}").await,
        1.0
    );
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"invalid_grant\"}")
            .await,
        0.0
    );
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"unavailable\"}")
            .await,
        0.0
    );
    // The requests did race: some found the refresh in progress and waited for it.
    assert!(
        env.metric_sum("bff_refreshes_total{outcome=\"lock_wait\"}")
            .await
            >= 1.0,
        "no request waited for the refresh: the burst did not race"
    );

    // Afterwards both instances forward the new token without refreshing again.
    assert_eq!(env.api_token(0, &cookie).await, new_token);
    assert_eq!(env.api_token(1, &cookie).await, new_token);
    let last = env.provider.stats().await;
    assert_eq!(
        stat(&last, &["grants", "refresh_token"]),
        stat(&before, &["grants", "refresh_token"]) + 1,
        "{last}"
    );
    assert_eq!(stat(&last, &["refresh_token_reuse"]), 0, "{last}");
    assert_eq!(stat(&last, &["logins", "success"]), 1, "{last}");
    if rotate {
        // The rotated refresh token in the session works: a forced refresh reaches the
        // provider. (Without rotation see `without_rotation_every_due_refresh_reaches_the_provider`.)
        let (status, body) = env.force_refresh(1, &cookie).await;
        assert_eq!(status, 200, "forced refresh: {body}\n{}", env.logs());
        let forced = env.provider.stats().await;
        assert_eq!(
            stat(&forced, &["grants", "refresh_token"]),
            stat(&before, &["grants", "refresh_token"]) + 2,
            "{forced}"
        );
        assert_eq!(stat(&forced, &["refresh_token_reuse"]), 0, "{forced}");
        // Instance 0 may hold the session in its cache: the change is announced, and it
        // forwards the new token within the cache's window at the latest.
        let refreshed = std::time::Instant::now();
        loop {
            let sent = refreshed.elapsed();
            if env.api_token(0, &cookie).await != new_token {
                break;
            }
            assert!(
                sent < crate::common::CACHE_WINDOW,
                "instance 0 forwarded the old token {sent:?} after the refresh"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_two_instances_on_redis_cluster_refreshes_once() {
    let cluster = RedisCluster::start(3);
    burst_refreshes_once(Store::Cluster(cluster.urls()), true).await;
    // The session's keys went to the cluster (one slot, so one node holds them).
    let sizes = cluster.dbsizes();
    eprintln!("cluster DBSIZE per node: {sizes:?}");
    assert!(
        sizes.iter().flatten().sum::<u64>() > 0,
        "nothing stored in the cluster: {sizes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_two_instances_on_standalone_redis_refreshes_once() {
    let redis = RedisProcess::start();
    burst_refreshes_once(Store::Single(redis.url()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_over_two_instances_without_rotation_refreshes_once() {
    let redis = RedisProcess::start();
    burst_refreshes_once(Store::Single(redis.url()), false).await;
}

// ---------------------------------------------------------------------------------------
// Logout is shared

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_on_a_is_seen_by_b() {
    let redis = RedisProcess::start();
    let env = Env::start(
        &Store::Single(redis.url()),
        2,
        provider_settings(60, true),
        "1s",
    )
    .await;
    let cookie = env.login(0).await;
    let token = env.api_token(1, &cookie).await;
    assert_eq!(env.api_token(0, &cookie).await, token);

    let resp = env
        .http
        .post(env.gws[0].url("/bff/logout"))
        .header("cookie", session_cookie(&cookie))
        .header("origin", APP_ORIGIN)
        .header(CSRF_HEADER, "1")
        .send()
        .await
        .expect("POST /bff/logout");
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 200, "logout: {body}");
    let body: Value = serde_json::from_str(&body).expect("logout JSON");
    assert!(body.get("logout_url").is_some(), "{body}");

    // B no longer knows the session: 401 session_expired, cookie cleared. B read it just
    // before (its session cache holds it): B must refuse it within the cache's window,
    // normally at once (the logout's announcement reaches B in about a millisecond).
    let logged_out = std::time::Instant::now();
    let resp = loop {
        let sent = logged_out.elapsed();
        let resp = env.api(1, &cookie).await;
        if resp.status() != 200 {
            break resp;
        }
        assert!(
            sent < Duration::from_millis(100),
            "B served the session {sent:?} after the logout"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let cleared = provider::set_cookies(resp.headers())
        .into_iter()
        .any(|(n, v)| n == COOKIE && v.is_empty());
    expect_error(resp, 401, "session_expired").await;
    assert!(cleared, "the 401 should clear the session cookie");
    expect_error(env.api(0, &cookie).await, 401, "session_expired").await;
    assert_eq!(env.session(1, &cookie).await["authenticated"], false);

    // The refresh token was revoked at the provider (in the background).
    let revoked = eventually(Duration::from_secs(5), || {
        let stats = env.provider.stats();
        async move { stat(&stats.await, &["revocation"]) >= 1 }
    })
    .await;
    assert!(revoked, "no revocation at the provider\n{}", env.logs());
}
