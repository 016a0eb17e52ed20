//! A real OpenID provider for end-to-end tests: `tests/provider/provider.mjs`
//! (the npm package `oidc-provider`) run by `node`, owned by one test.
//!
//! * [`Provider`] — start / stop / restart (same port, same keys, same state), stats,
//!   introspection and the other endpoints, with the confidential client's credentials.
//! * [`ProviderSettings`] — what the provider is started with (client, lifetimes, rotation).
//! * [`OpBrowser`] — a user agent for the provider's pages (its own cookie jar), and the
//!   login driver: [`OpBrowser::login_until_callback`] runs bffgate's `/bff/login` through
//!   the provider's login form up to bffgate's callback URL, [`PendingCallback::send`]
//!   calls it. [`login`] does both at once.
//! * [`pkce_pair`] — an S256 PKCE verifier and challenge for tests that speak OAuth by hand.
//!
//! The provider's npm dependencies are installed on first use (`npm ci` in
//! `tests/provider`, serialised across test processes by a file lock) unless
//! `BFFGATE_PROVIDER_NO_INSTALL` is set. `BFFGATE_NODE` names another `node` binary.
//!
//! This file is included both as `common::provider` and, by `tests/provider_smoke.rs`, on
//! its own: it uses nothing from the rest of `tests/common`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use url::Url;

/// How long the provider may take to print `READY` after spawn.
/// Generous: loading oidc-provider and making an RSA key takes seconds when the suite
/// keeps both cores busy. A bound on "it started", not a performance check.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// The most redirects and form posts one drive through the provider follows.
const MAX_HOPS: usize = 20;

/// The demo user's login.
pub const USER: &str = "alice";
/// The demo user's password.
pub const PASSWORD: &str = "wonderland";

/// `tests/provider` in this crate.
pub fn provider_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/provider")
}

// ---------------------------------------------------------------------------------------
// Settings

/// What the provider is started with. `Default` gives: ephemeral port, client `bffgate` /
/// `bffgate-test-secret` with `client_secret_basic`, redirect URI
/// `http://127.0.0.1/bff/callback` (replace it, or [`Provider::update_client`] once the
/// gateway's port is known), access tokens for 60 s, refresh-token rotation on.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// Port to listen on; 0 picks a free one (kept across [`Provider::restart`]).
    pub port: u16,
    /// The issuer the provider claims (discovery `issuer`, ID-token `iss`), if not its own
    /// URL: to test "discovery names another issuer".
    pub issuer_override: Option<String>,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
    /// Back-channel logout endpoint (`backchannel_logout_session_required` is always true).
    pub backchannel_logout_uri: Option<String>,
    /// Access-token lifetime, seconds.
    pub access_token_ttl: u64,
    /// ID-token lifetime, seconds.
    pub id_token_ttl: u64,
    /// Refresh-token lifetime, seconds.
    pub refresh_token_ttl: u64,
    /// Authorization-code lifetime, seconds.
    pub authorization_code_ttl: u64,
    /// Provider browser-session lifetime, seconds.
    pub session_ttl: u64,
    /// Every refresh returns a new refresh token and consumes the old one; presenting a
    /// consumed one is `invalid_grant` and revokes the whole grant.
    pub rotate_refresh_token: bool,
    /// Tokens die with the provider's browser session (oidc-provider's default without
    /// `offline_access`). Off by default: tokens live on like offline access.
    pub tokens_expire_with_session: bool,
    /// oidc-provider's `conformIdTokenClaims`: when true, scope claims (name, email) go to
    /// userinfo only; when false (default) the ID token carries them too.
    pub conform_id_token_claims: bool,
    /// Refuse a token/introspection/revocation request that authenticates the client with
    /// the other secret method (oidc-provider itself accepts `client_secret_basic` and
    /// `client_secret_post` interchangeably). Default true.
    pub strict_client_auth: bool,
    /// Extra top-level settings merged into the JSON, e.g. `{"users": [...]}`.
    pub extra: Value,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        ProviderSettings {
            port: 0,
            issuer_override: None,
            client_id: "bffgate".into(),
            client_secret: "bffgate-test-secret".into(),
            redirect_uris: vec!["http://127.0.0.1/bff/callback".into()],
            post_logout_redirect_uris: Vec::new(),
            token_endpoint_auth_method: "client_secret_basic".into(),
            backchannel_logout_uri: None,
            access_token_ttl: 60,
            id_token_ttl: 3600,
            refresh_token_ttl: 24 * 3600,
            authorization_code_ttl: 60,
            session_ttl: 24 * 3600,
            rotate_refresh_token: true,
            tokens_expire_with_session: false,
            conform_id_token_claims: false,
            strict_client_auth: true,
            extra: Value::Null,
        }
    }
}

