//! The integration-test harness: real processes on loopback, one set per test.
//!
//! * [`RedisProcess`] — a real `redis-server` on a free port (`stop`/`restart` on the same port).
//! * [`echo::EchoServer`] — the upstream, answering with a JSON picture of the request.
//! * [`Gateway`] — the real `bffgate` binary, started on a config written from a template
//!   with `{LISTEN}`, `{METRICS}` and `{DIR}` placeholders.
//! * [`GatewayConfig`] / [`route`] — build such templates without repeating the boilerplate.
//! * [`check_config`] / [`check_file`] — `bffgate --check --config FILE`.
//! * [`client`], [`expect_error`], [`Echoed`] — talking to the gateway and reading answers.
//!
//! And in the submodules: [`process::ChildGuard`] (every child process a test starts),
//! Redis standalone / Cluster / Sentinel, the OpenID provider and its login driver, the
//! library's session API ([`sessions`]), streaming upstreams, a test PKI, metrics scraping
//! and bounded HTTP load.

pub mod admin;
pub mod agent;
pub mod cluster;
pub mod dns;
pub mod dpop_upstream;
pub mod echo;
pub mod load;
pub mod npm;
pub mod otlp;
pub mod pki;
pub mod process;
pub mod provider;
pub mod redis;
pub mod redis_tls;
pub mod scrape;
pub mod sentinel;
pub mod sessions;
pub mod streams;
pub mod watch;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde::Deserialize;

pub use echo::EchoServer;
use process::ChildGuard;
pub use redis::RedisProcess;

/// The gateway binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_bffgate");

/// How long the gateway may take to answer `/healthz` after spawn.
const GATEWAY_READY: Duration = Duration::from_secs(10);

/// Environment variables the gateway reads that must not leak in from the caller's shell.
pub const SCRUBBED_ENV: &[&str] = &[
    "BFFGATE_LISTEN",
    "BFFGATE_CONFIG",
    "BFFGATE_COOKIE_KEY",
    "BFFGATE_SESSION_KEY",
    "BFFGATE_LOG",
    "BFFGATE_LOG_JSON",
    "BFFGATE_ADMIN_TOKEN",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A loopback port that was free a moment ago (bind `127.0.0.1:0`, read it, drop the socket).
/// Callers retry on "address in use" since another test may grab it in between.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A `127.0.0.1` port where nothing listens (bound once, then released).
pub fn closed_port() -> u16 {
    free_port()
}

/// A loopback port that refuses connections for as long as the returned socket lives: it
/// is bound (so no other test process can take it) but never listens.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("local addr").port();
    (socket, port)
}

// ---------------------------------------------------------------------------------------
// Keys

/// A deterministic 32-byte secret, base64 (standard alphabet, padded), distinct per `seed`.
pub fn secret(seed: u8) -> String {
    let bytes: Vec<u8> = (0u8..32)
        .map(|i| seed.wrapping_mul(37).wrapping_add(i.wrapping_mul(11)) ^ 0x5a)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A random 32-byte secret, base64.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("OS randomness");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The at-rest key every test config uses (the test process and the gateway must agree).
pub fn at_rest_key() -> String {
    secret(200)
}

// ---------------------------------------------------------------------------------------
// The clock

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    since_epoch().as_secs()
}

/// Seconds since the Unix epoch, fractional.
pub fn now_f64() -> f64 {
    since_epoch().as_secs_f64()
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
}

// ---------------------------------------------------------------------------------------
// Config templates

/// The allowed SPA origin in test configs.
pub const APP_ORIGIN: &str = "http://app.test";
/// The CSRF header in test configs.
pub const CSRF_HEADER: &str = "x-bffgate-csrf";
/// The session cookie name in test configs.
pub const COOKIE: &str = "bff_session";

/// A gateway config template; [`GatewayConfig::yaml`] renders it with the `{LISTEN}`,
/// `{METRICS}` and `{DIR}` placeholders that [`Gateway::start`] fills in.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The cookie key ring, `(id, base64 secret)`; the first seals.
    pub keys: Vec<(String, String)>,
    /// A Redis URL, or `None` for the in-memory store (no `session.store` key at all).
    pub redis: Option<String>,
    /// `session.store.redis.timeout`.
    pub store_timeout: String,
    /// `agent.allowed_origins`.
    pub allowed_origins: Vec<String>,
    /// Route entries, each a YAML flow mapping (see [`route`]).
    pub routes: Vec<String>,
    /// `session.at_rest_keys`, `(id, base64 secret)`; `None` for the one `at_rest_key`
    /// ([`at_rest_key`]).
    pub at_rest_keys: Option<Vec<(String, String)>>,
    /// `session.key_census_interval`, when set.
    pub key_census_interval: Option<String>,
    /// `session.store.redis.cache.window`, when set (the default otherwise).
    pub cache_window: Option<String>,
}

