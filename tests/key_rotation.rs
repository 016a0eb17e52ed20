//! Rotating the cookie key and the at-rest key by reload on two instances sharing one
//! Redis, while fifty clients with sessions keep making requests: nobody is logged out, the
//! old-key gauge falls to zero once every session has been used, and the old keys can
//! then leave the rings. And the OIDC client secret changes by reload.

use std::time::Duration;

use serde_json::json;

use crate::common::agent::{cookie_value, set_cookie_for, OidcBlock};
use crate::common::load::Load;
use crate::common::login_alice_until_callback;
use crate::common::provider::{Provider, ProviderSettings};
use crate::common::redis::RedisProcess;
use crate::common::scrape::{metric, scrape_url, time_until_metric};
use crate::common::sessions::Sessions;
use crate::common::{
    answers_within_window, at_rest_key, client, key, route, session_cookie, EchoServer, Gateway,
    GatewayConfig, COOKIE,
};

const CLIENTS: usize = 50;
const RELOAD_OK: &str = "bff_config_reloads_total{result=\"ok\"}";
const OLD_KEYS: &str = "bff_session_records_under_old_keys";

fn by_key(id: &str) -> String {
    format!("bff_session_records_by_key{{key_id=\"{id}\"}}")
}

/// The at-rest ring `ids` in order: `default` is the one `at_rest_key` the gateways
/// started with, the others the fixed test keys.
fn ring(ids: &[&str]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| match *id {
            "default" => ("default".to_owned(), at_rest_key()),
            other => key(other),
        })
        .collect()
}

/// Writes `config` to both gateways and waits until each has applied it (its `ok` reload
/// count reaching `reloads`).
async fn reload_both(gws: &[Gateway; 2], config: &GatewayConfig, reloads: f64) {
    for gw in gws {
        gw.rewrite_config(&config.yaml());
    }
    for gw in gws {
        assert!(
            time_until_metric(
                &gw.metrics_url(),
                RELOAD_OK,
                reloads,
                Duration::from_secs(5)
            )
            .await
            .is_some(),
            "reload {reloads} not applied within 5 s; log:\n{}",
            gw.log()
        );
    }
}

