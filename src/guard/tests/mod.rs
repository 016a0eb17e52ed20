//! In-process tests of the guard and the refresher: the memory store, a fake token
//! endpoint, and tokio's paused clock instead of spawned processes.

use super::*;
use crate::config::Config;
use crate::live::testing::{self, KEY, OLD_KEY, ORIGIN};
use crate::session::Tokens;
use async_trait::async_trait;
use pingora::http::RequestHeader;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

fn config(keys: &str) -> Config {
    testing::config(keys, "")
}

/// The route `api` (prefix `/api`) with session policy `mode` and token policy `token`.
fn api(mode: AuthMode, token: TokenPolicy) -> crate::config::RouteConfig {
    crate::config::RouteConfig {
        token,
        ..testing::route_config("api", "/api", None, None, mode)
    }
}

fn live() -> LiveConfig {
    LiveConfig::new(&testing::config_with_rotation(""))
}

/// What the fake provider answers.
#[derive(Clone)]
enum Answer {
    Tokens,
    Refused,
    Unavailable,
}

/// A token endpoint that counts its calls and takes `delay` to answer.
struct FakeProvider {
    answer: Answer,
    delay: Duration,
    calls: AtomicUsize,
}

impl FakeProvider {
    fn new(answer: Answer, delay: Duration) -> Arc<Self> {
        Arc::new(FakeProvider {
            answer,
            delay,
            calls: AtomicUsize::new(0),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenEndpoint for FakeProvider {
    async fn refresh(
        &self,
        refresh_token: &str,
        _sub: &str,
        _dpop: Option<&crate::dpop::DpopKey>,
    ) -> Result<Tokens, RefreshFailure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        match self.answer {
            Answer::Tokens => Ok(Tokens {
                access_token: format!("at-{n}"),
                refresh_token: Some(format!("{refresh_token}-{n}")),
                id_token: None,
                access_expires_at: Some(now_secs() + 3600),
                refresh_expires_at: None,
            }),
            Answer::Refused => Err(RefreshFailure::Refused),
            Answer::Unavailable => Err(RefreshFailure::Unavailable("503 from the fake".into())),
        }
    }

    async fn route_token(
        &self,
        grant: &crate::config::RouteGrant,
        subject: &str,
    ) -> Result<crate::session::RouteToken, RefreshFailure> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        match self.answer {
            Answer::Tokens => Ok(crate::session::RouteToken {
                access_token: format!("{}:{subject}:{n}", grant.cache_key()),
                expires_at: Some(now_secs() + 3600),
            }),
            _ => Err(RefreshFailure::Unavailable("503 from the fake".into())),
        }
    }
}

/// A guard over a fresh memory store and `provider`, and a stored session whose access
/// token expires in `expires_in` seconds (negative: already expired).
async fn guard_with_session(provider: Arc<FakeProvider>, expires_in: i64) -> (Guard, UserSession) {
    let cfg = config(&format!("{{id: k2, secret: \"{KEY}\"}}"));
    let store = SessionStore::from_config(&cfg.session).expect("memory store");
    let refresher = Refresher::new(
        provider,
        store.clone(),
        cfg.session.refresh_before_expiry,
        cfg.session.refresh_lock_wait,
    );
    let tokens = Tokens {
        access_token: "at-0".into(),
        refresh_token: Some("rt-0".into()),
        id_token: None,
        access_expires_at: Some(now_secs().saturating_add_signed(expires_in)),
        refresh_expires_at: None,
    };
    let session = UserSession::new(
        "alice".into(),
        None,
        serde_json::json!({}),
        tokens,
        &cfg.session,
    );
    store.create(&session).await.expect("stored");
    (Guard::new(store, Some(refresher)), session)
}

mod route_tokens;

/// The session as the store holds it now (it must still be there).
async fn stored(guard: &Guard, session: &UserSession) -> UserSession {
    guard
        .store()
        .get(&session.id)
        .await
        .expect("get")
        .expect("kept")
}

#[tokio::test(start_paused = true)]
async fn a_storm_on_one_session_makes_one_provider_call() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::from_millis(300));
    let (guard, session) = guard_with_session(Arc::clone(&provider), 5).await;
    let guard = Arc::new(guard);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (g, s) = (Arc::clone(&guard), session.clone());
        tasks.push(tokio::spawn(async move { g.fresh(s, When::Due).await }));
    }
    for t in tasks {
        let tokens = t.await.expect("task").expect("fresh tokens");
        assert_eq!(tokens.access_token, "at-1");
    }
    assert_eq!(provider.calls(), 1);
    let stored = stored(&guard, &session).await;
    assert_eq!(stored.tokens.access_token, "at-1");
}