impl ProviderSettings {
    /// Default settings with these redirect URIs.
    pub fn with_redirect_uris(uris: &[&str]) -> Self {
        ProviderSettings {
            redirect_uris: uris.iter().map(|u| u.to_string()).collect(),
            ..Default::default()
        }
    }

    /// The JSON `provider.mjs` reads (see `tests/provider/README.md`).
    pub fn to_json(&self, state_dir: &Path) -> Value {
        let mut v = json!({
            "host": "127.0.0.1",
            "port": self.port,
            "issuer": self.issuer_override,
            "state_dir": state_dir,
            "access_token_ttl": self.access_token_ttl,
            "id_token_ttl": self.id_token_ttl,
            "refresh_token_ttl": self.refresh_token_ttl,
            "authorization_code_ttl": self.authorization_code_ttl,
            "session_ttl": self.session_ttl,
            "rotate_refresh_token": self.rotate_refresh_token,
            "tokens_expire_with_session": self.tokens_expire_with_session,
            "conform_id_token_claims": self.conform_id_token_claims,
            "strict_client_auth": self.strict_client_auth,
            "client": {
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "redirect_uris": self.redirect_uris,
                "post_logout_redirect_uris": self.post_logout_redirect_uris,
                "token_endpoint_auth_method": self.token_endpoint_auth_method,
                "backchannel_logout_uri": self.backchannel_logout_uri,
            },
        });
        if let (Some(obj), Some(extra)) = (v.as_object_mut(), self.extra.as_object()) {
            for (k, val) in extra {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------------------
// The process

/// A running `oidc-provider`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Provider {
    settings: ProviderSettings,
    child: Option<Child>,
    /// Held so the provider sees EOF (and exits) if this process dies without dropping us.
    stdin: Option<ChildStdin>,
    base_url: String,
    /// Keys (`keys.json`) and, between a stop and a restart, the store (`store.json`).
    state_dir: tempfile::TempDir,
    /// Everything the provider wrote to stderr, across restarts.
    log: Arc<Mutex<String>>,
    http: reqwest::Client,
}

impl Provider {
    /// Starts the provider and waits (10 s) for its `READY` line; panics with its stderr
    /// if it does not come.
    pub async fn start(settings: ProviderSettings) -> Provider {
        ensure_installed().unwrap_or_else(|e| panic!("{e}"));
        let mut provider = Provider {
            settings,
            child: None,
            stdin: None,
            base_url: String::new(),
            state_dir: tempfile::tempdir().expect("provider tempdir"),
            log: Arc::new(Mutex::new(String::new())),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("reqwest client"),
        };
        // A start that hangs (seen about once in 200 starts under a loaded suite; the Node
        // report printed on timeout says where) is killed and tried once more.
        if let Err(first) = provider.spawn().await {
            eprintln!("the OpenID provider did not start ({first}); trying once more");
            if let Err(e) = provider.spawn().await {
                panic!("could not start the OpenID provider: {e}");
            }
        }
        provider
    }

    /// Stops it (state persisted) and starts it again on the same port with the same keys,
    /// clients, sessions, grants and tokens.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.spawn().await {
                Ok(()) => return,
                // The port may take a moment to be bindable again.
                Err(e) if Instant::now() > deadline || !e.contains("EADDRINUSE") => {
                    panic!("provider restart failed: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// SIGTERM (the provider persists its state for [`Provider::restart`]), then SIGKILL if
    /// it has not exited after 5 s. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as libc::pid_t;
            // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
            let deadline = Instant::now() + STOP_GRACE;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        self.stdin = None;
    }

    /// SIGKILL: a crash. Its state is lost (a later [`Provider::restart`] keeps the keys,
    /// the port and the client, but no session, grant or token).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.stdin = None;
        let _ = std::fs::remove_file(self.state_dir.path().join("store.json"));
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let config = self.settings.to_json(self.state_dir.path()).to_string();
        let node = std::env::var("BFFGATE_NODE").unwrap_or_else(|_| "node".into());
        let mut child = Command::new(&node)
            .arg("--report-on-signal")
            .arg(format!(
                "--report-directory={}",
                self.state_dir.path().display()
            ))
            .arg(provider_dir().join("provider.mjs"))
            .arg(&config)
            .current_dir(provider_dir())
            .env("BFFGATE_PROVIDER_EXIT_ON_STDIN_EOF", "1")
            .env_remove("BFFGATE_PROVIDER_SETTINGS")
            .env_remove("NODE_OPTIONS")
            .env_remove("DEBUG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn {node}: {e} (is Node.js >= 20.19 installed?)"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");

        let run_start = self.log.lock().unwrap().len();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });

        let (tx, rx) = tokio::sync::oneshot::channel::<Result<String, String>>();
        let log = Arc::clone(&self.log);
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = match lines.next() {
                Some(Ok(line)) => match line.strip_prefix("READY ") {
                    Some(url) => Ok(url.trim().to_owned()),
                    None => Err(format!("unexpected first stdout line: {line}")),
                },
                Some(Err(e)) => Err(format!("reading stdout: {e}")),
                None => Err("exited before READY".to_owned()),
            };
            let _ = tx.send(first);
            // Keep draining so the provider never blocks on a full pipe.
            for line in lines {
                let Ok(line) = line else { break };
                let mut log = log.lock().unwrap();
                log.push_str("stdout: ");
                log.push_str(&line);
                log.push('\n');
            }
        });

        let ready = tokio::time::timeout(READY_DEADLINE, rx).await;
        let timed_out = ready.is_err();
        let failure = match ready {
            Ok(Ok(Ok(url))) => {
                self.base_url = url;
                let port = Url::parse(&self.base_url)
                    .ok()
                    .and_then(|u| u.port())
                    .ok_or_else(|| format!("bad READY url {}", self.base_url))?;
                self.settings.port = port;
                self.child = Some(child);
                self.stdin = stdin;
                return Ok(());
            }
            Ok(Ok(Err(e))) => e,
            Ok(Err(_)) => "stdout reader vanished".to_owned(),
            Err(_) => format!("no READY line within {READY_DEADLINE:?}"),
        };
        if timed_out {
            self.print_node_report(child.id());
        }
        let _ = child.kill();
        let _ = child.wait();
        // Give the stderr thread a moment to collect the last words.
        std::thread::sleep(Duration::from_millis(100));
        let stderr = self.log.lock().unwrap()[run_start..].to_owned();
        eprintln!("---- provider stderr ----\n{stderr}---- end of provider stderr ----");
        Err(format!("{failure}; stderr:\n{stderr}"))
    }

