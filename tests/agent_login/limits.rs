//! What a stranger can pile up or fix in place at login: one transaction per browser
//! binding, a capped number of new bindings per client address, a bounded `return_to`; the
//! binding minted by bffgate (never a client's value), `__Host-` prefixed when secure, and
//! cleared after the callback; and a `state` carrying a forged issue time.

use std::collections::BTreeMap;

use super::*;
use crate::common::redis::redis_cli;

/// `oidc.logins_per_client` in the flood test.
const PER_CLIENT: usize = 20;
/// Requests in each flood.
const FLOOD: usize = 300;

fn capped(template: String) -> String {
    template.replacen("oidc:\n", "oidc:\n  logins_per_client: 20\n", 1)
}

fn secure(template: String) -> String {
    template.replacen("secure: false", "secure: true", 1)
}

/// The gateway's keys in Redis (`bfftest:` prefix) and the length of each value.
fn stored(port: u16) -> BTreeMap<String, usize> {
    let keys = redis_cli(port, &["--scan", "--pattern", "bfftest:*"]).unwrap_or_default();
    keys.lines()
        .filter(|k| !k.is_empty())
        .map(|k| {
            let len = redis_cli(port, &["STRLEN", k])
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            (k.to_owned(), len)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_creates_a_bounded_number_of_small_transactions() {
    let env = Env::start(Setup {
        redis: true,
        edit: Some(capped),
        ..Setup::default()
    })
    .await;
    let port = env._redis.as_ref().expect("redis").port();
    assert!(stored(port).is_empty());

    // A `return_to` over 1 KiB, as given or as resolved (`é` is 6 bytes percent-encoded),
    // is refused before anything is stored.
    let long_ascii = format!("/{}", "a".repeat(1024));
    let long_utf8 = format!("/{}", "é".repeat(200));
    for r in [long_ascii.as_str(), long_utf8.as_str()] {
        expect_error(
            env.get(&login_path("/bff/login", Some(r)), "").await,
            400,
            "invalid_return_to",
        )
        .await;
    }
    assert!(stored(port).is_empty());

    // A cookieless flood from one address, each with a long non-ASCII `return_to` (976
    // bytes resolved): PER_CLIENT transactions, then 429.
    let longest = format!("/{}", "é".repeat(160));
    let path = login_path("/bff/login", Some(&longest));
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut binding = None;
    for _ in 0..FLOOD {
        let resp = env.get(&path, "").await;
        let status = resp.status().as_u16();
        *statuses.entry(status).or_default() += 1;
        if status == 302 && binding.is_none() {
            binding = set_cookie_for(resp.headers(), LOGIN_COOKIE).map(|c| cookie_value(&c));
        } else if status == 429 {
            let body = expect_error(resp, 429, "too_many_logins").await;
            assert!(body["message"].as_str().is_some());
        }
    }
    assert_eq!(
        statuses,
        BTreeMap::from([(302, PER_CLIENT), (429, FLOOD - PER_CLIENT)])
    );
    let keys = stored(port);
    assert_eq!(keys.len(), PER_CLIENT, "{keys:?}");
    let largest = keys.values().copied().max().unwrap_or(0);
    assert!(largest < 2048, "a transaction takes {largest} bytes");
    println!(
        "{FLOOD} cookieless logins -> {} keys, largest {largest} bytes",
        keys.len()
    );

    // A browser that keeps its login cookie is not counted and replaces its one
    // transaction: FLOOD more logins, no new key.
    let binding = format!("{LOGIN_COOKIE}={}", binding.expect("a login cookie"));
    for _ in 0..FLOOD {
        let started = env.start_login(Some("/after"), &binding).await;
        let again = started.login_set_cookie.expect("login cookie renewed");
        assert_eq!(format!("{LOGIN_COOKIE}={}", cookie_value(&again)), binding);
    }
    let after = stored(port);
    assert_eq!(after.len(), PER_CLIENT, "{after:?}");
    println!(
        "{FLOOD} logins with one login cookie -> {} keys",
        after.len()
    );
    assert_eq!(
        metric_value(&env.gw, "bff_logins_total{outcome=\"limited\"}").await,
        (FLOOD - PER_CLIENT) as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_binding_is_minted_by_bffgate_host_prefixed_when_secure_and_cleared() {
    for (edit, name) in [
        (None, LOGIN_COOKIE),
        (
            Some(secure as fn(String) -> String),
            "__Host-bff_session_login",
        ),
    ] {
        let env = Env::start(Setup {
            edit,
            ..Setup::default()
        })
        .await;
        // A value the client (or a sibling site) chose is never adopted, under either name.
        let chosen = "A".repeat(43);
        let planted = format!("{name}={chosen}; {LOGIN_COOKIE}={chosen}");
        let resp = env.get("/bff/login?return_to=/after", &planted).await;
        assert_eq!(resp.status(), 302);
        let set = set_cookie_for(resp.headers(), name).expect("login cookie");
        let minted = cookie_value(&set);
        assert_ne!(minted, chosen);
        assert_eq!(minted.len(), 43);
        let attributes = cookie_attributes(&set);
        if edit.is_some() {
            // `__Host-`: Secure, Path=/, no Domain.
            for a in ["Path=/", "HttpOnly", "Secure", "SameSite=Lax"] {
                assert!(attributes.contains(&a.to_string()), "{set}");
            }
            assert!(!attributes.iter().any(|a| a.starts_with("Domain")), "{set}");
        } else {
            assert!(attributes.contains(&"Path=/bff".to_string()), "{set}");
        }
        // The minted value is adopted while its transaction lives.
        let binding = format!("{name}={minted}");
        let resp = env.get("/bff/login?return_to=/after", &binding).await;
        let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let set = set_cookie_for(resp.headers(), name).expect("login cookie");
        assert_eq!(cookie_value(&set), minted);
        // The callback completes, and clears the login cookie.
        let back = env.authorize(&OpBrowser::new(), &location).await;
        let resp = env.callback(&back, &binding).await;
        assert_eq!(resp.status(), 302, "{}", env.gw.log());
        assert!(set_cookie_for(resp.headers(), COOKIE).is_some());
        let cleared = set_cookie_for(resp.headers(), name).expect("login cookie cleared");
        assert!(
            cookie_attributes(&cleared).contains(&"Max-Age=0".to_string()),
            "{cleared}"
        );
    }
}

/// A `state` whose issue time the attacker chose (base64url of 24 bytes and the time).
fn forged_state(issued_at: u64) -> String {
    let mut raw = vec![7u8; 24];
    raw.extend_from_slice(&issued_at.to_be_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_state_time_neither_wraps_nor_takes_the_gateway_down() {
    let env = Env::start(Setup::default()).await;
    let started = env.start_login(Some("/after"), "").await;
    let binding = format!(
        "{LOGIN_COOKIE}={}",
        cookie_value(started.login_set_cookie.as_deref().unwrap())
    );
    let callback = Url::parse(&env.callback_url()).unwrap();
    for (issued_at, code) in [
        (u64::MAX, "invalid_state"),
        (u64::MAX - 10, "invalid_state"),
        (0, "login_expired"),
    ] {
        for cookies in ["", binding.as_str()] {
            let url = with_param(
                &with_param(&callback, "code", Some("x")),
                "state",
                Some(&forged_state(issued_at)),
            );
            expect_error(env.callback(&url, cookies).await, 400, code).await;
        }
    }
    // The real login is untouched and completes.
    let back = env
        .authorize(&OpBrowser::new(), &started.authorization_url)
        .await;
    let resp = env.callback(&back, &binding).await;
    assert_eq!(resp.status(), 302, "{}", env.gw.log());
    assert!(!env.gw.log().contains("panicked"), "{}", env.gw.log());
}
