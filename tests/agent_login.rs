//! The OAuth agent (`/bff/*`) end to end against a real OpenID provider
//! (`oidc-provider` 9.13.3, `tests/provider`): login with PKCE through the provider's
//! login form, the session it creates, token injection, userinfo, logout with revocation,
//! CSRF, state and nonce checks, open-redirect refusal, provider outages and
//! misconfiguration, back-channel logout (with replay), and CORS.
//!
//! Each test runs its own provider, echo upstream and bffgate process (and redis-server
//! where named). The provider issues 60 s access tokens and refresh tokens, requires PKCE,
//! and sends back-channel logout to bffgate (directly, or through a recording relay).

mod callback;
mod journey;
mod limits;
mod live_streams;
mod logout;
mod origins;
mod provider_faults;
mod rate;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use url::Url;

use crate::common::agent::{
    cookie_attributes, cookie_value, jwt_payload, set_cookie_for, set_cookie_headers, LogoutRelay,
    OidcBlock, POST_LOGIN, POST_LOGOUT,
};
use crate::common::provider::{stat, OpBrowser, Provider, ProviderSettings, PASSWORD, USER};
use crate::common::scrape::{metric, scrape};
use crate::common::{
    client, eventually, expect_echo, expect_error, expect_limited, free_port, now, query_param,
    route, session_cookie, EchoServer, Gateway, GatewayConfig, RedisProcess, APP_ORIGIN, COOKIE,
    CSRF_HEADER,
};

/// The login-binding cookie's name.
const LOGIN_COOKIE: &str = "bff_session_login";
/// The provider's access-token lifetime in these tests, seconds.
const ACCESS_TTL: u64 = 60;
/// `session.absolute_timeout` of the test config (12h), seconds.
const ABSOLUTE: u64 = 12 * 3600;

// ---------------------------------------------------------------------------------------
// The fixture

#[derive(Default)]
struct Setup {
    /// Sessions in a real redis-server instead of the memory store.
    redis: bool,
    /// Back-channel logout through a [`LogoutRelay`] that records the logout tokens.
    relay: bool,
    /// `oidc.session_claims`.
    session_claims: Option<Vec<&'static str>>,
    /// The client authenticates with `client_secret_post` (provider and gateway).
    client_secret_post: bool,
    /// Rewrites the gateway's config template before it starts.
    edit: Option<fn(String) -> String>,
    /// More routes (YAML flow mappings, see [`route`]) beside `api`.
    routes: Vec<String>,
}

/// One test's processes: the provider, the echo upstream (route `api`, `/api`, auth
/// required), bffgate, and optionally Redis and the logout relay.
struct Env {
    provider: Provider,
    gw: Gateway,
    relay: Option<LogoutRelay>,
    http: reqwest::Client,
    _echo: EchoServer,
    _redis: Option<RedisProcess>,
    /// The gateway's config template (placeholders unfilled), for starting more instances.
    template: String,
}

/// A completed login.
struct LoggedIn {
    /// The sealed `bff_session` value.
    cookie: String,
}

/// A `GET /bff/login` answered 302 to the provider.
struct Started {
    authorization_url: Url,
    /// The `Set-Cookie` for the login cookie, if one was set.
    login_set_cookie: Option<String>,
    /// Every `Set-Cookie` of the answer.
    set_cookies: Vec<String>,
}

impl Started {
    fn param(&self, name: &str) -> String {
        query_param(&self.authorization_url, name)
            .unwrap_or_else(|| panic!("no {name} in {}", self.authorization_url))
    }
}

fn gateway_template(
    issuer: &str,
    upstream: &str,
    redis: Option<String>,
    oidc: &OidcBlock,
    routes: &[String],
) -> String {
    let mut all = vec![route("api", "/api", upstream, "required", "")];
    all.extend_from_slice(routes);
    let mut cfg = GatewayConfig::new(all);
    if let Some(url) = redis {
        cfg = cfg.redis(url);
    }
    let mut oidc = oidc.clone();
    oidc.issuer = issuer.to_owned();
    oidc.append_to(&cfg.yaml())
}