impl GatewayConfig {
    /// Ring `[k1]`, no Redis, origin `http://app.test`, the given routes.
    pub fn new(routes: Vec<String>) -> GatewayConfig {
        GatewayConfig {
            keys: vec![key("k1")],
            redis: None,
            store_timeout: "500ms".into(),
            allowed_origins: vec![APP_ORIGIN.into()],
            routes,
            at_rest_keys: None,
            key_census_interval: None,
            cache_window: None,
        }
    }

    /// Keep sessions read from Redis in the cache this long (`session.store.redis.cache`).
    pub fn cache_window(mut self, window: &str) -> GatewayConfig {
        self.cache_window = Some(window.into());
        self
    }

    /// Use this Redis for sessions.
    pub fn redis(mut self, url: String) -> GatewayConfig {
        self.redis = Some(url);
        self
    }

    /// Replace the key ring.
    pub fn keys(mut self, ids: &[&str]) -> GatewayConfig {
        self.keys = ids.iter().map(|id| key(id)).collect();
        self
    }

    /// Use this at-rest key ring, `(id, base64 secret)`, instead of the one `at_rest_key`.
    pub fn at_rest_ring(mut self, ring: Vec<(String, String)>) -> GatewayConfig {
        self.at_rest_keys = Some(ring);
        self
    }

    /// Count the store by at-rest key every `interval` (`session.key_census_interval`).
    pub fn key_census(mut self, interval: &str) -> GatewayConfig {
        self.key_census_interval = Some(interval.into());
        self
    }

    /// The YAML template.
    pub fn yaml(&self) -> String {
        let keys: String = self
            .keys
            .iter()
            .map(|(id, secret)| format!("    - {{ id: {id}, secret: \"{secret}\" }}\n"))
            .collect();
        let store = match &self.redis {
            Some(url) => format!(
                "  store:\n    redis:\n      url: {url}\n      key_prefix: \"bfftest:\"\n      timeout: {}\n{}",
                self.store_timeout,
                self.cache_window
                    .as_ref()
                    .map(|w| format!("      cache: {{ window: {w} }}\n"))
                    .unwrap_or_default()
            ),
            None => String::new(),
        };
        let at_rest = match &self.at_rest_keys {
            None => format!("  at_rest_key: \"{}\"\n", at_rest_key()),
            Some(ring) => {
                let keys: String = ring
                    .iter()
                    .map(|(id, secret)| format!("    - {{ id: {id}, secret: \"{secret}\" }}\n"))
                    .collect();
                format!("  at_rest_keys:\n{keys}")
            }
        };
        let census = self
            .key_census_interval
            .as_ref()
            .map(|c| format!("  key_census_interval: {c}\n"))
            .unwrap_or_default();
        let origins = self.allowed_origins.join(", ");
        let routes: String = self.routes.iter().map(|r| format!("  - {r}\n")).collect();
        format!(
            "listen:\n  - addr: \"{{LISTEN}}\"\n\
             metrics:\n  addr: \"{{METRICS}}\"\n\
             server:\n  threads: 1\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n  \
             pid_file: \"{{DIR}}/bffgate.pid\"\n  upgrade_sock: \"{{DIR}}/upgrade.sock\"\n\
             agent:\n  base_path: /bff\n  allowed_origins: [{origins}]\n  csrf_header: {CSRF_HEADER}\n\
             cookie:\n  name: {COOKIE}\n  path: /\n  same_site: strict\n  secure: false\n  keys:\n{keys}\
             session:\n{store}{at_rest}{census}  idle_timeout: 30m\n  absolute_timeout: 12h\n\
             access_log: false\n\
             routes:\n{routes}"
        )
    }
}

/// The fixed test key named `id` (`k1`, `k2`, ...): `(id, secret)`.
pub fn key(id: &str) -> (String, String) {
    let seed = id
        .bytes()
        .fold(7u8, |acc, b| acc.wrapping_mul(31).wrapping_add(b));
    (id.to_owned(), secret(seed))
}

/// One route as a YAML flow mapping: `extra` is more `key: value` pairs (or empty),
/// e.g. `"strip_prefix: /api, timeouts: { read: 1s }"`.
pub fn route(name: &str, path_prefix: &str, upstream: &str, auth: &str, extra: &str) -> String {
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!(", {extra}")
    };
    format!(
        "{{ name: {name}, match: {{ path_prefix: \"{path_prefix}\" }}, upstreams: [\"{upstream}\"], auth: {auth}{extra} }}"
    )
}

