//! Rate limits that need real logins: the memory store's per-session budget (one session
//! over its limit, another of the same user and address served), and `agent.rate_limit`
//! on the agent endpoints, checked before the endpoint works and beside
//! `oidc.logins_per_client`. Rates are per hour: no budget refills while a test runs.

use super::*;

fn per_session(template: String) -> String {
    template.replacen(
        "auth: required }",
        "auth: required, rate_limit: { per_session: 3/h } }",
        1,
    )
}

fn agent_limited(template: String) -> String {
    template.replacen(
        "  csrf_header:",
        "  rate_limit: { per_client_ip: 4/h }\n  csrf_header:",
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_limits_one_session_and_serves_another() {
    let env = Env::start(Setup {
        edit: Some(per_session),
        ..Setup::default()
    })
    .await;
    let first = env.login(&OpBrowser::new()).await;
    let second = env.login(&OpBrowser::new()).await;
    for n in 0..3 {
        assert_eq!(env.api(&first.cookie).await.status(), 200, "request {n}");
    }
    expect_limited(env.api(&first.cookie).await, u64::MAX).await;
    // Same user, same address, another session: its own budget.
    assert_eq!(env.api(&second.cookie).await.status(), 200);
    assert_eq!(
        metric_value(
            &env.gw,
            r#"bff_rate_limited_total{kind="session",route="api"}"#
        )
        .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_endpoints_share_one_budget_per_address() {
    let env = Env::start(Setup {
        redis: true,
        edit: Some(agent_limited),
        ..Setup::default()
    })
    .await;
    let series = r#"bff_rate_limited_total{kind="client_ip",route="agent"}"#;
    assert_eq!(metric(&scrape(&env.gw).await, series), Some(0.0));
    let logins = r#"bff_logins_total{outcome="started"}"#;
    // Four requests over three endpoints spend the address's budget...
    assert_eq!(env.get("/bff/session", "").await.status(), 200);
    env.start_login(None, "").await;
    assert_eq!(env.get("/bff/jwks.json", "").await.status(), 404);
    assert_eq!(env.get("/bff/session", "").await.status(), 200);
    // ... so the fifth is refused whichever endpoint it asks, a login before it starts
    // (no transaction, no provider call).
    expect_limited(env.get("/bff/session", "").await, u64::MAX).await;
    expect_limited(env.get(&login_path("/bff/login", None), "").await, u64::MAX).await;
    assert_eq!(metric_value(&env.gw, logins).await, 1.0);
    assert_eq!(metric_value(&env.gw, series).await, 2.0);
    // API routes are not limited by the agent's budget.
    assert_eq!(env.get("/api/x", "").await.status(), 401);
}
