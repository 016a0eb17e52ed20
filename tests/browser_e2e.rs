//! The real-browser end-to-end test: Debian's Chromium (headless, driven by
//! `tests/browser/e2e.mjs` with playwright-core) logs in through the demo SPA, bffgate and
//! the real OpenID provider, calls the example API, reloads, opens a second tab, logs out
//! through the provider's end-session page, and checks the session cookie's attributes and
//! that no token ever reaches the browser.
//!
//! Everything runs on loopback, each on an ephemeral port:
//!
//! * the OpenID provider (`tests/provider`, `common/provider.rs`), reached through a
//!   recording TCP relay that is its issuer (`http://127.0.0.1:RELAY`): the relay keeps the
//!   provider's answers, so the test knows the real access, refresh and ID tokens it issued
//!   (oidc-provider's access and refresh tokens are opaque: they cannot be recognised by
//!   shape) and can look for them in everything the browser saw;
//! * the example API (`examples/demo/api.mjs`, verifying the bearer token by introspection);
//! * the SPA server (`examples/demo/spa-server.mjs`) at `http://localhost:SPA`;
//! * bffgate at `http://localhost:BFF` with `cookie.secure: true` (Chromium accepts
//!   `Secure` cookies from `http://localhost`, a secure context) and route `/api` →
//!   the API, `auth: required`.
//!
//! The SPA and bffgate are same-site, different origins (like www/api.example.com).
//!
//! Needs `chromium` (`apt-get install -y chromium`; `scripts/test.sh` installs it) — the
//! test FAILS without it — and Node.js; `npm ci` in `tests/browser` and `tests/provider` is
//! run on first use. `E2E_CHROMIUM` names another browser binary. Screenshots and the
//! browser's records go to `target/browser-e2e/`.

mod common;
#[path = "common/provider.rs"]
mod provider;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provider::{Provider, ProviderSettings, PASSWORD, USER};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CLIENT_ID: &str = "bff-e2e";
/// The whole browser script bounds itself at 85 s; this is the backstop.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> String {
    std::env::var("BFFGATE_NODE").unwrap_or_else(|_| "node".into())
}

/// A command that dies with the test process (`PR_SET_PDEATHSIG`), so a killed test
/// leaves no server behind.
fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    // SAFETY: prctl(2) only, async-signal-safe, in the forked child before exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NODE_OPTIONS",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

// ---------------------------------------------------------------------------------------
// npm ci for tests/browser