/// Fills the placeholders of a template.
fn render(template: &str, listen: SocketAddr, metrics: SocketAddr, dir: &Path) -> String {
    template
        .replace("{LISTEN}", &listen.to_string())
        .replace("{METRICS}", &metrics.to_string())
        .replace("{DIR}", &dir.display().to_string())
}

/// Writes `template` (placeholders filled with unused ports) to `dir/name` and returns the
/// path: for loading a config in-process or for `--check`.
pub fn write_config(dir: &Path, name: &str, template: &str) -> PathBuf {
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let path = dir.join(name);
    std::fs::write(&path, render(template, listen, metrics, dir)).expect("write config");
    path
}

// ---------------------------------------------------------------------------------------
// The gateway process

/// How long a gateway gets after SIGTERM before SIGKILL when stopped.
const GATEWAY_STOP_GRACE: Duration = Duration::from_secs(3);

/// `bffgate` with none of the caller's `BFFGATE_*` or proxy variables.
pub fn bffgate_command() -> Command {
    let mut cmd = Command::new(BIN);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// The real `bffgate` binary, running on a config from a template; stopped on drop.
pub struct Gateway {
    /// First, so the process is stopped before its directory goes.
    process: ChildGuard,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    metrics_addr: SocketAddr,
    config_path: PathBuf,
}

impl Gateway {
    /// Writes the config (placeholders filled with free ports) to a tempdir, spawns
    /// `bffgate --config FILE` with `BFFGATE_LOG=info`, and waits for `/healthz` to answer
    /// 200. Retries with other ports if they were taken meanwhile.
    ///
    /// # Panics
    /// If the gateway is not healthy within 10 s, with its log.
    pub async fn start(template: &str) -> Gateway {
        Self::start_logging(template, "info").await
    }

    /// As [`Gateway::start`], with `BFFGATE_LOG` set to `filter` (e.g. to see Pingora's own
    /// lifecycle lines, which are below the default's reach).
    pub async fn start_logging(template: &str, filter: &str) -> Gateway {
        Self::start_inner(template, filter, false).await
    }

    /// As [`Gateway::start`], logging JSON lines (`BFFGATE_LOG_JSON=true`).
    pub async fn start_json(template: &str) -> Gateway {
        Self::start_inner(template, "info", true).await
    }

    async fn start_inner(template: &str, filter: &str, json: bool) -> Gateway {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::tempdir().expect("gateway tempdir");
            let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
            let config_path = dir.path().join("bff.yaml");
            std::fs::write(
                &config_path,
                render(template, addr, metrics_addr, dir.path()),
            )
            .expect("write gateway config");
            let mut cmd = bffgate_command();
            cmd.arg("--config")
                .arg(&config_path)
                .env("BFFGATE_LOG", filter)
                .env("BFFGATE_LOG_JSON", if json { "true" } else { "false" })
                .current_dir(dir.path());
            let process = ChildGuard::spawn("bffgate", &mut cmd, &dir.path().join("gateway.log"))
                .expect("spawn bffgate")
                .with_grace(GATEWAY_STOP_GRACE);
            let mut gateway = Gateway {
                process,
                dir,
                addr,
                metrics_addr,
                config_path,
            };
            match gateway.wait_healthy().await {
                Ok(()) => return gateway,
                Err(exited) => {
                    last_log = gateway.log();
                    let port_taken = last_log.contains("in use") || last_log.contains("AddrInUse");
                    if !(exited && port_taken) {
                        break;
                    }
                }
            }
        }
        panic!("bffgate did not become healthy; its log:\n{last_log}");
    }

    /// Polls `/healthz`; `Err(true)` if the process exited, `Err(false)` on deadline.
    async fn wait_healthy(&mut self) -> Result<(), bool> {
        let client = client();
        let deadline = Instant::now() + GATEWAY_READY;
        let url = self.url("/healthz");
        loop {
            if self.process.exit_status().is_some() {
                return Err(true);
            }
            if let Ok(resp) = client
                .get(&url)
                .timeout(Duration::from_millis(500))
                .send()
                .await
            {
                if resp.status() == 200 {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most `limit`) for `/readyz` to answer 200.
    ///
    /// # Panics
    /// If it does not, with the gateway's log.
    pub async fn wait_ready(&self, limit: Duration) {
        let http = client();
        let url = self.url("/readyz");
        let ready = eventually(limit, || {
            let req = http.get(&url).send();
            async move { matches!(req.await, Ok(r) if r.status() == 200) }
        })
        .await;
        assert!(
            ready,
            "/readyz never became 200; gateway log:\n{}",
            self.log()
        );
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url() + path`; `path` is used as written (percent-encoding kept).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url(), path)
    }

    /// The proxy listener.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:METRICS_PORT/metrics`.
    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.metrics_addr)
    }

    /// Replaces the config file with `template`, rendered with this gateway's ports and
    /// folder, the way Kubernetes does (a temp file renamed into place): the gateway
    /// reloads it by itself.
    pub fn rewrite_config(&self, template: &str) {
        let tmp = self.config_path.with_extension("yaml.tmp");
        let text = render(template, self.addr, self.metrics_addr, self.dir.path());
        std::fs::write(&tmp, text).expect("write temp config");
        std::fs::rename(&tmp, &self.config_path).expect("rename config into place");
    }

    /// The rendered config file the gateway runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The gateway's stdout and stderr so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The tempdir holding the config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    /// Sends `sig` (e.g. `SIGHUP`, `SIGQUIT`) to the gateway process.
    ///
    /// # Panics
    /// If the process is gone or the signal cannot be sent.
    pub fn signal(&mut self, sig: libc::c_int) {
        self.process
            .signal(sig)
            .unwrap_or_else(|e| panic!("signal {sig} to bffgate: {e}"));
    }
}

// ---------------------------------------------------------------------------------------
// --check

/// Writes `yaml` to a tempfile and runs `bffgate --check --config FILE` with `env` set.
/// Returns the exit status and stdout+stderr.
pub fn check_config(yaml: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bff.yaml");
    std::fs::write(&path, yaml).expect("write config");
    check_file(&path, env)
}

/// Runs `bffgate --check --config PATH` with `env` set (and no inherited `BFFGATE_*`).
/// Returns the exit status and stdout+stderr.
///
/// # Panics
/// If the check does not finish within 20 s.
pub fn check_file(path: &Path, env: &[(&str, &str)]) -> (ExitStatus, String) {
    check_file_with(path, env, &[])
}

/// As [`check_file`], with more flags after `--check` (e.g. `--no-resolve`).
///
/// # Panics
/// If the check does not finish within 20 s.
pub fn check_file_with(path: &Path, env: &[(&str, &str)], flags: &[&str]) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = bffgate_command();
    cmd.envs(env.iter().copied())
        .arg("--check")
        .args(flags)
        .arg("--config")
        .arg(path)
        .current_dir(dir.path());
    match process::run_bounded("bffgate --check", &mut cmd, Duration::from_secs(20))
        .expect("spawn bffgate --check")
    {
        (Some(status), output) => (status, output),
        (None, output) => panic!("bffgate --check did not exit within 20 s; output:\n{output}"),
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// A client for the gateway: no redirects followed, no cookie store (tests set `Cookie`
/// by hand), no proxy, 20 s overall timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// As [`client`], but every request opens a new connection (no idle pool).
pub fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// `bff_session=VALUE`.
pub fn session_cookie(value: &str) -> String {
    format!("{COOKIE}={value}")
}

/// What the echo upstream saw.
#[derive(Debug, Deserialize)]
pub struct Echoed {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub body: String,
}

impl Echoed {
    /// All values of a header (lower-case name).
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.headers.get(name).cloned().unwrap_or_default()
    }

    /// The only value of a header; panics if it came more than once.
    pub fn header(&self, name: &str) -> Option<String> {
        let values = self.header_all(name);
        assert!(
            values.len() <= 1,
            "header {name} sent {} times: {values:?}",
            values.len()
        );
        values.into_iter().next()
    }

    /// `(name, value)` pairs of every cookie the upstream received, in order, across all
    /// `Cookie` headers.
    pub fn cookies(&self) -> Vec<(String, String)> {
        self.header_all("cookie")
            .iter()
            .flat_map(|h| {
                h.split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .map(|c| match c.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => (c, String::new()),
            })
            .collect()
    }
}

/// `GET url`'s JSON body (whatever the status).
pub async fn get_json(url: &str) -> serde_json::Value {
    client()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}

/// `GET path` on `gw` with the session cookie `cookie`: what the echo upstream saw.
pub async fn echo_get(gw: &Gateway, path: &str, cookie: &str) -> Echoed {
    expect_echo(
        client()
            .get(gw.url(path))
            .header("cookie", session_cookie(cookie))
            .send()
            .await
            .expect("request through the gateway"),
    )
    .await
}

/// A whole login of alice at `gw` through `provider`'s form, with a fresh provider browser
/// (so a new provider session): the session cookie's value. Panics with both logs unless
/// the callback answers 302 with the cookie.
pub async fn login_alice(gw: &Gateway, provider: &provider::Provider) -> String {
    let http = client();
    let resp = provider::OpBrowser::new()
        .login(
            &http,
            &gw.url("/bff/login?return_to=/"),
            provider::USER,
            provider::PASSWORD,
        )
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}\n{}", gw.log(), provider.log()));
    assert_eq!(resp.status(), 302, "{}\n{}", gw.log(), provider.log());
    let set = agent::set_cookie_for(resp.headers(), COOKIE).expect("the session cookie");
    agent::cookie_value(&set)
}

/// `GET /bff/session` at `gw` with this session cookie: the JSON.
pub async fn session_json(gw: &Gateway, cookie: &str) -> serde_json::Value {
    client()
        .get(gw.url("/bff/session"))
        .header("cookie", session_cookie(cookie))
        .send()
        .await
        .expect("request to bffgate")
        .json()
        .await
        .expect("session JSON")
}

/// Alice's login at `gw` through `provider`'s form with a fresh provider browser, up to the
/// callback (not sent yet: what the browser would send bffgate next, through `http`).
pub async fn login_alice_until_callback(
    gw: &Gateway,
    provider: &provider::Provider,
    http: &reqwest::Client,
) -> provider::PendingCallback {
    provider::OpBrowser::new()
        .login_until_callback(
            http,
            &gw.url("/bff/login?return_to=/after"),
            provider::USER,
            provider::PASSWORD,
        )
        .await
        .unwrap_or_else(|e| panic!("login: {e}\n{}\n{}", gw.log(), provider.log()))
}

/// Asserts a response came from the echo upstream (200, JSON) and returns what it saw.
pub async fn expect_echo(resp: reqwest::Response) -> Echoed {
    let status = resp.status();
    let text = resp.text().await.expect("response body");
    assert_eq!(
        status, 200,
        "expected the upstream's 200, got {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not an echo body ({e}): {text}"))
}

/// A response's `Content-Type` ("" when there is none).
pub fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Asserts an error response: `status`, a JSON body `{"code": code, "message": <non-empty>}`.
/// Returns the body.
pub async fn expect_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let got = resp.status();
    let content_type = content_type(&resp);
    let text = resp.text().await.expect("response body");
    assert_eq!(
        got.as_u16(),
        status,
        "expected {status} {code}, got {got}: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text:?}"));
    assert_eq!(body["code"], code, "wrong error code in {text}");
    let message = body["message"].as_str().unwrap_or("");
    assert!(!message.is_empty(), "error without a message: {text}");
    assert!(
        content_type.starts_with("application/json"),
        "error content-type is {content_type:?}, not JSON"
    );
    body
}

