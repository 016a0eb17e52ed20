//! Operations under real conditions: hot reload under load (file watcher and SIGHUP), a
//! graceful upgrade (SIGQUIT + `--upgrade`) under load, TLS termination with HTTP/2 and
//! HTTPS upstreams, WebSockets through an authenticated route, server-sent events streamed
//! as they come, and upstream health (active checks and passive ejection).
//!
//! Every test runs real processes on loopback: the `bffgate` binary, in-process upstreams,
//! and redis-server where sessions are needed. Load loops are bounded in count and time.

mod common;
#[path = "common/pki.rs"]
mod pki;
#[path = "common/sessions.rs"]
mod sessions;
#[path = "common/streams.rs"]
mod streams;

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    client, expect_echo, expect_error, route, session_cookie, EchoServer, Echoed, Gateway,
    GatewayConfig, RedisProcess, APP_ORIGIN, BIN, COOKIE,
};
use futures_util::{SinkExt, StreamExt};
use sessions::Sessions;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

// ---------------------------------------------------------------------------------------
// Helpers

/// The value of the sample `series` (e.g. `bff_config_reloads_total{result="ok"}`) in a
/// Prometheus text page; `None` when there is no such line.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (s, v) = l.rsplit_once(' ')?;
        (s == series).then(|| v.trim().parse().ok()).flatten()
    })
}

/// The gateway's metrics page (empty on a failed scrape).
async fn scrape(url: &str) -> String {
    match client()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Sends `sig` to a process this test started.
fn signal(pid: u32, sig: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) on the pid of a child process this test spawned and has not reaped.
    let rc = unsafe { libc::kill(pid, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}) failed");
}

/// Seconds since the Unix epoch, fractional.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// A client that opens a new connection for every request (no idle pool).
fn fresh_connection_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("reqwest client")
}

/// What a load task saw.
#[derive(Debug, Default)]
struct LoadStats {
    ok: u64,
    failed: u64,
    /// The first few failures, described.
    failures: Vec<String>,
    /// Requests that started after the `mark` flag was raised, and how many of them failed.
    after_mark: u64,
    failed_after_mark: u64,
}

impl LoadStats {
    fn fail(&mut self, what: String, after_mark: bool) {
        self.failed += 1;
        if after_mark {
            self.failed_after_mark += 1;
        }
        if self.failures.len() < 10 {
            self.failures.push(what);
        }
    }

    fn merge(&mut self, other: LoadStats) {
        self.ok += other.ok;
        self.failed += other.failed;
        self.after_mark += other.after_mark;
        self.failed_after_mark += other.failed_after_mark;
        for f in other.failures {
            if self.failures.len() < 20 {
                self.failures.push(f);
            }
        }
    }
}

/// A bounded load: `tasks` tasks, each GETting `paths` in turn from `base` until `stop` is
/// raised, `max_per_task` requests were sent, or `hard_cap` passed; `pause` between two
/// requests of a task. Every fifth task opens a new connection per request, the others
/// share one keep-alive pool. A request counts as good only with status 200 and a body.
struct Load {
    /// When the load started; failures say how long after it they happened.
    started: Instant,
    stop: Arc<AtomicBool>,
    mark: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<LoadStats>>,
}