/// Installs `tests/browser`'s npm packages unless the pinned playwright-core is there;
/// serialised across processes by `flock` (as `provider::ensure_installed`).
fn ensure_browser_packages() -> Result<(), String> {
    let dir = crate_dir().join("tests/browser");
    let installed = || -> bool {
        let read = |p: &Path| -> Option<Value> {
            serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
        };
        let wanted = read(&dir.join("package.json")).and_then(|v| {
            v["dependencies"]["playwright-core"]
                .as_str()
                .map(str::to_owned)
        });
        let have = read(&dir.join("node_modules/playwright-core/package.json"))
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        wanted.is_some() && wanted == have
    };
    if installed() {
        return Ok(());
    }
    let lock_path = std::env::temp_dir().join("bffgate-browser-npm-ci.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
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
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
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
// The recording relay in front of the provider

/// A TCP relay to the provider that keeps a copy of everything the provider answered.
struct Relay {
    port: u16,
    answers: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Binds now (so the port is known before the provider starts); relays once `start`ed.
    async fn bind() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind relay");
        let port = listener.local_addr().expect("relay addr").port();
        (listener, port)
    }

    fn start(listener: tokio::net::TcpListener, target: SocketAddr) -> Relay {
        let port = listener.local_addr().expect("relay addr").port();
        let answers = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&answers);
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let seen = Arc::clone(&seen);
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut in_read, mut in_write) = inbound.into_split();
                    let (mut out_read, mut out_write) = outbound.into_split();
                    let up = async move {
                        let _ = tokio::io::copy(&mut in_read, &mut out_write).await;
                        let _ = out_write.shutdown().await;
                    };
                    let down = async move {
                        let mut buf = vec![0u8; 16 * 1024];
                        loop {
                            match out_read.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => {
                                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                                    if in_write.write_all(&buf[..n]).await.is_err() {
                                        break;
                                    }
                                }
                            }
                        }
                        let _ = in_write.shutdown().await;
                    };
                    tokio::join!(up, down);
                });
            }
        });
        Relay {
            port,
            answers,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every value of `"field":"..."` in the provider's answers so far.
    fn json_strings(&self, field: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.answers.lock().unwrap()).into_owned();
        let needle = format!("\"{field}\":\"");
        let mut out: Vec<String> = Vec::new();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(&needle) {
            rest = &rest[i + needle.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            let value = rest[..end].to_owned();
            if !value.is_empty() && !out.contains(&value) {
                out.push(value);
            }
            rest = &rest[end..];
        }
        out
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ---------------------------------------------------------------------------------------
// Node servers and bffgate

/// A child process with its output in a file; killed (by pid) on drop.
struct Proc {
    name: &'static str,
    child: Child,
    log_path: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Proc {
        let log_path = dir.join(format!("{name}.log"));
        let log = File::create(&log_path).expect("log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        Proc {
            name,
            child,
            log_path,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `url` answers `want` (any status if `None`); Err(log) if the process
    /// exits or 15 s pass.
    async fn wait_http(&mut self, url: &str, want: Option<u16>) -> Result<(), String> {
        let http = common::client();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if self.exited() {
                return Err(format!("{} exited; its log:\n{}", self.name, self.log()));
            }
            let last = match http
                .get(url)
                .timeout(Duration::from_millis(800))
                .send()
                .await
            {
                Ok(r) if want.is_none_or(|w| r.status() == w) => return Ok(()),
                Ok(r) => format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready at {url} within 15 s (last: {last}); its log:\n{}",
                    self.name,
                    self.log()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a server on a fresh loopback port, retrying with another port if it was taken
/// in between (`make` builds the command for a port).
async fn start_on_free_port<F>(
    name: &'static str,
    dir: &Path,
    ready_path: &str,
    want: Option<u16>,
    mut make: F,
) -> (Proc, u16)
where
    F: FnMut(u16) -> Command,
{
    let mut last = String::new();
    for _ in 0..3 {
        let port = common::free_port();
        let mut proc = Proc::spawn(name, make(port), dir);
        match proc
            .wait_http(&format!("http://127.0.0.1:{port}{ready_path}"), want)
            .await
        {
            Ok(()) => return (proc, port),
            Err(e) => {
                last = e;
                if !(last.contains("EADDRINUSE") || last.contains("in use")) {
                    break;
                }
            }
        }
    }
    panic!("could not start {name}: {last}");
}

fn bffgate_config(
    dir: &Path,
    bff: u16,
    metrics: u16,
    spa: u16,
    api: u16,
    issuer: &str,
    secret: &str,
) -> String {
    format!(
        r#"listen:
  - addr: "127.0.0.1:{bff}"
metrics:
  addr: "127.0.0.1:{metrics}"
server:
  threads: 2
  grace_period_seconds: 0
  graceful_shutdown_timeout_seconds: 1
  pid_file: "{dir}/bffgate.pid"
  upgrade_sock: "{dir}/upgrade.sock"
oidc:
  issuer: "{issuer}"
  client_id: {CLIENT_ID}
  client_secret: "{secret}"
  redirect_uri: "http://localhost:{bff}/bff/callback"
  post_login_redirect: "http://localhost:{spa}/"
  post_logout_redirect: "http://localhost:{spa}/"
agent:
  base_path: /bff
  allowed_origins: ["http://localhost:{spa}"]
  csrf_header: x-bffgate-csrf
cookie:
  name: bff_session
  same_site: strict
  secure: true
  keys:
    - {{ id: e2e, secret: "{cookie_key}" }}
session:
  at_rest_key: "{at_rest}"
  idle_timeout: 30m
  absolute_timeout: 8h
access_log: true
routes:
  - name: api
    match: {{ path_prefix: /api }}
    upstreams: ["http://127.0.0.1:{api}"]
    auth: required
"#,
        dir = dir.display(),
        cookie_key = common::random_secret(),
        at_rest = common::random_secret(),
    )
}

// ---------------------------------------------------------------------------------------
// What the browser saw

/// Every string in the browser's records, with where it was: `(place, text)`.
fn browser_strings(records: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in records["requests"].as_array().into_iter().flatten() {
        out.push((
            format!("request URL {}", r["url"].as_str().unwrap_or("")),
            r["url"].as_str().unwrap_or("").to_owned(),
        ));
    }
    let responses = records["responses"].as_array().into_iter().flatten();
    let fetched = records["fetchBodies"].as_array().into_iter().flatten();
    for r in responses.chain(fetched) {
        let url = r["url"].as_str().unwrap_or("");
        out.push((format!("response URL {url}"), url.to_owned()));
        if let Some(loc) = r["location"].as_str() {
            out.push((format!("Location of {url}"), loc.to_owned()));
        }
        if let Some(body) = r["body"].as_str() {
            out.push((
                format!("body of {} {url}", r["method"].as_str().unwrap_or("")),
                body.to_owned(),
            ));
        }
    }
    for key in ["documentCookies", "storage", "cookies"] {
        for r in records[key].as_array().into_iter().flatten() {
            out.push((
                format!("{key} {}", r["url"].as_str().unwrap_or("")),
                r.to_string(),
            ));
        }
    }
    out
}

/// Where the browser saw a token: any access or refresh token anywhere; the ID token
/// anywhere but `POST /bff/logout`'s answer (its `logout_url`) and the provider's
/// end-session URL the browser then navigates to (`id_token_hint`).
fn token_leaks(
    seen: &[(String, String)],
    access: &[String],
    refresh: &[String],
    id: &[String],
    issuer: &str,
) -> Vec<String> {
    let end_session = format!("{issuer}/session/end");
    let mut leaks = Vec::new();
    for (place, text) in seen {
        for (kind, tokens) in [("access", access), ("refresh", refresh)] {
            if tokens.iter().any(|t| text.contains(t.as_str())) {
                leaks.push(format!("the {kind} token is in the {place}"));
            }
        }
        let id_allowed = place.ends_with("/bff/logout") || place.contains(&end_session);
        if !id_allowed && id.iter().any(|t| text.contains(t.as_str())) {
            leaks.push(format!("the ID token is in the {place}"));
        }
    }
    leaks
}

/// The leak check itself finds what it should (so a passing browser run means something).
#[test]
fn token_leak_check_finds_tokens() {
    let op = "http://127.0.0.1:9";
    let records = json!({
        "requests": [
            { "url": "http://localhost:1/" },
            { "url": format!("{op}/session/end?id_token_hint=ID.TOKEN.X") },
        ],
        "responses": [
            { "url": "http://localhost:2/bff/session", "method": "GET", "body": "{\"sub\":\"alice\"}" },
            { "url": "http://localhost:2/api/x", "method": "GET", "body": "{\"t\":\"REFRESH-1\"}" },
        ],
        "fetchBodies": [
            { "url": "http://localhost:2/bff/logout", "method": "POST", "body": "{\"logout_url\":\"..ID.TOKEN.X\"}" },
            { "url": "http://localhost:2/bff/session", "method": "GET", "body": "ID.TOKEN.X" },
        ],
        "documentCookies": [{ "url": "http://localhost:1/", "cookie": "a=ACCESS-1" }],
        "storage": [],
        "cookies": [],
    });
    let seen = browser_strings(&records);
    let leaks = token_leaks(
        &seen,
        &["ACCESS-1".into()],
        &["REFRESH-1".into()],
        &["ID.TOKEN.X".into()],
        op,
    );
    assert_eq!(leaks.len(), 3, "{leaks:#?}");
    assert!(leaks[0].contains("refresh token") && leaks[0].contains("/api/x"));
    assert!(
        leaks[1].contains("ID token") && leaks[1].contains("GET http://localhost:2/bff/session")
    );
    assert!(leaks[2].contains("access token") && leaks[2].contains("documentCookies"));
}

// ---------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_browser_login_api_reload_tabs_logout() {
    let chromium = std::env::var("E2E_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no browser at {chromium}: this test needs Debian's chromium \
         (`apt-get install -y chromium`; `bash scripts/test.sh` installs it) or E2E_CHROMIUM"
    );
    ensure_browser_packages().unwrap_or_else(|e| panic!("{e}"));
    let root = crate_dir();
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = common::random_secret();

    // The provider, behind the recording relay that is its issuer.
    let (relay_listener, relay_port) = Relay::bind().await;
    let issuer = format!("http://127.0.0.1:{relay_port}");
    let mut op = Provider::start(ProviderSettings {
        issuer_override: Some(issuer.clone()),
        client_id: CLIENT_ID.into(),
        client_secret: secret.clone(),
        access_token_ttl: 300,
        ..Default::default()
    })
    .await;
    let relay = Relay::start(
        relay_listener,
        SocketAddr::from(([127, 0, 0, 1], op.port())),
    );
    assert_eq!(relay.url(), issuer);

    // The example API and the SPA server.
    let (api, api_port) = start_on_free_port("api", dir.path(), "/", Some(401), |port| {
        let mut cmd = command(&node());
        cmd.arg(root.join("examples/demo/api.mjs"))
            .env("PORT", port.to_string())
            .env("ISSUER", &issuer)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", &secret);
        cmd
    })
    .await;

    // bffgate's port must be known before the SPA server (BFFGATE_URL) and the provider's
    // client registration; a port taken meanwhile makes bffgate exit and we try another.
    let mut attempt = 0;
    let (mut gw, bff_port, spa, spa_port) = loop {
        attempt += 1;
        let bff_port = common::free_port();
        let metrics_port = common::free_port();
        let bff_url = format!("http://localhost:{bff_port}");
        let (spa, spa_port) =
            start_on_free_port("spa", dir.path(), "/config.js", Some(200), |port| {
                let mut cmd = command(&node());
                cmd.arg(root.join("examples/demo/spa-server.mjs"))
                    .env("PORT", port.to_string())
                    .env("BFFGATE_URL", &bff_url);
                cmd
            })
            .await;
        let spa_url = format!("http://localhost:{spa_port}/");
        op.update_client(json!({
            "redirect_uris": [format!("{bff_url}/bff/callback")],
            "post_logout_redirect_uris": [spa_url],
            "backchannel_logout_uri": format!("{bff_url}/bff/backchannel-logout"),
        }))
        .await;
        let config = dir.path().join("bff.yaml");
        std::fs::write(
            &config,
            bffgate_config(
                dir.path(),
                bff_port,
                metrics_port,
                spa_port,
                api_port,
                &issuer,
                &secret,
            ),
        )
        .expect("write config");
        let mut cmd = command(common::BIN);
        for var in [
            "BFFGATE_LISTEN",
            "BFFGATE_CONFIG",
            "BFFGATE_COOKIE_KEY",
            "BFFGATE_SESSION_KEY",
            "BFFGATE_LOG_JSON",
        ] {
            cmd.env_remove(var);
        }
        cmd.arg("--config")
            .arg(&config)
            .env("BFFGATE_LOG", "info")
            .current_dir(dir.path());
        let mut gw = Proc::spawn("bffgate", cmd, dir.path());
        match gw
            .wait_http(&format!("http://127.0.0.1:{bff_port}/readyz"), Some(200))
            .await
        {
            Ok(()) => break (gw, bff_port, spa, spa_port),
            Err(e) if attempt < 3 && (e.contains("in use") || e.contains("AddrInUse")) => {
                drop(spa);
                continue;
            }
            Err(e) => panic!("bffgate did not become ready: {e}"),
        }
    };

    // The browser.
    let out_dir = root.join("target/browser-e2e");
    let _ = std::fs::remove_dir_all(&out_dir);
    std::fs::create_dir_all(&out_dir).expect("create target/browser-e2e");
    let mut script = command(&node());
    script
        .arg(root.join("tests/browser/e2e.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("E2E_SPA_URL", format!("http://localhost:{spa_port}"))
        .env("E2E_BFF_URL", format!("http://localhost:{bff_port}"))
        .env("E2E_OP_URL", &issuer)
        .env("E2E_OUT_DIR", &out_dir)
        .env("E2E_CHROMIUM", &chromium)
        .env("E2E_USER", USER)
        .env("E2E_PASSWORD", PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = script.spawn().expect("spawn node tests/browser/e2e.mjs");
    let output = Arc::new(Mutex::new(String::new()));
    let mut readers = Vec::new();
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let output = Arc::clone(&output);
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                // Shown live with --nocapture, and in the failure report either way.
                println!("e2e| {line}");
                let mut out = output.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        }));
    }
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the browser script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for r in readers {
        let _ = r.join();
    }
    let script_output = output.lock().unwrap().clone();
    let gateway_exited = gw.exited();

    let report = |what: &str| -> String {
        format!(
            "{what}\n\n==== browser script output ====\n{script_output}\n\
             ==== bffgate log ====\n{}\n==== example API log ====\n{}\n\
             ==== SPA server log ====\n{}\n==== provider log ====\n{}\n\
             (screenshots and records.json in {})",
            gw.log(),
            api.log(),
            spa.log(),
            op.log(),
            out_dir.display()
        )
    };
    match status {
        None => panic!(
            "{}",
            report(&format!(
                "the browser script did not finish within {SCRIPT_DEADLINE:?}"
            ))
        ),
        Some(s) if !s.success() => {
            panic!("{}", report(&format!("the browser script failed ({s})")))
        }
        Some(_) => {}
    }
    assert!(
        !gateway_exited,
        "{}",
        report("bffgate exited during the run")
    );

    // The real tokens the provider issued (seen by the relay) must appear nowhere the
    // browser could read: no body, URL, Location, cookie or storage. The ID token alone may
    // appear in `POST /bff/logout`'s logout_url and the end-session navigation it starts
    // (`id_token_hint`, OpenID Connect RP-Initiated Logout).
    let access = relay.json_strings("access_token");
    let refresh = relay.json_strings("refresh_token");
    let id = relay.json_strings("id_token");
    assert!(
        !access.is_empty() && !refresh.is_empty() && !id.is_empty(),
        "{}",
        report(&format!(
            "the relay saw no token response (access {}, refresh {}, id {}): the token check \
             would be vacuous",
            access.len(),
            refresh.len(),
            id.len()
        ))
    );
    let records_path = out_dir.join("records.json");
    let records: Value = serde_json::from_str(
        &std::fs::read_to_string(&records_path)
            .unwrap_or_else(|e| panic!("{}: {e}", records_path.display())),
    )
    .expect("records.json is JSON");
    let seen = browser_strings(&records);
    assert!(seen.len() > 20, "too few browser records: {}", seen.len());
    let leaks = token_leaks(&seen, &access, &refresh, &id, &issuer);
    assert!(
        leaks.is_empty(),
        "{}",
        report(&format!(
            "tokens reached the browser:\n  {}",
            leaks.join("\n  ")
        ))
    );

    // The provider's view: one login, the code exchanged once, the API's introspections.
    let stats = op.stats().await;
    assert_eq!(
        stats["logins"]["success"],
        1,
        "{}",
        report(&format!("provider stats: {stats}"))
    );
    assert_eq!(
        stats["grants"]["authorization_code"],
        1,
        "{}",
        report(&format!("provider stats: {stats}"))
    );
    assert!(
        stats["introspection"].as_u64().unwrap_or(0) >= 3,
        "{}",
        report(&format!("provider stats: {stats}"))
    );
    assert_eq!(
        stats["end_session"].as_u64().unwrap_or(0),
        1,
        "{}",
        report(&format!("provider stats: {stats}"))
    );
    // bffgate revokes the refresh token at logout; the provider's back-channel logout
    // (sent to bffgate during the end-session confirmation) is accepted.
    assert!(
        stats["revocation"].as_u64().unwrap_or(0) >= 1,
        "{}",
        report(&format!(
            "bffgate revoked nothing at logout; provider stats: {stats}"
        ))
    );
    assert_eq!(
        stats["backchannel_logout"]["error"],
        0,
        "{}",
        report(&format!(
            "back-channel logout to bffgate failed; provider stats: {stats}"
        ))
    );
    println!(
        "browser e2e passed in {:.1} s: {} access, {} refresh, {} ID token(s) checked against \
         {} browser records; provider stats {stats}",
        started.elapsed().as_secs_f64(),
        access.len(),
        refresh.len(),
        id.len(),
        seen.len()
    );
    drop(gw);
    drop(spa);
    drop(api);
    op.stop();
}