fn settings() -> ProviderSettings {
    ProviderSettings {
        access_token_ttl: ACCESS_TTL,
        post_logout_redirect_uris: vec![POST_LOGOUT.into()],
        ..ProviderSettings::default()
    }
}

/// How long a gateway may take to answer `/readyz` 200.
const READY: Duration = Duration::from_secs(10);

/// The value of a series (`name{labels}`) on the gateway's metrics listener, 0 if absent.
async fn metric_value(gw: &Gateway, series: &str) -> f64 {
    metric(&scrape(gw).await, series).unwrap_or(0.0)
}

/// Every string in a JSON value, recursively.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// A response's status line, headers and body as one text (for "no token anywhere").
async fn whole_text(resp: reqwest::Response) -> (u16, reqwest::header::HeaderMap, String) {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut text = format!("{status}\n");
    for (k, v) in &headers {
        text.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("<binary>")));
    }
    text.push('\n');
    text.push_str(&resp.text().await.unwrap_or_default());
    (status, headers, text)
}

impl Env {
    async fn start(setup: Setup) -> Env {
        let redis = setup.redis.then(RedisProcess::start);
        let echo = EchoServer::start().await;
        let auth = if setup.client_secret_post {
            "client_secret_post"
        } else {
            "client_secret_basic"
        };
        let mut provider = Provider::start(ProviderSettings {
            token_endpoint_auth_method: auth.into(),
            ..settings()
        })
        .await;
        let mut oidc = OidcBlock::new(
            &provider.base_url(),
            provider.client_id(),
            provider.client_secret(),
        );
        oidc.client_auth = Some(auth.to_owned());
        oidc.session_claims = setup
            .session_claims
            .map(|c| c.iter().map(|s| s.to_string()).collect());
        let template = gateway_template(
            &provider.base_url(),
            &echo.url(),
            redis.as_ref().map(RedisProcess::url),
            &oidc,
            &setup.routes,
        );
        let template = setup
            .edit
            .map_or_else(|| template.clone(), |f| f(template.clone()));
        let gw = Gateway::start(&template).await;
        let relay = if setup.relay {
            let r = LogoutRelay::start().await;
            r.forward_to(&gw.url("/bff/backchannel-logout"));
            Some(r)
        } else {
            None
        };
        let backchannel = relay
            .as_ref()
            .map_or_else(|| gw.url("/bff/backchannel-logout"), LogoutRelay::url);
        provider
            .update_client(json!({
                "redirect_uris": [gw.url("/bff/callback")],
                "post_logout_redirect_uris": [POST_LOGOUT],
                "backchannel_logout_uri": backchannel,
            }))
            .await;
        gw.wait_ready(READY).await;
        Env {
            provider,
            gw,
            relay,
            http: client(),
            _echo: echo,
            _redis: redis,
            template,
        }
    }

    fn callback_url(&self) -> String {
        self.gw.url("/bff/callback")
    }

    /// `GET path` with `Cookie: cookies` ("" for none).
    async fn get(&self, path: &str, cookies: &str) -> reqwest::Response {
        let mut req = self.http.get(self.gw.url(path));
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        req.send().await.expect("request to bffgate")
    }

    /// `GET /bff/login?return_to=<encoded return_to>` (no parameter when `None`), which
    /// must answer 302 to the provider's authorization endpoint.
    async fn start_login(&self, return_to: Option<&str>, cookies: &str) -> Started {
        let resp = self
            .get(&login_path("/bff/login", return_to), cookies)
            .await;
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let set_cookies = set_cookie_headers(resp.headers());
        let login_set_cookie = set_cookie_for(resp.headers(), LOGIN_COOKIE);
        let body = resp.text().await.unwrap_or_default();
        assert_eq!(status, 302, "GET /bff/login: {body}");
        let authorization_url = Url::parse(&location.expect("Location")).expect("absolute URL");
        Started {
            authorization_url,
            login_set_cookie,
            set_cookies,
        }
    }

