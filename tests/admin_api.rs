//! The admin API (`admin.addr`) end to end: two bffgate processes sharing a real
//! redis-server, sessions made by real logins at the real provider, listed and revoked
//! through either instance's admin listener and through the `bffgate admin` command; and
//! the listener's refusals (token, networks, the public listener, methods, paths).

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::admin::{AdminBlock, TOKEN};
use crate::common::agent::{cookie_value, set_cookie_for, OidcBlock};
use crate::common::process::run_bounded;
use crate::common::provider::{OpBrowser, Provider, ProviderSettings, PASSWORD, USER};
use crate::common::streams::{SseServer, WsEcho};
use crate::common::watch;
use crate::common::{
    answers_within_window, bffgate_command, check_config, client, expect_error, route,
    session_cookie, session_json, EchoServer, Gateway, GatewayConfig, RedisProcess, COOKIE,
};

/// How long a gateway may take to answer `/readyz` 200.
const READY: Duration = Duration::from_secs(10);

/// The provider, the upstream, Redis and two gateways sharing it, each with an admin
/// listener.
struct Pair {
    provider: Provider,
    a: Gateway,
    b: Gateway,
    admin_a: AdminBlock,
    admin_b: AdminBlock,
    _echo: EchoServer,
    _ws: WsEcho,
    _sse: SseServer,
    _redis: RedisProcess,
    _dir: tempfile::TempDir,
}

impl Pair {
    async fn start() -> Pair {
        let redis = RedisProcess::start();
        let echo = EchoServer::start().await;
        let ws = WsEcho::start().await;
        // An event every 100 ms for far longer than a test runs.
        let sse = SseServer::start(100_000, Duration::from_millis(100)).await;
        let mut provider = Provider::start(ProviderSettings::default()).await;
        let dir = tempfile::tempdir().unwrap();
        let base = GatewayConfig::new(vec![
            route("api", "/api", &echo.url(), "required", ""),
            route("ws", "/ws", &ws.url(), "required", ""),
            route("events", "/events", &sse.url(), "required", ""),
        ])
        .redis(redis.url())
        .yaml();
        let oidc = OidcBlock::new(
            &provider.base_url(),
            provider.client_id(),
            provider.client_secret(),
        );
        let admin_a = AdminBlock::new().token_file(&dir.path().join("token-a"));
        let admin_b = AdminBlock::new().allow(&["127.0.0.0/8", "::1/128"]);
        let a = Gateway::start(&admin_a.append_to(&oidc.append_to(&base))).await;
        let b = Gateway::start(&admin_b.append_to(&oidc.append_to(&base))).await;
        provider
            .update_client(json!({
                "redirect_uris": [a.url("/bff/callback"), b.url("/bff/callback")],
                // With a back-channel logout URI the provider puts `sid` in ID tokens.
                "backchannel_logout_uri": a.url("/bff/backchannel-logout"),
            }))
            .await;
        a.wait_ready(READY).await;
        b.wait_ready(READY).await;
        Pair {
            provider,
            a,
            b,
            admin_a,
            admin_b,
            _echo: echo,
            _ws: ws,
            _sse: sse,
            _redis: redis,
            _dir: dir,
        }
    }

    /// A login of alice at `gw` from `browser` (its provider session) with this
    /// `User-Agent`: the session cookie's value.
    async fn login(&self, gw: &Gateway, browser: &OpBrowser, user_agent: &str) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .user_agent(user_agent)
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        let resp = browser
            .login(&http, &gw.url("/bff/login?return_to=/"), USER, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("login: {e}\n{}", self.provider.log()));
        assert_eq!(resp.status(), 302, "callback: {}", gw.log());
        cookie_value(&set_cookie_for(resp.headers(), COOKIE).expect("session cookie"))
    }

    /// The status of `GET /api/x` with this session at `gw`.
    async fn api(gw: &Gateway, cookie: &str) -> u16 {
        client()
            .get(gw.url("/api/x"))
            .header("cookie", session_cookie(cookie))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Asserts every cookie answers `status` on both instances: at once on the instance
    /// that made the change, within the session cache's window on the other.
    async fn assert_all(&self, cookies: &[&String], status: u16) {
        let since = std::time::Instant::now();
        for (i, cookie) in cookies.iter().enumerate() {
            for (name, gw) in [("a", &self.a), ("b", &self.b)] {
                let what = format!("session {i} on instance {name}");
                answers_within_window(since, status, &what, || Self::api(gw, cookie)).await;
            }
        }
    }

    /// The user's `sub` as `/bff/session` shows it.
    async fn sub(&self, cookie: &str) -> String {
        let v = session_json(&self.a, cookie).await;
        v["sub"].as_str().expect("sub").to_owned()
    }
}