/// A provider that fails after 3 s (longer than `refresh_lock_wait`, 2 s): a storm of 50
/// requests on an expired token makes one call, every request is answered within the
/// wait with `refresh_unavailable`, the session is kept, and a request within
/// [`FAILURE_HOLD`] of the failure shares it without a call.
#[tokio::test(start_paused = true)]
async fn a_storm_against_a_failing_provider_makes_one_call_within_the_wait() {
    let provider = FakeProvider::new(Answer::Unavailable, Duration::from_secs(3));
    let (guard, session) = guard_with_session(Arc::clone(&provider), -5).await;
    let guard = Arc::new(guard);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (g, s) = (Arc::clone(&guard), session.clone());
        tasks.push(tokio::spawn(async move {
            let r = g.fresh(s, When::Due).await;
            (r, started.elapsed())
        }));
    }
    for t in tasks {
        let (r, took) = t.await.expect("task");
        assert_eq!(r, Err(ApiError::RefreshUnavailable));
        assert!(
            took <= Duration::from_secs(2) + Duration::from_millis(50),
            "{took:?}"
        );
    }
    // The flight runs on and fails at 3 s; its failure is then shared.
    tokio::time::sleep_until(started + Duration::from_millis(3100)).await;
    assert_eq!(
        guard.fresh(session.clone(), When::Due).await,
        Err(ApiError::RefreshUnavailable)
    );
    assert_eq!(provider.calls(), 1);
    assert!(guard.store().get(&session.id).await.expect("get").is_some());
    // After the hold, the provider is asked again.
    tokio::time::sleep(FAILURE_HOLD).await;
    let _ = guard.fresh(session, When::Due).await;
    assert_eq!(provider.calls(), 2);
}

/// Tokens a refresh stored only in its grace record (the session write failed) are
/// written back to the session when a later refresh finds them there.
#[tokio::test]
async fn tokens_found_through_a_grace_record_are_written_back() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 5).await;
    let newer = Tokens {
        access_token: "at-grace".into(),
        refresh_token: Some("rt-grace".into()),
        id_token: None,
        access_expires_at: Some(now_secs() + 3600),
        refresh_expires_at: None,
    };
    guard
        .store()
        .put_grace(&session.id, "rt-0", &newer, Duration::from_secs(30))
        .await
        .expect("grace");
    let tokens = guard
        .fresh(session.clone(), When::Due)
        .await
        .expect("fresh");
    assert_eq!(tokens.access_token, "at-grace");
    assert_eq!(provider.calls(), 0);
    let stored = stored(&guard, &session).await;
    assert_eq!(stored.tokens.refresh_token.as_deref(), Some("rt-grace"));
}

#[tokio::test]
async fn a_token_not_due_is_forwarded_without_a_call() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 3600).await;
    let tokens = guard.fresh(session, When::Due).await.expect("fresh");
    assert_eq!(tokens.access_token, "at-0");
    assert_eq!(provider.calls(), 0);
}

#[tokio::test]
async fn a_refused_refresh_token_ends_the_session() {
    let provider = FakeProvider::new(Answer::Refused, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 5).await;
    let id = session.id.clone();
    assert_eq!(
        guard.fresh(session, When::Due).await,
        Err(ApiError::SessionExpired)
    );
    assert_eq!(guard.store().get(&id).await.expect("get"), None);
}

#[tokio::test]
async fn an_unavailable_provider_keeps_the_session_and_its_valid_token() {
    let provider = FakeProvider::new(Answer::Unavailable, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 10).await;
    let id = session.id.clone();
    let tokens = guard.fresh(session, When::Due).await.expect("still valid");
    assert_eq!(tokens.access_token, "at-0");
    assert!(guard.store().get(&id).await.expect("get").is_some());
}

#[tokio::test]
async fn an_unavailable_provider_and_an_expired_token_answer_503() {
    let provider = FakeProvider::new(Answer::Unavailable, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), -5).await;
    let id = session.id.clone();
    assert_eq!(
        guard.fresh(session, When::Due).await,
        Err(ApiError::RefreshUnavailable)
    );
    assert!(guard.store().get(&id).await.expect("get").is_some());
}

#[tokio::test(start_paused = true)]
async fn a_lock_held_elsewhere_is_waited_for_at_most_refresh_lock_wait() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 5).await;
    let other = [7u8; 16];
    assert!(guard
        .store()
        .lock_session(&session.id, &other, Duration::from_secs(60))
        .await
        .expect("lock"));
    let started = Instant::now();
    let tokens = guard.fresh(session, When::Due).await.expect("still valid");
    let waited = started.elapsed();
    assert_eq!(tokens.access_token, "at-0");
    assert_eq!(provider.calls(), 0);
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn another_instances_refresh_is_picked_up_while_waiting() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 5).await;
    let other = [7u8; 16];
    let store = guard.store().clone();
    assert!(store
        .lock_session(&session.id, &other, Duration::from_secs(60))
        .await
        .expect("lock"));
    let mut refreshed = session.clone();
    refreshed.tokens.access_token = "at-elsewhere".into();
    refreshed.tokens.access_expires_at = Some(now_secs() + 3600);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.update(&refreshed).await.expect("update");
    });
    let tokens = guard.fresh(session, When::Due).await.expect("fresh");
    assert_eq!(tokens.access_token, "at-elsewhere");
    assert_eq!(provider.calls(), 0);
}

