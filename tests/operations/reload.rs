//! Hot reload under load: twenty config writes (atomic renames and in-place rewrites, five
//! of them invalid in different ways) while fifty tasks keep requesting routes present in
//! every version, then a SIGHUP. No request fails; each write is exactly one reload or one
//! refusal, seen within its bound.

use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::load::Load;
use crate::common::scrape::{metric, scrape_url, time_until_metric};
use crate::common::{
    client, expect_echo, expect_error, now_f64, route, EchoServer, Gateway, GatewayConfig,
};

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

const RELOAD_OK: &str = "bff_config_reloads_total{result=\"ok\"}";
const RELOAD_ERR: &str = "bff_config_reloads_total{result=\"error\"}";
const RELOAD_TS: &str = "bff_config_last_reload_success_timestamp_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load() {
    const WRITES: usize = 20;
    const WRITE_EVERY: Duration = Duration::from_millis(800);
    let echo = EchoServer::start().await;
    let up = echo.url();
    let mut gw = Gateway::start(&GatewayConfig::new(versioned_routes(&up, 0)).yaml()).await;
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
    let mut last_valid_write = now_f64();
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
                last_valid_write = now_f64();
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
            scrape_url(&metrics).await
        );
    }

    let page = scrape_url(&metrics).await;
    assert_eq!(metric(&page, RELOAD_OK), Some(15.0), "ok reloads:\n{page}");
    assert_eq!(metric(&page, RELOAD_ERR), Some(5.0), "refused reloads");
    let ts = metric(&page, RELOAD_TS).expect("last reload timestamp");
    assert!(
        ts >= last_valid_write.floor() && ts <= now_f64() + 1.0,
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
    gw.signal(libc::SIGHUP);
    let hup_latency = time_until_200(
        &probe,
        &gw.url(&format!("/v{n}/probe")),
        Duration::from_secs(1),
    )
    .await
    .expect("route of the SIGHUP reload answers within 1 s");
    tokio::time::sleep(Duration::from_millis(700)).await;
    let page = scrape_url(&metrics).await;
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