/// A raw HTTP/1.1 request with `Connection: close`, for request targets a URL library
/// would normalise (e.g. dot segments). Returns the status and the body text.
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}");
    for (k, v) in headers {
        head.push_str(&format!("\r\n{k}: {v}"));
    }
    send_raw(addr, &head)
}

/// Sends `head` (request line and headers, without the blank line) as written, with
/// `Connection: close`, and reads the whole answer: its status and body text.
pub fn send_raw(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let req = format!("{head}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?} for {head:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A query parameter of a URL.
pub fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns whether
/// it succeeded.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The session cache's default window (`session.store.redis.cache.window`): an ending made
/// on another instance, or by the test through the library, is refused by a gateway for
/// every request sent later than this after it.
pub const CACHE_WINDOW: Duration = Duration::from_millis(100);

/// Asks `status` (every 2 ms) until it answers `want`; `since` is when the ending was
/// made. An other answer to a request sent more than [`CACHE_WINDOW`] after `since` fails
/// the test with `what`.
pub async fn answers_within_window<F, Fut>(since: Instant, want: u16, what: &str, mut status: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    loop {
        let sent = since.elapsed();
        let got = status().await;
        if got == want {
            return;
        }
        assert!(
            sent < CACHE_WINDOW,
            "{what}: answered {got}, not {want}, to a request sent {sent:?} after the change"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Asserts a `429 rate_limited` whose `Retry-After` is whole seconds in `1..=max`.
pub async fn expect_limited(resp: reqwest::Response, max: u64) {
    let retry: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After of whole seconds");
    assert!((1..=max).contains(&retry), "Retry-After {retry}");
    expect_error(resp, 429, "rate_limited").await;
}