fn request(method: &str, headers: &[(&'static str, String)]) -> RequestHeader {
    let mut req = RequestHeader::build(method, b"/api/x", None).expect("request");
    for (name, value) in headers {
        req.insert_header(*name, value.as_str()).expect("header");
    }
    req
}

fn cookie_header(live: &LiveConfig, session: &UserSession) -> (&'static str, String) {
    let value = live.cookie.cipher().seal(&session.id);
    ("cookie", format!("other=1; {}={value}", live.cookie.name()))
}

#[tokio::test]
async fn admit_applies_the_route_policy() {
    let live = live();
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(provider, 3600).await;
    let cookie = cookie_header(&live, &session);

    let no_cookie = request("GET", &[]);
    let admit = |req: RequestHeader, mode| {
        let (guard, live) = (&guard, &live);
        async move {
            guard
                .admit(&req, live, &api(mode, TokenPolicy::User))
                .await
                .map(|a| a.access_token)
        }
    };
    assert_eq!(
        admit(no_cookie, AuthMode::Required).await,
        Err(ApiError::NoSession)
    );
    assert_eq!(
        admit(request("GET", &[]), AuthMode::Optional).await,
        Ok(None)
    );
    assert_eq!(
        admit(
            request("GET", std::slice::from_ref(&cookie)),
            AuthMode::Required
        )
        .await,
        Ok(Some("at-0".into()))
    );
    let garbage = ("cookie", format!("{}=bm90IGEgY29va2ll", live.cookie.name()));
    assert_eq!(
        admit(request("GET", &[garbage]), AuthMode::Optional).await,
        Err(ApiError::InvalidSession)
    );
    // Unsafe methods need a trusted Origin and the CSRF header; upgrades a trusted Origin.
    let post = request("POST", std::slice::from_ref(&cookie));
    assert!(matches!(
        admit(post, AuthMode::Required).await,
        Err(ApiError::CsrfViolation(_))
    ));
    let origin = ("origin", ORIGIN.to_string());
    let csrf = ("x-bffgate-csrf", "1".to_string());
    let post = request("POST", &[cookie.clone(), origin.clone()]);
    assert!(matches!(
        admit(post, AuthMode::Required).await,
        Err(ApiError::CsrfViolation(_))
    ));
    let post = request("POST", &[cookie.clone(), origin.clone(), csrf]);
    assert_eq!(
        admit(post, AuthMode::Required).await,
        Ok(Some("at-0".into()))
    );
    let upgrade = ("upgrade", "websocket".to_string());
    let ws = request("GET", &[cookie.clone(), upgrade.clone()]);
    assert!(matches!(
        admit(ws, AuthMode::Required).await,
        Err(ApiError::CsrfViolation(_))
    ));
    let ws = request("GET", &[cookie, upgrade, origin]);
    assert_eq!(admit(ws, AuthMode::Required).await, Ok(Some("at-0".into())));
    // A session that has gone answers `session_expired`, which clears the cookie.
    guard.store().delete(&session.id).await.expect("delete");
    let gone = request("GET", &[cookie_header(&live, &session)]);
    let err = admit(gone, AuthMode::Required).await.expect_err("gone");
    assert_eq!(err, ApiError::SessionExpired);
    assert!(err.clears_session_cookie());
}

#[tokio::test]
async fn a_cookie_under_an_older_key_is_resealed() {
    let live = live();
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(provider, 3600).await;
    let old = LiveConfig::new(&config(&format!("{{id: k1, secret: \"{OLD_KEY}\"}}")));
    let req = request("GET", &[cookie_header(&old, &session)]);
    let admitted = guard
        .admit(&req, &live, &api(AuthMode::Required, TokenPolicy::User))
        .await
        .expect("admitted");
    let set = admitted.set_cookie.expect("re-sealed");
    assert!(set.starts_with(&format!("{}=", live.cookie.name())));
    let req = request("GET", &[cookie_header(&live, &session)]);
    let admitted = guard
        .admit(&req, &live, &api(AuthMode::Required, TokenPolicy::User))
        .await
        .expect("admitted");
    assert!(admitted.set_cookie.is_none());
}

/// `503 refresh_unavailable` tells clients to come back when the failure hold is over.
#[test]
fn retry_after_is_the_failure_hold() {
    assert_eq!(
        ApiError::RefreshUnavailable.retry_after(),
        Some(FAILURE_HOLD.as_secs())
    );
}

/// A reload's refresh timings apply from the next request: a token not due under 30 s is
/// due under 2 h.
#[tokio::test]
async fn reloaded_refresh_timings_apply_to_the_next_request() {
    let provider = FakeProvider::new(Answer::Tokens, Duration::ZERO);
    let (guard, session) = guard_with_session(Arc::clone(&provider), 3600).await;
    let tokens = guard
        .fresh(session.clone(), When::Due)
        .await
        .expect("fresh");
    assert_eq!(tokens.access_token, "at-0");
    guard.set_refresh_timings(Duration::from_secs(7200), Duration::from_secs(2));
    let tokens = guard.fresh(session, When::Due).await.expect("fresh");
    assert_eq!(tokens.access_token, "at-1");
    assert_eq!(provider.calls(), 1);
}
