//! The provider going away and coming back, and a Sentinel failover of the Redis master.

use super::*;

// ---------------------------------------------------------------------------------------
// The provider goes away and comes back

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_down_mid_run() {
    let redis = RedisProcess::start();
    let mut env = Env::start(
        &Store::Single(redis.url()),
        1,
        provider_settings(8, true),
        "1s",
    )
    .await;
    let cookie = env.login(0).await;
    let login_token = env.api_token(0, &cookie).await;
    let expires_at = env.access_expires_at(0, &cookie).await;

    env.provider.stop();
    assert!(
        now_f64() < expires_at as f64 - 2.0,
        "the provider took too long to stop; the token is about to be due for refresh"
    );
    // Still valid: forwarded with the token it has, provider or not.
    assert_eq!(env.api_token(0, &cookie).await, login_token);

    // Expired, and no provider to refresh it: 503 refresh_unavailable, session kept.
    sleep_until_epoch(expires_at as f64 + 0.3).await;
    for _ in 0..2 {
        expect_error(env.api(0, &cookie).await, 503, "refresh_unavailable").await;
    }
    assert_eq!(env.session(0, &cookie).await["authenticated"], true);

    // The provider comes back (same keys, same grants): the next request refreshes.
    env.provider.restart().await;
    // A failed refresh is remembered for 1 s per session (shared, not retried): past that.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let token = env.api_token(0, &cookie).await;
    assert_ne!(token, login_token);
    let stats = env.provider.stats().await; // counts since the restart
    eprintln!(
        "provider back: refresh_token grants {}, logins {}, reuse {}",
        stat(&stats, &["grants", "refresh_token"]),
        stat(&stats, &["logins", "success"]),
        stat(&stats, &["refresh_token_reuse"]),
    );
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 1, "{stats}");
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        0,
        "{stats}"
    );
    assert_eq!(stat(&stats, &["logins", "success"]), 0, "{stats}");
    assert_eq!(stat(&stats, &["refresh_token_reuse"]), 0, "{stats}");
    assert_eq!(env.provider.introspect(&token).await["active"], true);
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"ok\"}").await,
        1.0
    );
    assert_eq!(
        env.metric_sum("bff_refreshes_total{outcome=\"unavailable\"}")
            .await,
        2.0
    );
}

// ---------------------------------------------------------------------------------------
// Sentinel failover

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_keeps_sessions() {
    let mut sentinels = SentinelSet::start();
    let env = Env::start(
        &Store::Sentinel(sentinels.sentinel_urls()),
        1,
        provider_settings(300, true),
        "30s",
    )
    .await;
    let cookie = env.login(0).await;
    let token = env.api_token(0, &cookie).await;
    assert!(
        sentinels.wait_replicated(Duration::from_secs(5)),
        "the replica did not catch up\n{}",
        sentinels.logs()
    );

    let old_master = sentinels.master_port();
    sentinels.kill_master();
    let killed = Instant::now();
    let mut first_failure: Option<Instant> = None;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let recovered = loop {
        let sent = Instant::now();
        let outcome = env
            .http
            .get(env.gws[0].url("/api/x"))
            .header("cookie", session_cookie(&cookie))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match outcome {
            Ok(resp) if resp.status() == 200 => {
                let echoed = expect_echo(resp).await;
                assert_eq!(bearer(&echoed), token);
                if first_failure.is_some() {
                    break Instant::now();
                }
                // Answered before bffgate noticed the crash? Impossible with the master
                // gone; keep polling until the failure shows.
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let code = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["code"].as_str().map(str::to_owned))
                    .unwrap_or(text);
                *failures.entry(format!("{status} {code}")).or_default() += 1;
                first_failure.get_or_insert(sent);
            }
            Err(e) => {
                *failures.entry(format!("transport: {e}")).or_default() += 1;
                first_failure.get_or_insert(sent);
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "requests did not recover within 30 s of the master's crash; failures {failures:?}\n{}\n{}",
            env.logs(),
            sentinels.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first_failure = first_failure.expect("a failure was seen");
    let downtime = recovered.duration_since(first_failure);
    eprintln!(
        "sentinel failover: requests failed for {} ms (first failure to first success; \
         {} ms from the master's SIGKILL); failures {failures:?}",
        downtime.as_millis(),
        recovered.duration_since(killed).as_millis()
    );
    // Only "store unavailable" while the master was gone: never a lost session.
    for k in failures.keys() {
        assert_eq!(
            k, "503 session_store_unavailable",
            "unexpected failure during failover: {failures:?}"
        );
    }
    let new_master = sentinels
        .current_master_port()
        .expect("the sentinels name a master");
    assert_eq!(
        new_master,
        sentinels.replica_port(),
        "the replica was promoted"
    );
    assert_ne!(new_master, old_master);
    assert_eq!(SentinelSet::role(new_master).as_deref(), Some("master"));

    // The same cookie keeps working, and a new login lands on the new master.
    assert_eq!(env.api_token(0, &cookie).await, token);
    let second = env.login(0).await;
    let second_token = env.api_token(0, &second).await;
    assert_ne!(second_token, token);
    assert_eq!(env.api_token(0, &cookie).await, token);
    let stats = env.provider.stats().await;
    assert_eq!(stat(&stats, &["logins", "success"]), 2, "{stats}");
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 0, "{stats}");
}