/// Waits (at most `limit`) until both gateways report `series` at `want`.
async fn both_report(gws: &[Gateway; 2], series: &str, want: f64, limit: Duration) {
    for gw in gws {
        let took = time_until_metric(&gw.metrics_url(), series, want, limit).await;
        assert!(
            took.is_some(),
            "{series} did not reach {want} within {limit:?}: {:?}; log:\n{}",
            metric(&scrape_url(&gw.metrics_url()).await, series),
            gw.log()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_both_keys_by_reload_logs_nobody_out() {
    let redis = RedisProcess::start();
    let echo = EchoServer::start().await;
    let routes = vec![route("api", "/api", &echo.url(), "required", "")];
    // Before: cookie ring [k1], the one `at_rest_key` (a ring named `default`).
    let before = GatewayConfig::new(routes)
        .redis(redis.url())
        .keys(&["k1"])
        .key_census("300ms");
    let gws = [
        Gateway::start(&before.yaml()).await,
        Gateway::start(&before.yaml()).await,
    ];
    let sessions = Sessions::open(gws[0].config_path()).await;
    let mut cookies = Vec::new();
    let mut subs = Vec::new();
    for i in 0..CLIENTS {
        let (_, cookie) = sessions
            .login(&format!("user-{i}"), &format!("at-{i}"))
            .await;
        cookies.push(cookie);
        subs.push(format!("user-{i}"));
    }
    both_report(
        &gws,
        &by_key("default"),
        CLIENTS as f64,
        Duration::from_secs(5),
    )
    .await;
    both_report(&gws, OLD_KEYS, 0.0, Duration::from_secs(1)).await;

    let bases: Vec<String> = gws.iter().map(Gateway::base_url).collect();
    let load = Load::start_sessions(
        &bases,
        cookies.clone(),
        &["/api/a", "/api/b"],
        100_000,
        Duration::from_secs(90),
        Duration::from_millis(20),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. The new keys join every ring second: everyone opens them, nobody seals with them.
    let joined = before
        .clone()
        .keys(&["k1", "k2"])
        .at_rest_ring(ring(&["default", "a2"]));
    reload_both(&gws, &joined, 1.0).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // 2. They move first everywhere: cookies and records are re-sealed as they are used.
    let rotated = before
        .clone()
        .keys(&["k2", "k1"])
        .at_rest_ring(ring(&["a2", "default"]));
    reload_both(&gws, &rotated, 2.0).await;
    load.mark();
    // 3. Every session is in use, so the old-key count falls to zero.
    both_report(&gws, OLD_KEYS, 0.0, Duration::from_secs(20)).await;
    both_report(&gws, &by_key("a2"), CLIENTS as f64, Duration::from_secs(2)).await;
    both_report(&gws, &by_key("default"), 0.0, Duration::from_secs(2)).await;
    // Let every client make a request or two more (taking its re-sealed cookie).
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 4. The old keys leave the rings.
    let after = before.clone().keys(&["k2"]).at_rest_ring(ring(&["a2"]));
    reload_both(&gws, &after, 3.0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = load.finish().await;

    assert_eq!(
        stats.failed,
        0,
        "{} of {} requests failed across the rotation: {:#?}\nlog A:\n{}\nlog B:\n{}",
        stats.failed,
        stats.ok + stats.failed,
        stats.failures,
        gws[0].log(),
        gws[1].log()
    );
    assert!(
        stats.ok > (CLIENTS as u64) * 20 && stats.after_mark > (CLIENTS as u64) * 5,
        "the load ran throughout: {stats:?}"
    );
    // The gauge stays at zero with the old keys gone, every record under a2.
    tokio::time::sleep(Duration::from_secs(1)).await;
    for gw in &gws {
        let page = scrape_url(&gw.metrics_url()).await;
        assert_eq!(metric(&page, OLD_KEYS), Some(0.0), "{page}");
        assert_eq!(metric(&page, &by_key("a2")), Some(CLIENTS as f64));
        assert_eq!(
            metric(&page, &by_key("default")),
            None,
            "removed key still shown"
        );
        assert_eq!(metric(&page, &by_key("(other)")), Some(0.0));
    }

    // Sessions from before the rotation are still found by their indexes with the old key
    // gone: logging a user out everywhere (back-channel logout by `sub`, `sid`) reaches
    // them, and their cookies then answer 401 on both instances.
    let now = Sessions::open(gws[0].config_path()).await;
    let deleted = std::time::Instant::now();
    assert_eq!(now.store.delete_by_sub(&subs[0]).await.expect("by sub"), 1);
    assert_eq!(
        now.store
            .delete_by_sid(&format!("sid-{}", subs[1]))
            .await
            .expect("by sid"),
        1
    );
    for (i, cookie) in cookies.iter().enumerate().take(3) {
        // The cookie the client started with was sealed under k1, now gone: re-seal it.
        let session_id = sessions.cipher.open(cookie).expect("k1 cookie").id;
        let current = now.cipher.seal(&session_id);
        for gw in &gws {
            let status = || async {
                client()
                    .get(gw.url("/api/after"))
                    .header("cookie", session_cookie(&current))
                    .send()
                    .await
                    .expect("request")
                    .status()
                    .as_u16()
            };
            let want = if i < 2 { 401 } else { 200 };
            let what = format!("session {i} on {}", gw.base_url());
            // The gateways may hold the sessions in their caches: refused within its window.
            answers_within_window(deleted, want, &what, status).await;
        }
    }
}

/// One login of alice through the provider's form: the callback's status and the session
/// cookie it set, if any.
async fn try_login(gw: &Gateway, provider: &Provider) -> (u16, Option<String>) {
    let http = client();
    let pending = login_alice_until_callback(gw, provider, &http).await;
    let resp = pending.send(&http).await.expect("callback");
    let set = set_cookie_for(resp.headers(), COOKIE).map(|s| cookie_value(&s));
    (resp.status().as_u16(), set.filter(|v| !v.is_empty()))
}

/// `oidc.client_secret` read from a file changes by reload (SIGHUP): the provider refuses
/// the code exchange under the old secret and accepts it under the new one, with no
/// restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_secret_changes_by_reload() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client_secret");
    std::fs::write(&secret_file, "an-old-secret").unwrap();
    let echo = EchoServer::start().await;
    let settings = ProviderSettings::default();
    let right_secret = settings.client_secret.clone();
    let mut provider = Provider::start(settings).await;
    let base = GatewayConfig::new(vec![route("api", "/api", &echo.url(), "required", "")]);
    let oidc = OidcBlock::new(
        &provider.base_url(),
        provider.client_id(),
        &format!("file:{}", secret_file.display()),
    );
    let mut gw = Gateway::start(&oidc.append_to(&base.yaml())).await;
    provider
        .update_client(json!({ "redirect_uris": [gw.url("/bff/callback")] }))
        .await;
    gw.wait_ready(Duration::from_secs(10)).await;

    let (status, cookie) = try_login(&gw, &provider).await;
    assert!(
        cookie.is_none(),
        "a login with a secret the provider does not know made a session ({status})"
    );

    std::fs::write(&secret_file, &right_secret).unwrap();
    gw.signal(libc::SIGHUP);
    assert!(
        time_until_metric(&gw.metrics_url(), RELOAD_OK, 1.0, Duration::from_secs(5))
            .await
            .is_some(),
        "SIGHUP reload not applied; log:\n{}",
        gw.log()
    );
    assert!(
        !gw.log().contains("oidc changed"),
        "a secret change is not a restart:\n{}",
        gw.log()
    );
    let (status, cookie) = try_login(&gw, &provider).await;
    assert_eq!(status, 302, "callback after the reload; log:\n{}", gw.log());
    let cookie = cookie.expect("the callback sets the session cookie");
    let resp = client()
        .get(gw.url("/api/me"))
        .header("cookie", session_cookie(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

/// `--check` names the file, the key and the reason for every at-rest ring mistake.
#[test]
fn check_refuses_a_bad_at_rest_key_ring() {
    use crate::common::check_config;
    let yaml = |session: &str| {
        GatewayConfig::new(vec![route(
            "api",
            "/api",
            "http://127.0.0.1:3002",
            "none",
            "",
        )])
        .yaml()
        .replace("{LISTEN}", "127.0.0.1:18080")
        .replace("{METRICS}", "127.0.0.1:19090")
        .replace("{DIR}", "/tmp")
        .replace(&format!("  at_rest_key: \"{}\"\n", at_rest_key()), session)
    };
    let (a, b) = (key("a1").1, key("a2").1);
    let ok = format!("  at_rest_keys:\n    - {{ id: a2, secret: \"{b}\" }}\n    - {{ id: a1, secret: \"{a}\" }}\n");
    let (status, out) = check_config(&yaml(&ok), &[]);
    assert!(status.success(), "{out}");
    for (session, needles) in [
        (
            format!("  at_rest_keys:\n    - {{ id: a1, secret: \"{a}\" }}\n    - {{ id: a1, secret: \"{b}\" }}\n"),
            vec!["session.at_rest_keys[1].id", "`a1` appears twice"],
        ),
        (
            "  at_rest_keys:\n    - { id: a1, secret: \"c2hvcnQ=\" }\n".to_owned(),
            vec!["session.at_rest_keys[0].secret", "32 bytes"],
        ),
        (
            format!("  at_rest_key: \"{a}\"\n  at_rest_keys:\n    - {{ id: a1, secret: \"{a}\" }}\n"),
            vec!["session.at_rest_keys", "not both"],
        ),
        ("  at_rest_keys: []\n".to_owned(), vec!["session.at_rest_keys", "at least one key"]),
    ] {
        let (status, out) = check_config(&yaml(&session), &[]);
        assert!(!status.success(), "accepted:\n{session}\n{out}");
        for needle in needles {
            assert!(out.contains(needle), "output lacks {needle:?}:\n{out}");
        }
        assert!(out.contains(".yaml"), "the file is named:\n{out}");
    }
}