impl Load {
    fn start(
        base: String,
        paths: &'static [&'static str],
        tasks: usize,
        max_per_task: u64,
        hard_cap: Duration,
        pause: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mark = Arc::new(AtomicBool::new(false));
        let shared = client();
        let load_started = Instant::now();
        let handles = (0..tasks)
            .map(|t| {
                let client = if t % 5 == 0 {
                    fresh_connection_client()
                } else {
                    shared.clone()
                };
                let (stop, mark, base) = (Arc::clone(&stop), Arc::clone(&mark), base.clone());
                tokio::spawn(async move {
                    let mut stats = LoadStats::default();
                    let started = Instant::now();
                    let mut i: u64 = 0;
                    while !stop.load(Ordering::Relaxed)
                        && i < max_per_task
                        && started.elapsed() < hard_cap
                    {
                        let path = paths[(i as usize + t) % paths.len()];
                        let url = format!("{base}{path}/t{t}/r{i}");
                        let after = mark.load(Ordering::Relaxed);
                        let at = load_started.elapsed();
                        if after {
                            stats.after_mark += 1;
                        }
                        match client.get(&url).send().await {
                            Ok(resp) => {
                                let status = resp.status();
                                match resp.bytes().await {
                                    Ok(b) if status == 200 && !b.is_empty() => stats.ok += 1,
                                    Ok(b) => stats.fail(
                                        format!(
                                            "{at:?} {url}: {status} {}",
                                            String::from_utf8_lossy(&b[..b.len().min(200)])
                                        ),
                                        after,
                                    ),
                                    Err(e) => {
                                        stats.fail(format!("{at:?} {url}: body: {e:?}"), after)
                                    }
                                }
                            }
                            Err(e) => stats.fail(format!("{at:?} {url}: {e:?}"), after),
                        }
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                    stats
                })
            })
            .collect();
        Load {
            started: load_started,
            stop,
            mark,
            tasks: handles,
        }
    }

    /// From now on, requests count as `after_mark`.
    fn mark(&self) {
        self.mark.store(true, Ordering::Relaxed);
    }

    async fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = LoadStats::default();
        for t in self.tasks {
            total.merge(t.await.expect("load task"));
        }
        total
    }
}

// ---------------------------------------------------------------------------------------
// 1. Hot reload under load

/// The routes of valid config version `n`: `/stable` (never changes), `/also` (renamed
/// `also_N` in every version) and `/vN` (only in version `n`).
fn versioned_routes(up: &str, n: usize) -> Vec<String> {
    vec![
        route("stable", "/stable", up, "none", ""),
        route(&format!("also_{n}"), "/also", up, "none", ""),
        route(&format!("v{n}"), &format!("/v{n}"), up, "none", ""),
    ]
}

/// The ways a reloaded file can be wrong.
#[derive(Clone, Copy, Debug)]
enum Broken {
    Yaml,
    UnknownKey,
    DuplicateName,
    BadUpstream,
    BadDuration,
}

/// An invalid file: the last valid version's routes plus a route on `/bad{i}` broken as
/// `how` (for `Yaml`, the file does not parse at all).
fn broken_routes(up: &str, last_valid: usize, i: usize, how: Broken) -> Vec<String> {
    let mut routes = versioned_routes(up, last_valid);
    let path = format!("/bad{i}");
    let name = format!("bad{i}");
    routes.push(match how {
        Broken::Yaml => {
            format!("{{ name: {name}, match: {{ path_prefix: \"{path}\" }}, upstreams: [\"{up}\"")
        }
        Broken::UnknownKey => route(&name, &path, up, "none", "colour: blue"),
        Broken::DuplicateName => route("stable", &path, up, "none", ""),
        Broken::BadUpstream => route(&name, &path, "ftp://127.0.0.1:1", "none", ""),
        Broken::BadDuration => route(&name, &path, up, "none", "timeouts: { read: soonish }"),
    });
    routes
}

/// `head` (everything up to and including `routes:`) followed by `routes`.
fn config_text(head: &str, routes: &[String]) -> String {
    let mut s = head.to_owned();
    for r in routes {
        s.push_str(&format!("  - {r}\n"));
    }
    s
}

/// Writes the config the way Kubernetes does: a temp file renamed into place.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, text).expect("write temp config");
    std::fs::rename(&tmp, path).expect("rename config into place");
}

/// Writes the config the way an editor may: truncate, half, a pause, the rest.
async fn write_in_place(path: &Path, text: &str) {
    let (first, rest) = text.split_at(text.len() / 2);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .expect("open config in place");
    f.write_all(first.as_bytes()).expect("write first half");
    f.flush().expect("flush");
    tokio::time::sleep(Duration::from_millis(30)).await;
    f.write_all(rest.as_bytes()).expect("write second half");
    f.flush().expect("flush");
}

