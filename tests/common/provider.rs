//! A real OpenID provider for end-to-end tests: `tests/provider/provider.mjs`
//! (the npm package `oidc-provider`) run by `node`, owned by one test.
//!
//! * [`Provider`] — start / stop / restart (same port, same keys, same state), stats,
//!   introspection and the other endpoints, with the confidential client's credentials.
//! * [`ProviderSettings`] — what the provider is started with (client, lifetimes, rotation).
//! * [`OpBrowser`] (in `provider/driver.rs`) — a user agent for the provider's pages (its
//!   own cookie jar), and the login driver: [`OpBrowser::login_until_callback`] runs
//!   bffgate's `/bff/login` through the provider's login form up to bffgate's callback
//!   URL, `PendingCallback::send` calls it. [`login`] does both at once.
//! * [`pkce_pair`] — an S256 PKCE verifier and challenge for tests that speak OAuth by hand.
//!
//! The provider's npm dependencies are installed on first use (`npm ci` in
//! `tests/provider`, serialised across test processes by a file lock) unless
//! `BFFGATE_PROVIDER_NO_INSTALL` is set. `BFFGATE_NODE` names another `node` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use url::Url;

use super::npm;
use super::process::ChildGuard;

mod driver;

pub use driver::{login, set_cookies, OpBrowser, PendingCallback};

/// How long the provider may take to print `READY` after spawn.
/// Generous: loading oidc-provider and making an RSA key takes seconds when the suite
/// keeps both cores busy. A bound on "it started", not a performance check.
const READY_DEADLINE: Duration = Duration::from_secs(20);
/// How long `stop` waits after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    /// Offer pushed authorization requests (RFC 9126; discovery then names a
    /// `pushed_authorization_request_endpoint`). Default false.
    pub pushed_authorization_requests: bool,
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
            pushed_authorization_requests: false,
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
            "pushed_authorization_requests": self.pushed_authorization_requests,
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
    /// First, so the process is stopped before its state directory goes. Its stdin is a
    /// pipe the guard holds, so the provider sees EOF (and exits) if this process dies
    /// without dropping us.
    process: Option<ChildGuard>,
    base_url: String,
    /// Keys (`keys.json`), the log (`provider.log`, across restarts) and, between a stop
    /// and a restart, the store (`store.json`).
    state_dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Provider {
    /// Starts the provider and waits (20 s) for its `READY` line; panics with its output
    /// if it does not come.
    pub async fn start(settings: ProviderSettings) -> Provider {
        ensure_installed().unwrap_or_else(|e| panic!("{e}"));
        let mut provider = Provider {
            settings,
            process: None,
            base_url: String::new(),
            state_dir: tempfile::tempdir().expect("provider tempdir"),
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
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// SIGKILL: a crash. Its state is lost (a later [`Provider::restart`] keeps the keys,
    /// the port and the client, but no session, grant or token).
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        let _ = std::fs::remove_file(self.state_dir.path().join("store.json"));
    }

    fn log_path(&self) -> PathBuf {
        self.state_dir.path().join("provider.log")
    }

    /// Everything in the log from byte `from` on.
    fn log_since(&self, from: usize) -> String {
        let bytes = std::fs::read(self.log_path()).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(from..).unwrap_or_default()).into_owned()
    }

    async fn spawn(&mut self) -> Result<(), String> {
        let config = self.settings.to_json(self.state_dir.path()).to_string();
        let node = std::env::var("BFFGATE_NODE").unwrap_or_else(|_| "node".into());
        let mut cmd = Command::new(&node);
        cmd.arg("--report-on-signal")
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
            .env_remove("DEBUG");
        // Its one stdout line is `READY <base url>`; everything else goes to stderr. Both
        // land in the log, which is read from where this run started.
        let run_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len() as usize);
        let mut process =
            ChildGuard::spawn_holding_stdin("the OpenID provider", &mut cmd, &self.log_path())
                .map_err(|e| format!("spawn {node}: {e} (is Node.js >= 20.19 installed?)"))?
                .with_grace(STOP_GRACE);

        let deadline = Instant::now() + READY_DEADLINE;
        let failure = loop {
            let output = self.log_since(run_start);
            let ready = output
                .split_inclusive('\n')
                .filter(|line| line.ends_with('\n'))
                .find_map(|line| line.strip_prefix("READY "));
            if let Some(url) = ready {
                self.base_url = url.trim().to_owned();
                let port = Url::parse(&self.base_url)
                    .ok()
                    .and_then(|u| u.port())
                    .ok_or_else(|| format!("bad READY url {}", self.base_url))?;
                self.settings.port = port;
                self.process = Some(process);
                return Ok(());
            }
            if let Some(status) = process.exit_status() {
                break format!("exited before READY ({status})");
            }
            if Instant::now() > deadline {
                self.print_node_report(&mut process);
                break format!("no READY line within {READY_DEADLINE:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        process.kill();
        let output = self.log_since(run_start);
        eprintln!("---- provider output ----\n{output}---- end of provider output ----");
        Err(format!("{failure}; output:\n{output}"))
    }

    /// Asks a hung Node process for its diagnostic report (SIGUSR2 with `--report-on-signal`)
    /// and prints where its JavaScript is, so a hang can be told from slowness.
    fn print_node_report(&self, process: &mut ChildGuard) {
        if process.signal(libc::SIGUSR2).is_err() {
            return;
        }
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
        self.process.as_mut().is_some_and(ChildGuard::is_running)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(ChildGuard::pid)
    }

    /// Everything the provider wrote so far (its stderr, and its `READY` lines), across
    /// restarts.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path())
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
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

    /// Makes the token endpoint answer every request with `fault` (`{"status", "error",
    /// "delay_ms"}`) instead of serving it; `Value::Null` ends the fault.
    pub async fn set_token_fault(&self, fault: Value) {
        let answer = self.post_json("/__faults", json!({ "token": fault })).await;
        assert_eq!(answer["token"], fault, "{answer}");
    }

    /// Replaces the provider's signing key (a new `kid`, the old key gone) and restarts it
    /// with its state (sessions, grants, tokens) kept. Returns the new key id.
    pub async fn rotate_keys(&mut self) -> String {
        let answer = self.post_json("/__rotate_keys", json!({})).await;
        let kid = answer["kid"].as_str().expect("new kid").to_owned();
        self.restart().await;
        kid
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

/// Installs `tests/provider`'s npm dependencies (`npm ci`) unless the pinned
/// `oidc-provider` is already there. Serialised across processes by `flock`.
pub fn ensure_installed() -> Result<(), String> {
    let dir = provider_dir();
    if !npm::installed(&dir, "oidc-provider")
        && std::env::var_os("BFFGATE_PROVIDER_NO_INSTALL").is_some()
    {
        return Err(format!(
            "the OpenID provider's npm packages are missing: run `npm ci --prefix {}`",
            dir.display()
        ));
    }
    npm::ensure_installed(&dir, "oidc-provider", &[])
}

/// A number in the provider's [`Provider::stats`] by path, 0 when absent.
pub fn stat(stats: &Value, path: &[&str]) -> u64 {
    let mut v = stats;
    for p in path {
        v = &v[*p];
    }
    v.as_u64().unwrap_or(0)
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