/// Runs `bffgate admin ARGS` (the real binary): exit code and output.
fn cli(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = bffgate_command();
    cmd.arg("admin").args(args).envs(env.iter().copied());
    let (status, out) = run_bounded("bffgate admin", &mut cmd, Duration::from_secs(20)).unwrap();
    (status.and_then(|s| s.code()).unwrap_or(-1), out)
}

/// The JSON document in a command's output.
fn json_in(out: &str) -> Value {
    let start = out.find('{').unwrap_or_else(|| panic!("no JSON in {out}"));
    let end = out.rfind('}').unwrap();
    serde_json::from_str(&out[start..=end]).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn a_user_revoked_by_sub_is_logged_out_on_both_instances() {
    let pair = Pair::start().await;
    let (one, two) = (OpBrowser::new(), OpBrowser::new());
    let s1 = pair.login(&pair.a, &one, "Browser-One/1.0").await;
    let s2 = pair.login(&pair.b, &two, "Browser-Two/2.0").await;
    let s3 = pair.login(&pair.b, &one, "Browser-One/1.0").await;
    pair.assert_all(&[&s1, &s2, &s3], 200).await;
    let sub = pair.sub(&s1).await;

    let listed = pair.admin_a.list(&sub).await;
    assert_eq!(listed.len(), 3, "{listed:?}");
    let mut agents: Vec<&str> = listed
        .iter()
        .map(|s| s["user_agent"].as_str().unwrap())
        .collect();
    agents.sort_unstable();
    assert_eq!(
        agents,
        ["Browser-One/1.0", "Browser-One/1.0", "Browser-Two/2.0"]
    );
    for s in &listed {
        assert_eq!(s["client_addr"], "127.0.0.1", "{s}");
        assert_eq!(s["handle"].as_str().unwrap().len(), 64, "{s}");
        let created = s["created_at"].as_u64().unwrap();
        let seen = s["last_seen_at"].as_u64().unwrap();
        assert!(seen >= created, "{s}");
        assert!(s["idle_expires_at"].as_u64().unwrap() > seen, "{s}");
        assert!(s["absolute_expires_at"].as_u64().unwrap() > created, "{s}");
    }
    let text = serde_json::to_string(&listed).unwrap();
    for cookie in [&s1, &s2, &s3] {
        assert!(!text.contains(cookie.as_str()), "a cookie in {text}");
    }
    assert!(!text.contains("eyJ"), "something like a JWT in {text}");
    // The other instance sees the same sessions.
    let mut handles_a: Vec<Value> = listed.iter().map(|s| s["handle"].clone()).collect();
    let mut handles_b: Vec<Value> = pair
        .admin_b
        .list(&sub)
        .await
        .iter()
        .map(|s| s["handle"].clone())
        .collect();
    handles_a.sort_by_key(ToString::to_string);
    handles_b.sort_by_key(ToString::to_string);
    assert_eq!(handles_a, handles_b);

    // Live connections of the user on both instances: a WebSocket through a, an event
    // stream through b.
    let ws = watch::websocket(pair.a.addr(), "/ws/chat", &s1).await;
    let events = watch::event_stream(pair.b.addr(), "/events/feed", &s2).await;
    let requested = std::time::Instant::now();
    assert_eq!(pair.admin_a.revoke(json!({ "sub": sub })).await, 3);
    for stream in [&ws, &events] {
        let ended = stream
            .wait_end(Duration::from_secs(3))
            .await
            .unwrap_or_else(|| panic!("{} still open 3 s after the revocation", stream.what()));
        let took = ended.saturating_duration_since(requested);
        eprintln!(
            "{} closed {took:?} after the admin revocation was sent",
            stream.what()
        );
        assert!(
            took <= Duration::from_secs(1),
            "{} closed after {took:?}",
            stream.what()
        );
    }
    pair.assert_all(&[&s1, &s2, &s3], 401).await;
    assert!(pair.admin_b.list(&sub).await.is_empty());
    assert_eq!(pair.admin_b.revoke(json!({ "sub": sub })).await, 0);

    // Every call left one audit line; none carries the admin token.
    let log = pair.a.log();
    let audit: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("bffgate::audit"))
        .collect();
    assert_eq!(audit.len(), 2, "{log}");
    assert!(audit[1].contains("operation=\"revoke\"") || audit[1].contains("operation=revoke"));
    assert!(audit[1].contains("count=3"), "{}", audit[1]);
    assert!(!log.contains(TOKEN), "the admin token is in the log");
}