/// Polls `url` every 50 ms until it answers 200; the time that took, or `None` past `limit`.
async fn time_until_200(c: &reqwest::Client, url: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if let Ok(r) = c.get(url).timeout(Duration::from_secs(2)).send().await {
            if r.status() == 200 {
                let took = start.elapsed();
                return (took <= limit).then_some(took);
            }
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the metrics every 50 ms until `series` reaches `want`; the time that took.
async fn time_until_metric(
    url: &str,
    series: &str,
    want: f64,
    limit: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if metric(&scrape(url).await, series) == Some(want) {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const RELOAD_OK: &str = "bff_config_reloads_total{result=\"ok\"}";
const RELOAD_ERR: &str = "bff_config_reloads_total{result=\"error\"}";
const RELOAD_TS: &str = "bff_config_last_reload_success_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load() {
    const WRITES: usize = 20;
    const WRITE_EVERY: Duration = Duration::from_millis(800);
    let echo = EchoServer::start().await;
    let up = echo.url();
    let gw = Gateway::start(&GatewayConfig::new(versioned_routes(&up, 0)).yaml()).await;
    let path = gw.config_path().to_path_buf();
    let rendered = std::fs::read_to_string(&path).expect("read rendered config");
    let head = format!(
        "{}routes:\n",
        rendered.split_once("routes:\n").expect("routes section").0
    );
    let probe = client();
    let metrics = gw.metrics_url();

    let load = Load::start(
        gw.base_url(),
        &["/stable", "/also"],
        50,
        3_000,
        Duration::from_secs(40),
        Duration::from_millis(5),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    let broken_at = |i: usize| match i {
        4 => Some(Broken::Yaml),
        8 => Some(Broken::UnknownKey),
        11 => Some(Broken::DuplicateName),
        15 => Some(Broken::BadUpstream),
        19 => Some(Broken::BadDuration),
        _ => None,
    };
    let in_place = |i: usize| matches!(i, 6 | 13 | 15);
    let mut last_valid = 0usize;
    let (mut oks, mut errors) = (0u32, 0u32);
    let mut reload_latencies = Vec::new();
    let mut refusal_latencies = Vec::new();
    let mut last_valid_write = unix_now();
    let t0 = Instant::now();
    for i in 1..=WRITES {
        let due = t0 + WRITE_EVERY * (i as u32 - 1);
        tokio::time::sleep_until(due.into()).await;
        let broken = broken_at(i);
        let (text, n) = match broken {
            Some(how) => (
                config_text(&head, &broken_routes(&up, last_valid, i, how)),
                last_valid,
            ),
            None => (
                config_text(&head, &versioned_routes(&up, last_valid + 1)),
                last_valid + 1,
            ),
        };
        if in_place(i) {
            write_in_place(&path, &text).await;
        } else {
            write_atomic(&path, &text);
        }
        match broken {
            None => {
                oks += 1;
                last_valid_write = unix_now();
                let url = gw.url(&format!("/v{n}/probe"));
                let took = time_until_200(&probe, &url, Duration::from_secs(1))
                    .await
                    .unwrap_or_else(|| {
                        panic!(
                            "write {i} (version {n}, in place: {}): /v{n} not 200 within 1 s; log:\n{}",
                            in_place(i),
                            gw.log()
                        )
                    });
                reload_latencies.push(took);
                // The previous version's own route is gone with it.
                let old = probe
                    .get(gw.url(&format!("/v{}/x", n - 1)))
                    .send()
                    .await
                    .unwrap();
                expect_error(old, 404, "route_not_found").await;
                last_valid = n;
            }
            Some(how) => {
                errors += 1;
                let took = time_until_metric(&metrics, RELOAD_ERR, f64::from(errors), Duration::from_secs(2))
                    .await
                    .unwrap_or_else(|| {
                        panic!("write {i} ({how:?}) was not counted as a refused reload within 2 s; log:\n{}", gw.log())
                    });
                refusal_latencies.push(took);
                let kept = probe
                    .get(gw.url(&format!("/v{last_valid}/x")))
                    .send()
                    .await
                    .unwrap();
                let seen = expect_echo(kept).await;
                assert_eq!(seen.path, format!("/v{last_valid}/x"));
                let bad = probe
                    .get(gw.url(&format!("/bad{i}/x")))
                    .send()
                    .await
                    .unwrap();
                expect_error(bad, 404, "route_not_found").await;
            }
        }
        // Each write is one reload, no more: the ok counter matches the valid writes so far.
        // (The counter moves just after the swap, hence a short poll.)
        assert!(
            time_until_metric(&metrics, RELOAD_OK, f64::from(oks), Duration::from_secs(1))
                .await
                .is_some(),
            "after write {i}: expected {oks} ok reloads:\n{}",
            scrape(&metrics).await
        );
    }

    let page = scrape(&metrics).await;
    assert_eq!(metric(&page, RELOAD_OK), Some(15.0), "ok reloads:\n{page}");
    assert_eq!(metric(&page, RELOAD_ERR), Some(5.0), "refused reloads");
    let ts = metric(&page, RELOAD_TS).expect("last reload timestamp");
    assert!(
        ts >= last_valid_write.floor() && ts <= unix_now() + 1.0,
        "last successful reload at {ts}, last valid write at {last_valid_write}"
    );
    let log = gw.log();
    for key in ["colour", "already the name", "ftp", "soonish"] {
        assert!(
            log.contains(key),
            "the refusal log does not mention `{key}`"
        );
    }

    // SIGHUP: a rewrite applied at once, by the signal (one reload, logged as SIGHUP).
    let n = last_valid + 1;
    write_atomic(&path, &config_text(&head, &versioned_routes(&up, n)));
    signal(gw.pid(), libc::SIGHUP);
    let hup_latency = time_until_200(
        &probe,
        &gw.url(&format!("/v{n}/probe")),
        Duration::from_secs(1),
    )
    .await
    .expect("route of the SIGHUP reload answers within 1 s");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let page = scrape(&metrics).await;
    assert_eq!(
        metric(&page, RELOAD_OK),
        Some(16.0),
        "one more reload after SIGHUP, and only one"
    );
    assert!(
        gw.log()
            .lines()
            .any(|l| l.contains("configuration reloaded") && l.contains("SIGHUP")),
        "no SIGHUP-triggered reload in the log:\n{}",
        gw.log()
    );

    // The load goes on a little past the last reload, then stops.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = load.finish().await;
    let max_reload = reload_latencies.iter().max().copied().unwrap_or_default();
    let max_refusal = refusal_latencies.iter().max().copied().unwrap_or_default();
    eprintln!(
        "reload_under_load: {} ok, {} failed; reload latency max {max_reload:?} (all {reload_latencies:?}); refusal seen max {max_refusal:?}; SIGHUP latency {hup_latency:?}",
        stats.ok, stats.failed
    );
    assert_eq!(
        stats.failed, 0,
        "requests to routes present in every version failed: {:#?}",
        stats.failures
    );
    assert!(
        stats.ok > 1_000,
        "too little load to mean anything: {}",
        stats.ok
    );
}

// ---------------------------------------------------------------------------------------
// 2. Graceful upgrade

/// A second `bffgate` this test spawned; SIGTERM then SIGKILL on drop.
struct Spawned {
    child: Child,
    log: std::path::PathBuf,
}

impl Spawned {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        signal(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(8);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_upgrade_drops_nothing() {
    let echo = EchoServer::start().await;
    let yaml = GatewayConfig::new(vec![route("up", "/up", &echo.url(), "none", "")])
        .yaml()
        .replace("grace_period_seconds: 0", "grace_period_seconds: 1")
        .replace(
            "graceful_shutdown_timeout_seconds: 1",
            "graceful_shutdown_timeout_seconds: 5",
        );
    assert!(yaml.contains("grace_period_seconds: 1") && yaml.contains("upgrade_sock"));
    let mut a = Gateway::start(&yaml).await;
    let sock = a.dir().join("upgrade.sock");

    let load = Load::start(
        a.base_url(),
        &["/up"],
        20,
        4_000,
        Duration::from_secs(30),
        Duration::from_millis(10),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // B first: it binds the upgrade socket and waits for A's listeners.
    let log = a.dir().join("gateway-b.log");
    let out = File::create(&log).expect("log b");
    let err = out.try_clone().expect("clone");
    let mut cmd = Command::new(BIN);
    for var in [
        "BFFGATE_LISTEN",
        "BFFGATE_CONFIG",
        "BFFGATE_LOG_JSON",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        cmd.env_remove(var);
    }
    let child = cmd
        .arg("--config")
        .arg(a.config_path())
        .arg("--upgrade")
        .env("BFFGATE_LOG", "info")
        .current_dir(a.dir())
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn bffgate --upgrade");
    let mut b = Spawned { child, log };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !sock.exists() {
        assert!(
            b.is_running(),
            "B exited before binding the upgrade socket:\n{}",
            b.log()
        );
        assert!(
            Instant::now() < deadline,
            "B never bound {}",
            sock.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let quit = Instant::now();
    let quit_at = load.started.elapsed();
    signal(a.pid(), libc::SIGQUIT);
    let a_gone = loop {
        if !a.is_running() {
            break quit.elapsed();
        }
        assert!(
            quit.elapsed() < Duration::from_secs(20),
            "A still running 20 s after SIGQUIT:\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    load.mark();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let stats = load.finish().await;

    assert!(b.is_running(), "B is not running:\n{}", b.log());
    let page = scrape(&a.metrics_url()).await;
    let served_by_b =
        metric(&page, "bff_requests_total{route=\"up\",status=\"200\"}").unwrap_or(0.0);
    eprintln!(
        "graceful_upgrade_drops_nothing: {} ok, {} failed; SIGQUIT at {quit_at:?} into the load; A exited {a_gone:?} after SIGQUIT; {} requests after A's exit ({} failed); B served {served_by_b}",
        stats.ok, stats.failed, stats.after_mark, stats.failed_after_mark
    );
    assert_eq!(
        stats.failed, 0,
        "requests failed during the upgrade (SIGQUIT at {quit_at:?} into the load): {:#?}\nA's log:\n{}\nB's log:\n{}",
        stats.failures,
        a.log(),
        b.log()
    );
    assert!(
        stats.after_mark > 50,
        "too few requests after A exited: {}",
        stats.after_mark
    );
    assert!(
        served_by_b >= stats.after_mark as f64,
        "B's metrics count {served_by_b} requests, but {} were sent after A exited",
        stats.after_mark
    );
    assert!(
        a.log().contains("listener sockets sent"),
        "A did not hand its sockets over:\n{}",
        a.log()
    );
    let health = client().get(a.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    drop(b);
}

// ---------------------------------------------------------------------------------------
// 3. TLS, HTTP/2, HTTPS upstreams

/// `yaml` with a second, TLS listener on `127.0.0.1:port` beside the plain `{LISTEN}` one
/// (which the harness uses for its health check).
fn with_tls_listener(yaml: &str, port: u16, pki: &pki::Pki) -> String {
    let plain = "listen:\n  - addr: \"{LISTEN}\"\n";
    assert!(yaml.contains(plain));
    yaml.replacen(
        plain,
        &format!(
            "{plain}  - addr: \"127.0.0.1:{port}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}\n",
            pki.cert_file.display(),
            pki.key_file.display()
        ),
        1,
    )
}

/// `yaml` with `server.upstream_ca_file`.
fn with_upstream_ca(yaml: &str, ca: &Path) -> String {
    yaml.replacen(
        "server:\n",
        &format!("server:\n  upstream_ca_file: \"{}\"\n", ca.display()),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_http2() {
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = pki::generate(dir.path());
    let echo = EchoServer::start().await;
    let tls_port = common::free_port();
    let front = GatewayConfig::new(vec![
        route("tls", "/tls", &echo.url(), "none", ""),
        route("insecure", "/insecure", &echo.url(), "none", ""),
    ])
    .yaml();
    let t = Gateway::start(&with_tls_listener(&front, tls_port, &pki)).await;
    let https = format!("https://localhost:{tls_port}");

    // HTTP/2 by ALPN (no prior knowledge), and HTTP/1.1 for a client that offers only that.
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA cert");
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("tls client");
    for i in 0..3 {
        let resp = h2
            .get(format!("{https}/tls/h2/{i}?q=1"))
            .send()
            .await
            .expect("h2 request");
        assert_eq!(
            resp.version(),
            reqwest::Version::HTTP_2,
            "ALPN did not pick h2"
        );
        let seen = expect_echo(resp).await;
        assert_eq!(seen.path, format!("/tls/h2/{i}?q=1"));
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    }
    let post = h2
        .post(format!("{https}/tls/h2/post"))
        .body("hello over h2")
        .send()
        .await
        .expect("h2 post");
    assert_eq!(post.version(), reqwest::Version::HTTP_2);
    let seen = expect_echo(post).await;
    assert_eq!(seen.body, "hello over h2");
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("tls h1 client");
    let resp = h1
        .get(format!("{https}/tls/h1"))
        .send()
        .await
        .expect("h1 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(expect_echo(resp).await.path, "/tls/h1");

    // HTTPS upstream (the TLS listener above), trusted through server.upstream_ca_file.
    let via = |extra: &str| {
        vec![
            route("tls", "/tls", &https, "none", ""),
            route(
                "insecure",
                "/insecure",
                &https,
                "none",
                &format!("tls_verify: false{extra}"),
            ),
        ]
    };
    let trusting = Gateway::start(&with_upstream_ca(
        &GatewayConfig::new(via("")).yaml(),
        &pki.ca_file,
    ))
    .await;
    let resp = client()
        .get(trusting.url("/tls/through"))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.path, "/tls/through");
    assert_eq!(
        seen.header("x-forwarded-proto").as_deref(),
        Some("https"),
        "the hop to the upstream was not TLS"
    );

    // Without the CA: verification fails (502); with tls_verify: false it is not checked.
    let untrusting = Gateway::start(&GatewayConfig::new(via("")).yaml()).await;
    let resp = client()
        .get(untrusting.url("/tls/through"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 502, "upstream_unavailable").await;
    // ...because the certificate did not verify, not because nothing listened.
    assert!(
        common::eventually(Duration::from_secs(2), || async {
            untrusting
                .log()
                .lines()
                .any(|l| l.contains("TLSHandshakeFailure") && l.contains("UnknownIssuer"))
        })
        .await,
        "no certificate verification failure logged:\n{}",
        untrusting.log()
    );
    let resp = client()
        .get(untrusting.url("/insecure/through"))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.path, "/insecure/through");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let page = scrape(&untrusting.metrics_url()).await;
    assert_eq!(
        metric(
            &page,
            "bff_upstream_errors_total{kind=\"unavailable\",route=\"tls\"}"
        ),
        Some(1.0),
        "metrics:\n{page}"
    );
    drop(t);
}

// ---------------------------------------------------------------------------------------
// 4. WebSocket through an authenticated route

/// A handshake request to `url` with the given headers.
fn ws_request(
    url: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut req = url.into_client_request().expect("ws request");
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    req
}

/// Expects the handshake to be refused with `status` and JSON `code`.
async fn ws_refused(url: &str, headers: &[(&str, &str)], status: u16, code: &str) {
    match tokio_tungstenite::connect_async(ws_request(url, headers)).await {
        Ok(_) => panic!("handshake with {headers:?} was accepted; expected {status} {code}"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            assert_eq!(resp.status().as_u16(), status, "{headers:?}: body {body}");
            let json: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
            assert_eq!(json["code"], code, "{body}");
        }
        Err(e) => panic!("handshake with {headers:?}: unexpected error {e:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_through_authenticated_route() {
    let redis = RedisProcess::start();
    let ws = streams::WsEcho::start().await;
    let cfg =
        GatewayConfig::new(vec![route("ws", "/ws", &ws.url(), "required", "")]).redis(redis.url());
    let gw = Gateway::start(&cfg.yaml()).await;
    let sessions = Sessions::open(gw.config_path()).await;
    let (_s, sealed) = sessions.login("ws-user", "at-ws-1").await;
    let url = format!("ws://{}/ws/chat?room=1", gw.addr());
    let cookie = format!("theme=dark; {}", session_cookie(&sealed));

    let (mut conn, resp) = tokio_tungstenite::connect_async(ws_request(
        &url,
        &[("cookie", &cookie), ("origin", APP_ORIGIN)],
    ))
    .await
    .expect("handshake through the gateway");
    assert_eq!(resp.status().as_u16(), 101);
    for i in 0..5 {
        let text = format!("hello {i}");
        conn.send(Message::text(text.clone())).await.expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), conn.next())
            .await
            .expect("echo within 5 s")
            .expect("stream open")
            .expect("frame");
        assert_eq!(echoed, Message::text(text));
    }
    conn.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .expect("send binary");
    let echoed = tokio::time::timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("echo within 5 s")
        .expect("stream open")
        .expect("frame");
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    conn.close(None).await.expect("close");

    let handshakes = ws.handshakes();
    assert_eq!(handshakes.len(), 1, "{handshakes:?}");
    let seen = &handshakes[0];
    let values = |name: &str| -> Vec<&str> {
        seen.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(values("authorization"), vec!["Bearer at-ws-1"]);
    for c in values("cookie") {
        assert!(
            !c.contains(COOKIE) && !c.contains(&sealed),
            "session cookie reached the upstream: {c}"
        );
    }
    assert_eq!(values("cookie"), vec!["theme=dark"]);
    assert_eq!(values("upgrade"), vec!["websocket"]);

    // Refused handshakes never reach the upstream.
    ws_refused(&url, &[("cookie", &cookie)], 403, "csrf_violation").await;
    ws_refused(
        &url,
        &[("cookie", &cookie), ("origin", "http://evil.test")],
        403,
        "csrf_violation",
    )
    .await;
    ws_refused(&url, &[("origin", APP_ORIGIN)], 401, "no_session").await;
    assert_eq!(
        ws.handshakes().len(),
        1,
        "a refused handshake reached the upstream"
    );
}

// ---------------------------------------------------------------------------------------
// 5. Server-sent events

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_stream_one_by_one() {
    const EVENTS: usize = 5;
    let sse = streams::SseServer::start(EVENTS, Duration::from_millis(300)).await;
    let gw = Gateway::start(
        &GatewayConfig::new(vec![route("events", "/events", &sse.url(), "none", "")]).yaml(),
    )
    .await;

    let start = Instant::now();
    let mut resp = client()
        .get(gw.url("/events/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("sse request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut buf = String::new();
    let mut arrivals: Vec<Duration> = Vec::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("next chunk within 10 s")
        .expect("body chunk")
    {
        buf.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            assert!(
                event.contains(&format!("data: {{\"n\": {}}}", arrivals.len())),
                "event {} out of order: {event:?}",
                arrivals.len()
            );
            arrivals.push(start.elapsed());
        }
    }
    let total = start.elapsed();
    let sent = sse.sent();
    assert_eq!(arrivals.len(), EVENTS, "events received: {arrivals:?}");
    assert_eq!(sent.len(), EVENTS);
    let first_arrived = start + arrivals[0];
    eprintln!("sse_events_stream_one_by_one: arrivals {arrivals:?}, total {total:?}");
    assert!(
        first_arrived < sent[EVENTS - 1],
        "the first event arrived only after the last was sent: buffered ({arrivals:?})"
    );
    assert!(
        arrivals[0] < Duration::from_secs(1),
        "first event after {:?}",
        arrivals[0]
    );
    assert!(
        total >= Duration::from_millis(1200),
        "the stream took only {total:?}"
    );
    for k in 1..EVENTS {
        assert!(
            start + arrivals[k] >= sent[k],
            "event {k} arrived before it was sent?"
        );
        assert!(
            start + arrivals[k - 1] < sent[k],
            "event {} arrived only after event {k} was sent: buffered ({arrivals:?})",
            k - 1
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. Upstream health

/// A route on `/hc` over a closed port first, then the echo upstream.
fn two_upstreams(closed: u16, echo: &str, extra: &str) -> String {
    format!(
        "{{ name: hc, match: {{ path_prefix: \"/hc\" }}, upstreams: [\"http://127.0.0.1:{closed}\", \"{echo}\"], auth: none{extra} }}"
    )
}

/// `sequential` requests one after another, then `concurrent` at once; the failures.
async fn hammer(gw: &Gateway, sequential: usize, concurrent: usize) -> Vec<String> {
    let c = client();
    let mut failures = Vec::new();
    for i in 0..sequential {
        match c.get(gw.url(&format!("/hc/s{i}"))).send().await {
            Ok(r) if r.status() == 200 => {
                let seen: Echoed = r.json().await.expect("echo body");
                assert_eq!(seen.path, format!("/hc/s{i}"));
            }
            Ok(r) => failures.push(format!(
                "s{i}: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            )),
            Err(e) => failures.push(format!("s{i}: {e:?}")),
        }
    }
    let tasks: Vec<_> = (0..concurrent)
        .map(|i| {
            let (c, url) = (fresh_connection_client(), gw.url(&format!("/hc/c{i}")));
            tokio::spawn(async move {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => None,
                    Ok(r) => Some(format!("c{i}: {}", r.status())),
                    Err(e) => Some(format!("c{i}: {e:?}")),
                }
            })
        })
        .collect();
    for t in tasks {
        if let Some(f) = t.await.expect("task") {
            failures.push(f);
        }
    }
    failures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_health() {
    let echo = EchoServer::start().await;
    let closed = common::closed_port();

    // Active checks: the dead upstream leaves the rotation.
    let active = Gateway::start(
        &GatewayConfig::new(vec![two_upstreams(
            closed,
            &echo.url(),
            ", health_check: { interval: 200ms }",
        )])
        .yaml(),
    )
    .await;
    let early = hammer(&active, 10, 10).await;
    assert!(
        common::eventually(Duration::from_secs(3), || async {
            active.log().lines().any(|l| {
                l.contains("upstream health changed")
                    && l.contains(&format!("127.0.0.1:{closed}"))
                    && l.contains("healthy=false")
            })
        })
        .await,
        "no health change logged:\n{}",
        active.log()
    );
    let later = hammer(&active, 40, 20).await;
    assert!(
        early.is_empty() && later.is_empty(),
        "active: {early:?} {later:?}"
    );
    // Requests are counted after their response is sent: give the last one a moment.
    let series = "bff_requests_total{route=\"hc\",status=\"200\"}";
    assert!(
        time_until_metric(&active.metrics_url(), series, 80.0, Duration::from_secs(2))
            .await
            .is_some(),
        "active: 80 requests answered 200 by the route:\n{}",
        scrape(&active.metrics_url()).await
    );

    // Passive only: a refused connect retries on the other upstream and ejects the dead one.
    let passive =
        Gateway::start(&GatewayConfig::new(vec![two_upstreams(closed, &echo.url(), "")]).yaml())
            .await;
    let failures = hammer(&passive, 40, 20).await;
    assert!(
        failures.is_empty(),
        "passive: {failures:?}\n{}",
        passive.log()
    );
    assert!(
        time_until_metric(&passive.metrics_url(), series, 60.0, Duration::from_secs(2))
            .await
            .is_some(),
        "passive: 60 requests answered 200 by the route:\n{}",
        scrape(&passive.metrics_url()).await
    );
    let page = scrape(&passive.metrics_url()).await;
    assert_eq!(
        metric(
            &page,
            "bff_upstream_errors_total{kind=\"unavailable\",route=\"hc\"}"
        ),
        None,
        "no request should have failed upstream"
    );
    // Passive ejection: only the first request tried the dead upstream (5 s out of
    // rotation afterwards); plain round robin would have sent it half of them.
    let dead = format!("Fail to connect to addr: 127.0.0.1:{closed}");
    let passive_tries = passive.log().matches(&dead).count();
    let active_tries = active.log().matches(&dead).count();
    eprintln!(
        "upstream_health: active 80/80 ok ({active_tries} connects to the dead upstream), passive 60/60 ok ({passive_tries} connects to the dead upstream)"
    );
    assert!(
        (1..=3).contains(&passive_tries),
        "passive: {passive_tries} connects to the dead upstream:\n{}",
        passive.log()
    );
    assert!(
        active_tries <= 10,
        "active: {active_tries} connects to the dead upstream:\n{}",
        active.log()
    );
}