    /// Asks a hung Node process for its diagnostic report (SIGUSR2 with `--report-on-signal`)
    /// and prints where its JavaScript is, so a hang can be told from slowness.
    fn print_node_report(&self, pid: u32) {
        let Ok(pid) = i32::try_from(pid) else { return };
        // SAFETY: signalling a child process we spawned and have not reaped.
        unsafe { libc::kill(pid, libc::SIGUSR2) };
        std::thread::sleep(Duration::from_millis(1000));
        let reports = std::fs::read_dir(self.state_dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("report."));
        for report in reports {
            let text = std::fs::read_to_string(report.path()).unwrap_or_default();
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            eprintln!(
                "---- node report of the hung provider ----\njavascriptStack: {}\nlibuv handles: {}\n----",
                v["javascriptStack"],
                v["libuv"].as_array().map_or(0, Vec::len)
            );
            let _ = std::fs::remove_file(report.path());
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the provider wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The settings in force (port filled in once started).
    pub fn settings(&self) -> &ProviderSettings {
        &self.settings
    }

    /// Where it listens: `http://127.0.0.1:PORT` (no trailing slash). The URL to configure
    /// bffgate's `issuer` with (discovery is at `{base_url}/.well-known/openid-configuration`).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// The issuer it claims in discovery and tokens: [`Provider::base_url`] unless
    /// `issuer_override` was set.
    pub fn issuer(&self) -> String {
        self.settings
            .issuer_override
            .clone()
            .unwrap_or_else(|| self.base_url.clone())
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn discovery_url(&self) -> String {
        self.url("/.well-known/openid-configuration")
    }

    pub fn port(&self) -> u16 {
        self.settings.port
    }

    pub fn client_id(&self) -> &str {
        &self.settings.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.settings.client_secret
    }

    /// The discovery document.
    pub async fn discovery(&self) -> Value {
        self.get_json(&self.discovery_url()).await
    }

    /// `GET /__stats`: `grants` (successful token responses by `grant_type`),
    /// `grant_errors` (token errors by `error`), `refresh_token_reuse`,
    /// `authorization_code_reuse`, `authorizations`, `authorization_errors`, `logins`
    /// (`success`, `failure`), `userinfo` (`success`, `error`), `introspection`,
    /// `revocation`, `end_session`, `backchannel_logout` (`success`, `error`, `errors`),
    /// `server_errors`. Counts restart from zero when the provider restarts.
    pub async fn stats(&self) -> Value {
        self.get_json(&self.url("/__stats")).await
    }

    /// Sends a back-channel logout for every provider session of `account` (a `sub`) to
    /// every client of those sessions that has a `backchannel_logout_uri`, revokes those
    /// sessions' grants (tokens) and ends the sessions. Returns `{"sessions": n, "sent": n,
    /// "errors": [...]}`.
    pub async fn backchannel_logout(&self, account: &str) -> Value {
        self.post_json("/__backchannel_logout", json!({ "account": account }))
            .await
    }

    /// As [`Provider::backchannel_logout`] but leaves grants and tokens alive.
    pub async fn backchannel_logout_keep_grants(&self, account: &str) -> Value {
        self.post_json(
            "/__backchannel_logout",
            json!({ "account": account, "revoke_grants": false }),
        )
        .await
    }

    /// Changes the client's registration while running (e.g. `{"redirect_uris": [...]}`
    /// once the gateway's port is known), keeping it across restarts. Keys as in
    /// [`ProviderSettings`]'s `client` JSON: `redirect_uris`, `post_logout_redirect_uris`,
    /// `token_endpoint_auth_method`, `backchannel_logout_uri`, `client_secret`. Panics if
    /// the provider rejects the metadata.
    pub async fn update_client(&mut self, patch: Value) {
        let answer = self.post_json("/__client", patch.clone()).await;
        assert!(
            answer.get("error").is_none(),
            "provider rejected the client update {patch}: {answer}"
        );
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let s = &mut self.settings;
        if let Some(v) = patch.get("redirect_uris") {
            s.redirect_uris = strings(v);
        }
        if let Some(v) = patch.get("post_logout_redirect_uris") {
            s.post_logout_redirect_uris = strings(v);
        }
        if let Some(v) = patch
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
        {
            s.token_endpoint_auth_method = v.to_owned();
        }
        if let Some(v) = patch.get("backchannel_logout_uri") {
            s.backchannel_logout_uri = v.as_str().map(str::to_owned);
        }
        if let Some(v) = patch.get("client_secret").and_then(Value::as_str) {
            s.client_secret = v.to_owned();
        }
    }

    /// Token introspection (RFC 7662) with the client's credentials: `{"active": bool, ...}`.
    pub async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self
            .client_post("/token/introspection", &[("token", token)])
            .await;
        assert_eq!(status, 200, "introspection failed: {body}");
        body
    }

    /// Token revocation (RFC 7009) with the client's credentials; the HTTP status.
    pub async fn revoke(&self, token: &str) -> u16 {
        self.client_post("/token/revocation", &[("token", token)])
            .await
            .0
    }

    /// A token-endpoint request with the client's credentials (per its
    /// `token_endpoint_auth_method`): `(status, JSON body)`.
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        self.client_post("/token", form).await
    }

    /// `grant_type=authorization_code`.
    pub async fn exchange_code(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> (u16, Value) {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
        ])
        .await
    }