#[tokio::test]
async fn sessions_are_revoked_by_handle_and_by_sid_also_from_the_command() {
    let pair = Pair::start().await;
    let (one, two) = (OpBrowser::new(), OpBrowser::new());
    let s1 = pair.login(&pair.a, &one, "Browser-One/1.0").await;
    let s2 = pair.login(&pair.b, &one, "Browser-One/1.0").await;
    let s3 = pair.login(&pair.a, &two, "Browser-Two/2.0").await;
    let sub = pair.sub(&s1).await;
    pair.assert_all(&[&s1, &s2, &s3], 200).await;

    // The command lists through the config of instance a (its admin.addr and token file).
    let config = pair.a.config_path().display().to_string();
    let (code, out) = cli(&["-c", &config, "list", "--sub", &sub], &[]);
    assert_eq!(code, 0, "{out}");
    let listed = json_in(&out)["sessions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3, "{out}");
    let two_handle = listed
        .iter()
        .find(|s| s["user_agent"] == "Browser-Two/2.0")
        .map(|s| s["handle"].as_str().unwrap().to_owned())
        .unwrap();
    let sid = listed
        .iter()
        .find(|s| s["user_agent"] == "Browser-One/1.0")
        .and_then(|s| s["sid"].as_str())
        .expect("a sid")
        .to_owned();

    // By handle, through instance b's listener: only browser two's session ends.
    assert_eq!(
        pair.admin_b.revoke(json!({ "handle": two_handle })).await,
        1
    );
    pair.assert_all(&[&s3], 401).await;
    pair.assert_all(&[&s1, &s2], 200).await;

    // By sid, with the command: both sessions of browser one's provider session end.
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let url = pair.admin_b.url();
    let token_path = token_file.display().to_string();
    let (code, out) = cli(
        &[
            "revoke",
            "--sid",
            &sid,
            "--url",
            &url,
            "--token-file",
            &token_path,
        ],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(json_in(&out)["revoked"], 2, "{out}");
    pair.assert_all(&[&s1, &s2], 401).await;

    // The command's refusals: a wrong token (exit 1, the API's code), no token (exit 2),
    // nobody listening (exit 3).
    let (code, out) = cli(
        &["revoke", "--sub", &sub, "--url", &url],
        &[("BFFGATE_ADMIN_TOKEN", "wrong-token")],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("admin_unauthorized"), "{out}");
    let (code, out) = cli(&["revoke", "--sub", &sub, "--url", &url], &[]);
    assert_eq!(code, 2, "{out}");
    let closed = format!("http://127.0.0.1:{}", crate::common::closed_port());
    let (code, out) = cli(
        &["list", "--sub", &sub, "--url", &closed],
        &[("BFFGATE_ADMIN_TOKEN", TOKEN)],
    );
    assert_eq!(code, 3, "{out}");
    let (code, out) = cli(&["revoke", "--sub", "x", "--sid", "y"], &[]);
    assert_eq!(code, 2, "{out}");
}

#[tokio::test]
async fn the_admin_listener_refuses_strangers_and_the_public_listener_does_not_serve_it() {
    let echo = EchoServer::start().await;
    let base = GatewayConfig::new(vec![route("api", "/api", &echo.url(), "required", "")]).yaml();
    let admin = AdminBlock::new().allow(&["127.0.0.1/32"]);
    let gw = Gateway::start(&admin.append_to(&base)).await;
    let list = "/admin/v1/sessions/list";
    let body = json!({ "sub": "alice" });

    expect_error(
        admin.post(list, None, &body).await,
        401,
        "admin_unauthorized",
    )
    .await;
    expect_error(
        admin.post(list, Some("not-the-token"), &body).await,
        401,
        "admin_unauthorized",
    )
    .await;
    let longer = format!("{TOKEN}x");
    expect_error(
        admin.post(list, Some(&longer), &body).await,
        401,
        "admin_unauthorized",
    )
    .await;
    assert!(admin.list("alice").await.is_empty());

    // Every path of docs/admin-openapi.yaml is served here (a body it refuses, not 404).
    let doc: serde_yaml::Value =
        serde_yaml::from_str(include_str!("../docs/admin-openapi.yaml")).unwrap();
    let paths: Vec<String> = doc["paths"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(paths.len(), 2);
    for path in &paths {
        expect_error(
            admin.post(path, Some(TOKEN), &json!({})).await,
            400,
            "invalid_request",
        )
        .await;
        // The same path on the public listener is an unknown route.
        let resp = client()
            .post(gw.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        expect_error(resp, 404, "route_not_found").await;
    }
    expect_error(
        admin
            .post(
                "/admin/v1/sessions/revoke",
                Some(TOKEN),
                &json!({ "sub": "a", "sid": "b" }),
            )
            .await,
        400,
        "invalid_request",
    )
    .await;
    expect_error(
        admin
            .post("/admin/v1/nothing", Some(TOKEN), &json!({}))
            .await,
        404,
        "route_not_found",
    )
    .await;
    let get = client()
        .get(format!("{}{list}", admin.url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    expect_error(get, 405, "method_not_allowed").await;

    // An allow list without the caller's address: 403 even with the right token.
    let elsewhere = AdminBlock::new().allow(&["10.0.0.0/8"]);
    let _gw2 = Gateway::start(&elsewhere.append_to(&base)).await;
    expect_error(
        elsewhere.post(list, Some(TOKEN), &body).await,
        403,
        "admin_forbidden",
    )
    .await;

    let log = gw.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("bffgate::audit"))
            .any(|l| l.contains("admin_unauthorized")),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "the admin token is in the log");
}

#[tokio::test]
async fn a_new_token_is_live_after_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("admin-token");
    let base = GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")]).yaml();
    let admin = AdminBlock::new().token_file(&token_file);
    let mut gw = Gateway::start(&admin.append_to(&base)).await;
    let list = "/admin/v1/sessions/list";
    let body = json!({ "sub": "alice" });
    assert_eq!(admin.post(list, Some(TOKEN), &body).await.status(), 200);

    let rotated = "rotated-admin-token-0123456789abcdefghijklmnop";
    std::fs::write(&token_file, rotated).unwrap();
    gw.signal(libc::SIGHUP);
    let admin = &admin;
    let body = &body;
    let swapped = crate::common::eventually(Duration::from_secs(5), || async move {
        admin.post(list, Some(rotated), body).await.status() == 200
    })
    .await;
    assert!(
        swapped,
        "the new token was not accepted; log:\n{}",
        gw.log()
    );
    expect_error(
        admin.post(list, Some(TOKEN), body).await,
        401,
        "admin_unauthorized",
    )
    .await;
}

#[test]
fn check_refuses_an_admin_listener_on_a_public_address_and_bad_networks() {
    let base = GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")]).yaml();
    let yaml = format!(
        "{}admin:\n  addr: \"127.0.0.1:18080\"\n  token: \"{TOKEN}\"\n  allow: [\"10.0.0.0/40\"]\n",
        base.replace("{LISTEN}", "127.0.0.1:18080")
            .replace("{METRICS}", "127.0.0.1:18090")
            .replace("{DIR}", "/tmp")
    );
    let (status, out) = check_config(&yaml, &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("admin.addr"), "{out}");
    assert!(out.contains("admin.allow[0]"), "{out}");
    let no_token = yaml.replace(&format!("  token: \"{TOKEN}\"\n"), "");
    let (status, out) = check_config(&no_token, &[]);
    assert_eq!(status.code(), Some(2), "{out}");
    assert!(out.contains("token"), "{out}");
}
