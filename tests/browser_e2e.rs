//! The real-browser end-to-end test: Debian's Chromium (headless, driven by
//! `tests/browser/e2e.mjs` with playwright-core) logs in through the demo SPA, bffgate and
//! the real OpenID provider, calls the example API, reloads, opens a second tab, logs out
//! through bffgate's one-time logout link and the provider's end-session page, and checks
//! the session cookie's attributes and that no token ever reaches the browser, the logout
//! answer included.
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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::process::ChildGuard;
use crate::common::provider::{Provider, ProviderSettings, PASSWORD, USER};
use crate::common::{self, npm};

const CLIENT_ID: &str = "bff-e2e";
/// The whole browser script bounds itself at 85 s; this is the backstop.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);
/// How long a server started here gets after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn node() -> String {
    std::env::var("BFFGATE_NODE").unwrap_or_else(|_| "node".into())
}

/// `program` run so that it dies with the test process (`setpriv --pdeathsig KILL`, which
/// execs it: same PID), so a killed test leaves no server behind; without the caller's
/// `BFFGATE_*` and proxy settings and `NODE_OPTIONS`.
fn command(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--"]).arg(program);
    for var in common::SCRUBBED_ENV.iter().chain(&["NODE_OPTIONS"]) {
        cmd.env_remove(var);
    }
    cmd
}

/// Installs `tests/browser`'s npm packages unless the pinned playwright-core is there.
fn ensure_browser_packages() -> Result<(), String> {
    npm::ensure_installed(
        &crate_dir().join("tests/browser"),
        "playwright-core",
        &[("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")],
    )
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

/// Spawns `cmd` as `name`, its output in `dir/NAME.log`.
fn spawn(name: &str, mut cmd: Command, dir: &Path) -> ChildGuard {
    ChildGuard::spawn(name, &mut cmd, &dir.join(format!("{name}.log")))
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"))
        .with_grace(STOP_GRACE)
}

/// Waits until `url` answers `want` (any status if `None`); Err(log) if the process exits
/// or 15 s pass.
async fn wait_http(
    name: &str,
    process: &mut ChildGuard,
    url: &str,
    want: Option<u16>,
) -> Result<(), String> {
    let http = common::client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if !process.is_running() {
            return Err(format!("{name} exited; its log:\n{}", process.log()));
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
                "{name} not ready at {url} within 15 s (last: {last}); its log:\n{}",
                process.log()
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
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
) -> (ChildGuard, u16)
where
    F: FnMut(u16) -> Command,
{
    let mut last = String::new();
    for _ in 0..3 {
        let port = common::free_port();
        let mut process = spawn(name, make(port), dir);
        match wait_http(
            name,
            &mut process,
            &format!("http://127.0.0.1:{port}{ready_path}"),
            want,
        )
        .await
        {
            Ok(()) => return (process, port),
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
/// anywhere but the provider's end-session URL the browser navigates to (`id_token_hint`),
/// which is the `Location` of bffgate's one-time logout link. `POST /bff/logout`'s answer
/// carries no token.
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
        let id_allowed = place.contains(&end_session)
            || (place.starts_with("Location of ") && place.contains("/bff/logout/end?"));
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
            { "url": "http://localhost:2/bff/logout/end?handle=H", "method": "GET",
              "location": format!("{op}/session/end?id_token_hint=ID.TOKEN.X") },
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
    assert_eq!(leaks.len(), 4, "{leaks:#?}");
    assert!(leaks[0].contains("refresh token") && leaks[0].contains("/api/x"));
    assert!(
        leaks[1].contains("ID token") && leaks[1].contains("POST http://localhost:2/bff/logout")
    );
    assert!(
        leaks[2].contains("ID token") && leaks[2].contains("GET http://localhost:2/bff/session")
    );
    assert!(leaks[3].contains("access token") && leaks[3].contains("documentCookies"));
}

/// Prints the lines of `log` from byte `from` on as `e2e| LINE`, the last one only if it
/// is complete or `all`; returns where the next call starts.
fn show_new_lines(log: &str, from: usize, all: bool) -> usize {
    let new = log.get(from..).unwrap_or_default();
    let end = if all {
        new.len()
    } else {
        new.rfind('\n').map_or(0, |i| i + 1)
    };
    for line in new[..end].lines() {
        println!("e2e| {line}");
    }
    from + end
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
        cmd.arg("--config")
            .arg(&config)
            .env("BFFGATE_LOG", "info")
            .current_dir(dir.path());
        let mut gw = spawn("bffgate", cmd, dir.path());
        match wait_http(
            "bffgate",
            &mut gw,
            &format!("http://127.0.0.1:{bff_port}/readyz"),
            Some(200),
        )
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
    let mut script_cmd = command(&node());
    script_cmd
        .arg(root.join("tests/browser/e2e.mjs"))
        .current_dir(root.join("tests/browser"))
        .env("E2E_SPA_URL", format!("http://localhost:{spa_port}"))
        .env("E2E_BFF_URL", format!("http://localhost:{bff_port}"))
        .env("E2E_OP_URL", &issuer)
        .env("E2E_OUT_DIR", &out_dir)
        .env("E2E_CHROMIUM", &chromium)
        .env("E2E_USER", USER)
        .env("E2E_PASSWORD", PASSWORD);
    let started = Instant::now();
    let mut script = ChildGuard::spawn(
        "the browser script",
        &mut script_cmd,
        &dir.path().join("e2e-script.log"),
    )
    .expect("spawn node tests/browser/e2e.mjs");
    // Its output is shown live with --nocapture, and in the failure report either way.
    let mut shown = 0;
    let status = loop {
        shown = show_new_lines(&script.log(), shown, false);
        if let Some(status) = script.exit_status() {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_DEADLINE {
            script.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let script_output = script.log();
    show_new_lines(&script_output, shown, true);
    let gateway_exited = !gw.is_running();

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
    // browser could read: no body (POST /bff/logout's included), URL, Location, cookie or
    // storage. The ID token alone appears in the provider's end-session URL, the Location
    // of bffgate's one-time logout link (`id_token_hint`, OpenID Connect RP-Initiated
    // Logout): a navigation, which page script cannot read.
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
