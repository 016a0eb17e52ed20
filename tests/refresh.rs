//! Inline token refresh end to end: real logins through bffgate at the real OpenID provider
//! (`oidc-provider`, `tests/provider`), short-lived access tokens, rotating refresh tokens,
//! and one or two bffgate processes sharing a real Redis — standalone, a 3-master Cluster,
//! or a Sentinel-managed master that fails over.
//!
//! What is shown, with exact counts from the provider's `/__stats`:
//!
//! * 200 concurrent requests with an expired access token, split over two bffgate
//!   instances, cause exactly one refresh-token grant and no refresh-token reuse, and are
//!   all forwarded with the same new access token (Cluster, standalone, rotation off);
//! * twenty refresh cycles in a row without a new login, every forwarded token active;
//! * without rotation too, every due refresh reaches the provider (the grace record of the
//!   previous refresh, keyed by the unchanged refresh token, must not stand in for it);
//! * logout on one instance ends the session on the other;
//! * the provider going down: valid tokens are still used, expired ones get
//!   `503 refresh_unavailable`, and the session refreshes once the provider is back;
//! * a Sentinel failover keeps sessions and bffgate follows the new master;
//! * the token endpoint failing on purpose (500, 503, `invalid_client`, slower than the call
//!   limit): sessions survive, a 200-request storm makes one token call and every request
//!   is answered within `refresh_lock_wait` + 1 s, `invalid_grant` still ends the session;
//!   a signing-key rotation mid-session keeps the user logged in; 40 concurrent tokens
//!   naming an unknown key cost one key fetch.

mod cycles;
mod faults;
mod outages;
mod two_instances;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::cluster::RedisCluster;
use crate::common::provider::{self, stat, Provider, ProviderSettings, PASSWORD, USER};
use crate::common::sentinel::{SentinelSet, MASTER_NAME};
use crate::common::{
    client, eventually, expect_echo, expect_error, now_f64, route, session_cookie, EchoServer,
    Echoed, Gateway, GatewayConfig, RedisProcess, APP_ORIGIN, COOKIE, CSRF_HEADER,
};

/// Where the SPA lands after login.
const POST_LOGIN: &str = "http://app.test/home";

// ---------------------------------------------------------------------------------------
// The fixture

/// The session store the gateways share.
enum Store {
    Single(String),
    /// `rediss://` with the CA file to trust.
    SingleTls(String, String),
    Cluster(Vec<String>),
    Sentinel(Vec<String>),
}

impl Store {
    /// The `session.store.redis` mapping's connection key(s), indented for the template.
    fn yaml(&self) -> String {
        match self {
            Store::Single(url) => format!("      url: \"{url}\"\n"),
            Store::SingleTls(url, ca) => format!("      url: \"{url}\"\n      ca_file: \"{ca}\"\n"),
            Store::Cluster(nodes) => {
                let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
                format!("      cluster: [{}]\n", list.join(", "))
            }
            Store::Sentinel(nodes) => {
                let list: Vec<String> = nodes.iter().map(|n| format!("\"{n}\"")).collect();
                format!(
                    "      sentinel:\n        master_name: {MASTER_NAME}\n        nodes: [{}]\n",
                    list.join(", ")
                )
            }
        }
    }
}

/// The gateway template: the harness's config with `store`, the refresh settings and an
/// `oidc` block whose `redirect_uri` names the instance's own port (`{LISTEN}`). Every
/// instance started from it shares cookie keys, at-rest key and store.
fn template(issuer: &str, upstream: &str, store: &Store, refresh_before: &str) -> String {
    let base = GatewayConfig::new(vec![route("api", "/api", upstream, "required", "")]).yaml();
    let session = format!(
        "session:\n  store:\n    redis:\n{}      key_prefix: \"bfftest:\"\n      timeout: 1s\n  \
         refresh_before_expiry: {refresh_before}\n  refresh_lock_wait: 5s\n",
        store.yaml()
    );
    assert!(
        base.contains("\nsession:\n"),
        "unexpected harness template:\n{base}"
    );
    let mut t = base.replacen("\nsession:\n", &format!("\n{session}"), 1);
    if !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(&format!(
        "oidc:\n  issuer: \"{issuer}\"\n  client_id: \"bffgate\"\n  \
         client_secret: \"bffgate-test-secret\"\n  \
         redirect_uri: \"http://{{LISTEN}}/bff/callback\"\n  \
         post_login_redirect: \"{POST_LOGIN}\"\n"
    ));
    t
}

/// The provider, the echo upstream and `instances` bffgate processes on one store.
struct Env {
    gws: Vec<Gateway>,
    provider: Provider,
    http: reqwest::Client,
    _echo: EchoServer,
}

impl Env {
    async fn start(
        store: &Store,
        instances: usize,
        settings: ProviderSettings,
        refresh_before: &str,
    ) -> Env {
        let echo = EchoServer::start().await;
        let mut provider = Provider::start(settings).await;
        let t = template(&provider.base_url(), &echo.url(), store, refresh_before);
        let mut gws = Vec::new();
        for _ in 0..instances {
            gws.push(Gateway::start(&t).await);
        }
        // Every instance's callback is a registered redirect URI.
        let callbacks: Vec<String> = gws.iter().map(|g| g.url("/bff/callback")).collect();
        provider
            .update_client(json!({ "redirect_uris": callbacks }))
            .await;
        let http = client();
        for gw in &gws {
            gw.wait_ready(Duration::from_secs(15)).await;
        }
        Env {
            gws,
            provider,
            http,
            _echo: echo,
        }
    }