    /// Drives the provider (login form or single sign-on) from an authorization URL to the
    /// redirect back to bffgate's callback, not called.
    async fn authorize(&self, browser: &OpBrowser, authorization_url: &Url) -> Url {
        let back = browser
            .authorize(authorization_url.clone(), USER, PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("provider login: {e}\n{}", self.provider.log()));
        assert!(
            back.as_str().starts_with(&self.callback_url()),
            "the provider sent the browser to {back}, not to bffgate's callback"
        );
        back
    }

    /// `GET` a callback URL with the login cookie (`None`: no cookie at all).
    async fn callback(&self, url: &Url, cookies: &str) -> reqwest::Response {
        let mut req = self.http.get(url.clone());
        if !cookies.is_empty() {
            req = req.header("cookie", cookies);
        }
        req.send().await.expect("callback request")
    }

    /// A whole login of alice in `browser` (a provider session of its own), landing on
    /// `/after`.
    async fn login(&self, browser: &OpBrowser) -> LoggedIn {
        let started = self.start_login(Some("/after"), "").await;
        let login_cookie = cookie_value(
            started
                .login_set_cookie
                .as_deref()
                .expect("the first login sets the login cookie"),
        );
        let back = self.authorize(browser, &started.authorization_url).await;
        let resp = self
            .callback(&back, &format!("{LOGIN_COOKIE}={login_cookie}"))
            .await;
        let (status, headers, text) = whole_text(resp).await;
        assert_eq!(status, 302, "callback: {text}\n{}", self.gw.log());
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some("http://app.test/after"),
            "{text}"
        );
        let set = set_cookie_for(&headers, COOKIE).expect("the callback sets the session cookie");
        LoggedIn {
            cookie: cookie_value(&set),
        }
    }

    /// `GET /api/x` with the session cookie.
    async fn api(&self, cookie: &str) -> reqwest::Response {
        self.get("/api/x", &session_cookie(cookie)).await
    }

    /// `GET /bff/session` with the session cookie: 200 and its JSON.
    async fn session(&self, cookie: &str) -> Value {
        let resp = self.get("/bff/session", &session_cookie(cookie)).await;
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("session JSON")
    }

    /// `POST path` with the session cookie and the given `Origin` / CSRF header.
    async fn post(
        &self,
        path: &str,
        cookie: Option<&str>,
        origin: Option<&str>,
        csrf: bool,
    ) -> reqwest::Response {
        let mut req = self.http.post(self.gw.url(path));
        if let Some(c) = cookie {
            req = req.header("cookie", session_cookie(c));
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if csrf {
            req = req.header(CSRF_HEADER, "1");
        }
        req.send().await.expect("POST to bffgate")
    }

    /// `POST /bff/backchannel-logout` with a form body.
    async fn backchannel(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.gw.url("/bff/backchannel-logout"))
            .form(form)
            .send()
            .await
            .expect("back-channel logout request")
    }

    async fn stats(&self) -> Value {
        self.provider.stats().await
    }
}

/// `path?return_to=<form-encoded>` or just `path`.
fn login_path(path: &str, return_to: Option<&str>) -> String {
    match return_to {
        Some(r) => format!(
            "{path}?return_to={}",
            url::form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>()
        ),
        None => path.to_owned(),
    }
}

/// The string with its first character replaced by another base64url character.
fn flip_first(s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    chars[0] = if chars[0] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

/// The callback URL with one query parameter replaced (`None`: removed).
fn with_param(url: &Url, name: &str, value: Option<&str>) -> Url {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(v) = value {
        pairs.push((name.to_owned(), v.to_owned()));
    }
    let mut out = url.clone();
    out.set_query(None);
    out.query_pairs_mut().extend_pairs(pairs);
    out
}