    /// `grant_type=refresh_token`.
    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    /// `GET /me` with the access token: `(status, JSON body or null)`.
    pub async fn userinfo(&self, access_token: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(self.url("/me"))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("userinfo request: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An authorization URL for the configured client (`response_type=code`, S256).
    pub fn authorization_url(
        &self,
        redirect_uri: &str,
        scope: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Url {
        let mut url = Url::parse(&self.url("/auth")).expect("authorization url");
        url.query_pairs_mut()
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", scope)
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    async fn client_post(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let mut req = self.http.post(self.url(path));
        if self.settings.token_endpoint_auth_method == "client_secret_post" {
            fields.push(("client_id", &self.settings.client_id));
            fields.push(("client_secret", &self.settings.client_secret));
        } else {
            let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
            let (id, secret): (String, String) = (
                enc(&self.settings.client_id),
                enc(&self.settings.client_secret),
            );
            req = req.basic_auth(id, Some(secret));
        }
        let resp = req
            .form(&fields)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log()));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get_json(&self, url: &str) -> Value {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}\n{}", self.log()));
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {url}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {text}"))
    }

    async fn post_json(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log()));
        let text = resp.text().await.unwrap_or_default();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST {path}: not JSON ({e}): {text}"))
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs `tests/provider`'s npm dependencies (`npm ci`) unless the pinned
/// `oidc-provider` is already there. Serialised across processes by `flock`.
pub fn ensure_installed() -> Result<(), String> {
    let dir = provider_dir();
    let installed = || -> bool {
        let wanted = std::fs::read_to_string(dir.join("package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| {
                v["dependencies"]["oidc-provider"]
                    .as_str()
                    .map(str::to_owned)
            });
        let have = std::fs::read_to_string(dir.join("node_modules/oidc-provider/package.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        wanted.is_some() && wanted == have
    };
    if installed() {
        return Ok(());
    }
    if std::env::var_os("BFFGATE_PROVIDER_NO_INSTALL").is_some() {
        return Err(format!(
            "the OpenID provider's npm packages are missing: run `npm ci --prefix {}`",
            dir.display()
        ));
    }
    let lock_path = std::env::temp_dir().join("bffgate-provider-npm-ci.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    {
        use std::os::fd::AsRawFd as _;
        // SAFETY: flock(2) on a file descriptor we own; released when `lock` is closed.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!("flock {}", lock_path.display()));
        }
    }
    if installed() {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run npm ci in {}: {e} (is npm installed?)", dir.display()))?;
    drop(lock);
    if !out.status.success() {
        return Err(format!(
            "npm ci in {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// PKCE

/// A fresh PKCE pair: `(code_verifier, S256 code_challenge)`.
pub fn pkce_pair() -> (String, String) {
    use sha2::Digest as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let verifier = b64.encode(bytes);
    let challenge = b64.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// A random URL-safe token (for `state`, `nonce`).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("OS randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

// ---------------------------------------------------------------------------------------
// The login driver

/// A user agent for the provider's pages: no automatic redirects, its own cookie jar (so
/// the provider's session survives between logins, and bffgate's cookies never mix with
/// the provider's although both live on 127.0.0.1).
pub struct OpBrowser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Default for OpBrowser {
    fn default() -> Self {
        Self::new()
    }
}

/// bffgate's callback, reached but not yet called.
#[derive(Clone, Debug)]
pub struct PendingCallback {
    /// bffgate's redirect URI with `code`, `state` (and `iss`) as the provider sent them.
    pub url: Url,
    /// The cookies bffgate set on the login response (the login binding), `(name, value)`.
    pub cookies: Vec<(String, String)>,
    /// Where bffgate's login sent the browser (the provider's authorization request).
    pub authorization_url: Url,
}

impl PendingCallback {
    /// A query parameter of the callback URL.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.url, name)
    }

    pub fn code(&self) -> Option<String> {
        self.param("code")
    }

    pub fn state(&self) -> Option<String> {
        self.param("state")
    }

    /// A query parameter of the authorization request bffgate made.
    pub fn authorization_param(&self, name: &str) -> Option<String> {
        query_param(&self.authorization_url, name)
    }

    /// `name=value; name=value` of [`PendingCallback::cookies`].
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The same callback with one query parameter replaced (or added, or with `None`
    /// removed): to tamper with `state`, `code` or `iss`.
    pub fn with_param(&self, name: &str, value: Option<&str>) -> PendingCallback {
        let mut pairs: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some(value) = value {
            pairs.push((name.to_owned(), value.to_owned()));
        }
        let mut url = self.url.clone();
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        PendingCallback {
            url,
            ..self.clone()
        }
    }

    /// `GET` the callback on bffgate with the login-binding cookies; bffgate's answer (the
    /// test reads its `Set-Cookie` and `Location`). `client` must not follow redirects.
    pub async fn send(&self, client: &reqwest::Client) -> Result<reqwest::Response, String> {
        self.send_with_cookie(client, &self.cookie_header()).await
    }

    /// As [`PendingCallback::send`] with an explicit `Cookie` header ("" for none).
    pub async fn send_with_cookie(
        &self,
        client: &reqwest::Client,
        cookie: &str,
    ) -> Result<reqwest::Response, String> {
        let mut req = client.get(self.url.clone());
        if !cookie.is_empty() {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        req.send()
            .await
            .map_err(|e| format!("GET callback {}: {e}", self.url))
    }
}

/// The whole login at once with a fresh [`OpBrowser`]: `GET start_url` on bffgate (e.g.
/// `http://127.0.0.1:PORT/bff/login?return_to=/`), the provider's login form, and bffgate's
/// callback; returns bffgate's answer to the callback. `client` must not follow redirects.
pub async fn login(
    client: &reqwest::Client,
    start_url: &str,
    user: &str,
    password: &str,
) -> Result<reqwest::Response, String> {
    OpBrowser::new()
        .login(client, start_url, user, password)
        .await
}

/// [`OpBrowser::login_until_callback`] with a fresh [`OpBrowser`].
pub async fn login_until_callback(
    client: &reqwest::Client,
    start_url: &str,
    user: &str,
    password: &str,
) -> Result<PendingCallback, String> {
    OpBrowser::new()
        .login_until_callback(client, start_url, user, password)
        .await
}

enum Hop {
    Get(Url),
    Post(Url, Vec<(String, String)>),
}

impl OpBrowser {
    pub fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(Arc::clone(&jar))
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("reqwest client");
        OpBrowser { http, jar }
    }

    /// The cookies this browser would send to `url` (`name=value; ...`), if any.
    pub fn cookies_for(&self, url: &str) -> Option<String> {
        use reqwest::cookie::CookieStore as _;
        let url = Url::parse(url).ok()?;
        self.jar
            .cookies(&url)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
    }

    /// [`OpBrowser::login_until_callback`] then [`PendingCallback::send`].
    pub async fn login(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        user: &str,
        password: &str,
    ) -> Result<reqwest::Response, String> {
        self.login_until_callback(client, start_url, user, password)
            .await?
            .send(client)
            .await
    }

    /// `GET start_url` on bffgate with `client` (no cookies), which must redirect to the
    /// provider's authorization endpoint; then drives the provider (login form with
    /// `user`/`password` if it asks — with a live provider session it does not — and any
    /// consent) until it redirects back off the provider: that URL (bffgate's callback) is
    /// returned, not called. Errors start with `login rejected` when the provider refused
    /// the credentials.
    pub async fn login_until_callback(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        user: &str,
        password: &str,
    ) -> Result<PendingCallback, String> {
        self.login_until_callback_with_cookie(client, start_url, "", user, password)
            .await
    }

    /// As [`OpBrowser::login_until_callback`], sending `cookie` (a `Cookie` header value,
    /// "" for none) on the request to `start_url`.
    pub async fn login_until_callback_with_cookie(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        cookie: &str,
        user: &str,
        password: &str,
    ) -> Result<PendingCallback, String> {
        let start = Url::parse(start_url).map_err(|e| format!("bad start url {start_url}: {e}"))?;
        let mut req = client.get(start.clone());
        if !cookie.is_empty() {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        let resp = req.send().await.map_err(|e| format!("GET {start}: {e}"))?;
        let status = resp.status();
        let cookies = set_cookies(resp.headers());
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!(
                "GET {start}: expected a redirect to the provider, got {status}: {body}"
            ));
        };
        let authorization_url = start
            .join(&location)
            .map_err(|e| format!("bad Location {location}: {e}"))?;
        let url = self
            .drive(authorization_url.clone(), Some((user, password)))
            .await?;
        if url.origin() == authorization_url.origin() {
            return Err(format!(
                "the provider never redirected back; ended at {url}"
            ));
        }
        Ok(PendingCallback {
            url,
            cookies,
            authorization_url,
        })
    }

    /// Drives the provider from an authorization request (no bffgate involved) and returns
    /// the redirect back to the client (`redirect_uri?code=...&state=...`), not called.
    pub async fn authorize(
        &self,
        authorization_url: Url,
        user: &str,
        password: &str,
    ) -> Result<Url, String> {
        let url = self
            .drive(authorization_url.clone(), Some((user, password)))
            .await?;
        if url.origin() == authorization_url.origin() {
            return Err(format!(
                "the provider never redirected back; ended at {url}"
            ));
        }
        Ok(url)
    }

    /// Follows an RP-initiated logout (the `end_session_endpoint` URL bffgate redirected
    /// to) through the provider's confirmation form; returns where the provider finally
    /// sends the browser (the `post_logout_redirect_uri`, with `state`), or the provider's
    /// own "signed out" page URL when there is none. Back-channel logout requests for the
    /// session's clients are sent before the provider answers the confirmation.
    pub async fn follow_logout(&self, end_session_url: &str) -> Result<Url, String> {
        let url = Url::parse(end_session_url)
            .map_err(|e| format!("bad end-session url {end_session_url}: {e}"))?;
        self.drive(url, None).await
    }

    /// Follows redirects and submits forms while on the provider's origin (that of
    /// `start`); returns the first URL off it, or the URL of a provider page with no form.
    pub async fn drive(
        &self,
        start: Url,
        credentials: Option<(&str, &str)>,
    ) -> Result<Url, String> {
        let origin = start.origin();
        let mut hop = Hop::Get(start);
        let mut logins = 0;
        for _ in 0..MAX_HOPS {
            let (url, resp) = match hop {
                Hop::Get(url) => {
                    let resp = self.http.get(url.clone()).send().await;
                    (url, resp)
                }
                Hop::Post(url, fields) => {
                    let resp = self.http.post(url.clone()).form(&fields).send().await;
                    (url, resp)
                }
            };
            let resp = resp.map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{url}: {status} without Location"))?;
                let next = url
                    .join(location)
                    .map_err(|e| format!("{url}: bad Location {location}: {e}"))?;
                if next.origin() != origin {
                    return Ok(next);
                }
                hop = Hop::Get(next);
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            if status.as_u16() == 401 && logins > 0 {
                return Err(format!(
                    "login rejected: {status} at {url}: {}",
                    strip_tags(&body)
                ));
            }
            if !status.is_success() {
                return Err(format!("{url}: {status}: {}", strip_tags(&body)));
            }
            let Some(form) = parse_forms(&body).into_iter().next() else {
                return Ok(url);
            };
            let action = url
                .join(if form.action.is_empty() {
                    url.as_str()
                } else {
                    &form.action
                })
                .map_err(|e| format!("{url}: bad form action {}: {e}", form.action))?;
            if action.origin() != origin {
                return Err(format!(
                    "{url}: a form posts off the provider to {action} (form_post response \
                     mode is not supported by this driver)"
                ));
            }
            let mut fields = form.hidden;
            if form.inputs.iter().any(|n| n == "password") {
                let Some((user, password)) = credentials else {
                    return Err(format!("{url}: the provider asks for a login"));
                };
                logins += 1;
                if logins > 1 {
                    return Err(format!("login rejected: the login form came back at {url}"));
                }
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), password.into()));
            }
            hop = if form.method.eq_ignore_ascii_case("post") {
                Hop::Post(action, fields)
            } else {
                let mut action = action;
                action.query_pairs_mut().extend_pairs(fields);
                Hop::Get(action)
            };
        }
        Err(format!("more than {MAX_HOPS} hops through the provider"))
    }
}

fn query_param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `(name, value)` of each `Set-Cookie`, later ones replacing earlier ones of that name.
pub fn set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in headers.get_all(reqwest::header::SET_COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        let pair = h.split(';').next().unwrap_or("");
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let name = name.trim().to_owned();
        out.retain(|(n, _)| *n != name);
        out.push((name, value.trim().to_owned()));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Just enough HTML

#[derive(Debug)]
struct Form {
    action: String,
    method: String,
    /// `(name, value)` of hidden inputs.
    hidden: Vec<(String, String)>,
    /// Names of the other inputs.
    inputs: Vec<String>,
}

fn parse_forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find("<form").map(|i| i + pos) {
        let Some(tag_end) = lower[start..].find('>').map(|i| i + start) else {
            break;
        };
        let attrs = parse_attrs(&html[start + 5..tag_end]);
        let end = lower[tag_end..]
            .find("</form")
            .map_or(html.len(), |i| i + tag_end);
        let mut form = Form {
            action: attr(&attrs, "action").unwrap_or_default(),
            method: attr(&attrs, "method").unwrap_or_else(|| "get".into()),
            hidden: Vec::new(),
            inputs: Vec::new(),
        };
        let mut p = tag_end;
        while let Some(i) = lower[p..end].find("<input").map(|i| i + p) {
            let Some(e) = lower[i..end].find('>').map(|e| e + i) else {
                break;
            };
            let attrs = parse_attrs(&html[i + 6..e]);
            if let Some(name) = attr(&attrs, "name") {
                let kind = attr(&attrs, "type").unwrap_or_else(|| "text".into());
                if kind.eq_ignore_ascii_case("hidden") {
                    form.hidden
                        .push((name, attr(&attrs, "value").unwrap_or_default()));
                } else {
                    form.inputs.push(name);
                }
            }
            p = e;
        }
        forms.push(form);
        pos = end;
    }
    forms
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = s[start..i].to_owned();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = s[vs..].find(q as char).map_or(s.len(), |e| e + vs);
                i = (ve + 1).min(b.len());
                &s[vs..ve]
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                &s[vs..i]
            };
            out.push((name, decode_entities(value)));
        } else {
            out.push((name, String::new()));
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of an HTML page, roughly (for error messages).
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