    /// A whole login of alice through instance `i` (a fresh provider browser: the login
    /// form is filled in); returns the sealed session cookie value.
    async fn login(&self, i: usize) -> String {
        let gw = &self.gws[i];
        let resp = provider::login(&self.http, &gw.url("/bff/login"), USER, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("login: {e}\nprovider log:\n{}", self.provider.log()));
        let status = resp.status();
        let cookies = provider::set_cookies(resp.headers());
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 302, "callback: {body}\ngateway log:\n{}", gw.log());
        assert_eq!(
            location.as_deref(),
            Some(POST_LOGIN),
            "callback went elsewhere"
        );
        cookies
            .into_iter()
            .find(|(n, _)| n == COOKIE)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("the callback set no session cookie: {body}"))
    }

    /// `GET /api/x` on instance `i` with the session cookie.
    async fn api(&self, i: usize, cookie: &str) -> reqwest::Response {
        self.http
            .get(self.gws[i].url("/api/x"))
            .header("cookie", session_cookie(cookie))
            .send()
            .await
            .expect("request to bffgate")
    }

    /// `GET /api/x` on instance `i`: must be forwarded; returns the bearer token.
    async fn api_token(&self, i: usize, cookie: &str) -> String {
        let resp = self.api(i, cookie).await;
        if resp.status() != 200 {
            let status = resp.status();
            let text = resp.text().await.unwrap_or_default();
            panic!(
                "GET /api/x on instance {i}: {status} {text}\ngateway log:\n{}",
                self.gws[i].log()
            );
        }
        bearer(&expect_echo(resp).await)
    }

    /// `/bff/session` on instance `i`: the JSON.
    async fn session(&self, i: usize, cookie: &str) -> Value {
        let resp = self
            .http
            .get(self.gws[i].url("/bff/session"))
            .header("cookie", session_cookie(cookie))
            .send()
            .await
            .expect("request to bffgate");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("session JSON")
    }

    /// The session's `access_token_expires_at` (Unix seconds) as instance `i` reports it.
    async fn access_expires_at(&self, i: usize, cookie: &str) -> u64 {
        let s = self.session(i, cookie).await;
        assert_eq!(s["authenticated"], true, "{s}");
        s["access_token_expires_at"]
            .as_u64()
            .unwrap_or_else(|| panic!("no access_token_expires_at in {s}"))
    }

    /// `POST /bff/refresh` on instance `i` (trusted origin, CSRF header): status and body.
    async fn force_refresh(&self, i: usize, cookie: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.gws[i].url("/bff/refresh"))
            .header("cookie", session_cookie(cookie))
            .header("origin", APP_ORIGIN)
            .header(CSRF_HEADER, "1")
            .send()
            .await
            .expect("POST /bff/refresh");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    /// A series (`name{labels}`) on instance `i`'s metrics listener, 0 when absent.
    async fn metric(&self, i: usize, series: &str) -> f64 {
        let text = self
            .http
            .get(self.gws[i].metrics_url())
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    /// The sum of a series over every instance.
    async fn metric_sum(&self, series: &str) -> f64 {
        let mut sum = 0.0;
        for i in 0..self.gws.len() {
            sum += self.metric(i, series).await;
        }
        sum
    }

    /// `bff_refreshes_total` by outcome on instance `i`, for messages.
    async fn refresh_outcomes(&self, i: usize) -> String {
        let mut out = Vec::new();
        for o in [
            "ok",
            "lock_wait",
            "grace_hit",
            "unavailable",
            "invalid_grant",
        ] {
            let n = self
                .metric(i, &format!("bff_refreshes_total{{outcome=\"{o}\"}}"))
                .await;
            out.push(format!("{o}={n}"));
        }
        out.join(" ")
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for (i, gw) in self.gws.iter().enumerate() {
            out.push_str(&format!("---- gateway {i} ----\n{}", gw.log()));
        }
        out.push_str(&format!("---- provider ----\n{}", self.provider.log()));
        out
    }
}

/// The provider with this access-token lifetime and rotation setting.
fn provider_settings(access_ttl: u64, rotate: bool) -> ProviderSettings {
    ProviderSettings {
        access_token_ttl: access_ttl,
        rotate_refresh_token: rotate,
        ..ProviderSettings::default()
    }
}

/// The token of the `Authorization: Bearer …` header the upstream received.
fn bearer(e: &Echoed) -> String {
    let auth = e
        .header("authorization")
        .unwrap_or_else(|| panic!("the upstream got no Authorization header: {e:?}"));
    let token = auth
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a bearer token: {auth}"));
    assert!(!token.is_empty(), "empty bearer token");
    token.to_owned()
}

/// Sleeps until the wall clock has passed `epoch_secs` (Unix seconds).
async fn sleep_until_epoch(epoch_secs: f64) {
    let wait = epoch_secs - now_f64();
    if wait > 0.0 {
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
    }
}
