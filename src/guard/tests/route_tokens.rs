//! Route tokens over the fake provider: one call per grant however many requests race,
//! exchanged tokens kept in (and dropped with) the session, client tokens shared.

use super::*;
use crate::config::{GrantKind, RouteGrant};

fn grant(kind: GrantKind, resource: &str) -> TokenPolicy {
    TokenPolicy::Grant(RouteGrant {
        kind,
        resource: Some(resource.into()),
        scopes: vec!["read".into()],
    })
}

/// `n` concurrent admissions of `session`'s cookie on a route with `policy`.
async fn storm(
    guard: &Arc<Guard>,
    session: &UserSession,
    policy: &TokenPolicy,
    n: usize,
) -> Vec<String> {
    let live = Arc::new(live());
    let cookie = cookie_header(&live, session);
    let mut tasks = Vec::new();
    for _ in 0..n {
        let (g, l, p) = (Arc::clone(guard), Arc::clone(&live), policy.clone());
        let req = request("GET", std::slice::from_ref(&cookie));
        tasks.push(tokio::spawn(async move {
            g.admit(&req, &l, &api(AuthMode::Required, p)).await
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        let admitted = t.await.expect("task").expect("admitted");
        tokens.push(admitted.access_token.expect("a token"));
    }
    tokens
}

#[tokio::test(start_paused = true)]
async fn a_storm_exchanges_once_per_resource_and_keeps_the_token_in_the_session() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::from_millis(200));
    let (guard, session) = guard_with_session(Arc::clone(&provider), 3600).await;
    let guard = Arc::new(guard);
    let orders = grant(GrantKind::Exchange, "https://orders.test");
    let billing = grant(GrantKind::Exchange, "https://billing.test");
    let a = storm(&guard, &session, &orders, 30).await;
    assert_eq!(provider.calls(), 1, "one exchange for the storm");
    assert!(
        a.iter().all(|t| t == &a[0]),
        "every request got the same token"
    );
    assert!(
        a[0].starts_with("exchange|https://orders.test|read:at-0:"),
        "{}",
        a[0]
    );
    let b = storm(&guard, &session, &billing, 30).await;
    assert_eq!(provider.calls(), 2, "one more for the other resource");
    assert_ne!(a[0], b[0]);
    // Both are sealed into the session; later requests make no call.
    let stored = guard
        .store()
        .get(&session.id)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(stored.route_tokens.len(), 2);
    storm(&guard, &session, &orders, 5).await;
    assert_eq!(provider.calls(), 2);
    // Dropped with the session.
    guard.store().delete(&session.id).await.expect("delete");
    assert!(guard.store().get(&session.id).await.expect("get").is_none());
}

#[tokio::test(start_paused = true)]
async fn client_tokens_are_shared_by_every_session_and_a_failure_is_503() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::from_millis(200));
    let (guard, first) = guard_with_session(Arc::clone(&provider), 3600).await;
    let guard = Arc::new(guard);
    let mut second = first.clone();
    second.id = crate::session::SessionId::generate();
    guard.store().create(&second).await.expect("second session");
    let client = grant(GrantKind::Client, "https://reports.test");
    let a = storm(&guard, &first, &client, 20).await;
    let b = storm(&guard, &second, &client, 20).await;
    assert_eq!(provider.calls(), 1, "one client-credentials call in all");
    assert_eq!(a[0], b[0]);
    assert!(
        a[0].starts_with("client|https://reports.test|read::"),
        "{}",
        a[0]
    );
    // `none` forwards nothing, `user` the session's own token.
    assert_eq!(storm(&guard, &first, &TokenPolicy::User, 1).await, ["at-0"]);

    let failing = FakeProvider::new(Answer::Unavailable, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&failing), 3600).await;
    let live = live();
    let req = request("GET", &[cookie_header(&live, &session)]);
    let err = guard
        .admit(
            &req,
            &live,
            &api(
                AuthMode::Required,
                grant(GrantKind::Exchange, "https://o.test"),
            ),
        )
        .await
        .expect_err("no token");
    assert_eq!(err, ApiError::RouteTokenUnavailable);
    let none = guard
        .admit(&req, &live, &api(AuthMode::Required, TokenPolicy::None))
        .await
        .expect("admitted");
    assert_eq!(none.access_token, None);
}
