//! The metrics catalogue (`docs/metrics.md`) against the code and against a real scrape.
//!
//! * The catalogue table and `src/metrics/` name exactly the same metrics, with the same
//!   types, so neither can drift.
//! * Known traffic against the real binary (in-memory store, an echo upstream, a closed
//!   port) shows up in the scrape with exactly the counts that traffic implies, and the
//!   families it cannot drive are exported (unlabelled ones) or absent (labelled ones) as
//!   the catalogue says.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;

use crate::common::scrape::{parse, scrape, Sample};
use crate::common::sessions;
use crate::common::{
    client, eventually, expect_echo, expect_error, now_f64, refusing_port, route, session_cookie,
    write_config, EchoServer, Gateway, GatewayConfig,
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------------------
// The catalogue and the source

/// `(name, type)` of every row of the `| metric | type | … |` table in docs/metrics.md.
fn catalogue() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/metrics.md"))
        .expect("read docs/metrics.md");
    let mut rows = BTreeMap::new();
    let mut columns: Option<(usize, usize)> = None;
    for line in text.lines() {
        let line = line.trim();
        if !line.starts_with('|') {
            columns = None;
            continue;
        }
        let cells: Vec<String> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`').to_string())
            .collect();
        match columns {
            None => {
                let metric = cells.iter().position(|c| c == "metric");
                let kind = cells.iter().position(|c| c == "type");
                if let (Some(m), Some(t)) = (metric, kind) {
                    columns = Some((m, t));
                }
            }
            Some(_)
                if cells
                    .iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) => {}
            Some((m, t)) => {
                let prev = rows.insert(cells[m].clone(), cells[t].clone());
                assert!(prev.is_none(), "{} is catalogued twice", cells[m]);
            }
        }
    }
    assert!(
        !rows.is_empty(),
        "no `| metric | type |` table in docs/metrics.md"
    );
    rows
}

/// The source of the metrics module: every file under src/metrics/, in name order.
fn metrics_source() -> String {
    let dir = Path::new(ROOT).join("src/metrics");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read src/metrics")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read a metrics source file"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `"bff_…"` string literal in src/metrics/, with the type its `register_*!` macro
/// gives it (`counter`, `histogram`, `gauge`).
fn registered() -> BTreeMap<String, String> {
    let src = metrics_source();
    let mut out = BTreeMap::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find("\"bff_") {
        let before = &rest[..at];
        let after = &rest[at + 1..];
        let end = after.find('"').expect("unterminated string");
        let name = &after[..end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "odd metric name {name:?}"
        );
        // The closest registration macro before the name says what it is.
        let macro_at = before
            .rfind("register_")
            .expect("name outside a register_ macro");
        let mac = &before[macro_at..];
        let kind = if mac.starts_with("register_int_counter") || mac.starts_with("register_counter")
        {
            "counter"
        } else if mac.starts_with("register_histogram") {
            "histogram"
        } else if mac.starts_with("register_int_gauge") || mac.starts_with("register_gauge") {
            "gauge"
        } else {
            panic!("unknown registration {}", &mac[..mac.len().min(40)])
        };
        assert!(
            out.insert(name.to_string(), kind.to_string()).is_none(),
            "{name} registered twice"
        );
        rest = &after[end + 1..];
    }
    assert!(out.len() >= 10, "found only {out:?} in src/metrics/");
    out
}

#[test]
fn catalogue_names_exactly_the_registered_metrics() {
    let docs = catalogue();
    let src = registered();
    let doc_names: BTreeSet<&String> = docs.keys().collect();
    let src_names: BTreeSet<&String> = src.keys().collect();
    let undocumented: Vec<_> = src_names.difference(&doc_names).collect();
    let unregistered: Vec<_> = doc_names.difference(&src_names).collect();
    assert!(
        undocumented.is_empty() && unregistered.is_empty(),
        "docs/metrics.md and src/metrics/ disagree:\n  registered but not catalogued: \
         {undocumented:?}\n  catalogued but not registered: {unregistered:?}"
    );
    for (name, kind) in &src {
        assert_eq!(&docs[name], kind, "{name}: type in docs/metrics.md vs src");
    }
    // The two config-reload metrics are part of the catalogue from the start.
    assert!(docs.contains_key("bff_config_reloads_total"));
    assert!(docs.contains_key("bff_config_last_reload_success_timestamp_seconds"));
}

#[test]
fn every_metric_is_registered_at_start_by_init() {
    // `metrics::init` forces every Lazy; a metric missing there would be registered only
    // on first use. Count `Lazy::force(&X)` against the statics.
    let src = metrics_source();
    let statics: BTreeSet<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub static "))
        .filter_map(|l| l.split(':').next())
        .collect();
    // Forced directly, or listed in FIXED_LABELS (whose series init creates at zero).
    let mut forced: BTreeSet<&str> = src
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Lazy::force(&"))
        .filter_map(|l| l.split(')').next())
        .collect();
    let fixed = src
        .split_once("const FIXED_LABELS")
        .and_then(|(_, rest)| rest.split_once("= ["))
        .and_then(|(_, rest)| rest.split_once("];"))
        .map_or("", |(block, _)| block);
    forced.extend(fixed.split('&').skip(1).filter_map(|t| {
        let name = t
            .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
            .next()?;
        (!name.is_empty()).then_some(name)
    }));
    assert_eq!(
        statics, forced,
        "statics vs Lazy::force / FIXED_LABELS in metrics::init"
    );
}

// ---------------------------------------------------------------------------------------
// A scrape

/// Every series of `name`: its labels (as `k=v,…`) → value.
fn series(samples: &[Sample], name: &str) -> BTreeMap<String, f64> {
    samples
        .iter()
        .filter(|s| s.name == name)
        .map(|s| {
            let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            (labels.join(","), s.value)
        })
        .collect()
}

/// `series` as exact expectations: `[("route=a,status=200", 3.0)]`.
/// Series created at zero by `metrics::init` and not in `want` must still be zero.
fn expect_series(samples: &[Sample], name: &str, want: &[(&str, f64)], text: &str) {
    let want: BTreeMap<String, f64> = want.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let got: BTreeMap<String, f64> = series(samples, name)
        .into_iter()
        .filter(|(k, v)| *v != 0.0 || want.contains_key(k))
        .collect();
    assert_eq!(got, want, "{name}; the scrape:\n{text}");
}

/// `# TYPE name kind` lines of a scrape.
fn families(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let (name, kind) = l.split_once(' ')?;
            Some((name.to_string(), kind.trim().to_string()))
        })
        .collect()
}

/// `value` with its sealed envelope changed by `edit` (decoded bytes), re-encoded.
fn edit_cookie(value: &str, edit: impl FnOnce(&mut Vec<u8>)) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = b64.decode(value).expect("a sealed cookie is base64url");
    edit(&mut raw);
    b64.encode(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_after_known_traffic_matches_the_catalogue() {
    let echo = EchoServer::start().await;
    let up = echo.url();
    let (_held, dead_port) = refusing_port();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let cfg = GatewayConfig::new(vec![
        route("orders", "/api/orders", &up, "required", ""),
        route(
            "public",
            "/api/public",
            &up,
            "none",
            "rate_limit: { per_client_ip: 3/h }",
        ),
        route(
            "down",
            "/down",
            &dead,
            "none",
            "timeouts: { connect: 1s, read: 2s }",
        ),
    ]);
    let started = now_f64();
    let gw = Gateway::start(&cfg.yaml()).await;
    let http = client();

    // Cookies: one sealed with the gateway's own key for a session it never stored
    // (`expired`), and every way a cookie can fail to open.
    let own = sessions::cipher_of(gw.config_path());
    let sessions = sessions::Sessions::open(gw.config_path()).await;
    let ghost = sessions.new_session("ghost", None, "at-ghost");
    let unstored = own.seal(&ghost.id);
    let tampered = edit_cookie(&unstored, |raw| {
        let last = raw.len() - 1;
        raw[last] ^= 0x01; // the GCM tag
    });
    let version = edit_cookie(&unstored, |raw| raw[0] = raw[0].wrapping_add(1));
    let other_ring = tempfile::tempdir().unwrap();
    let other = write_config(
        other_ring.path(),
        "other.yaml",
        &GatewayConfig::new(cfg.routes.clone()).keys(&["k9"]).yaml(),
    );
    let unknown_key = sessions::cipher_of(&other).seal(&ghost.id);
    let malformed = "not-a-sealed-cookie!".to_string();

    // 3 × public → echo 200 (each a store `rate` call); a 4th over its per-address limit
    // → 429 rate_limited.
    for _ in 0..3 {
        expect_echo(http.get(gw.url("/api/public/x")).send().await.unwrap()).await;
    }
    let resp = http.get(gw.url("/api/public/x")).send().await.unwrap();
    expect_error(resp, 429, "rate_limited").await;
    // 2 × orders without a cookie → 401 no_session (lookup `missing`).
    for _ in 0..2 {
        let resp = http.get(gw.url("/api/orders/1")).send().await.unwrap();
        expect_error(resp, 401, "no_session").await;
    }
    // 4 × orders with cookies that do not open → 401 invalid_session (lookup `invalid`,
    // one unseal failure per reason).
    for bad in [&tampered, &version, &unknown_key, &malformed] {
        let resp = http
            .get(gw.url("/api/orders/1"))
            .header("cookie", session_cookie(bad))
            .send()
            .await
            .unwrap();
        expect_error(resp, 401, "invalid_session").await;
    }
    // 1 × orders with a good cookie for a session the store does not hold → 401
    // session_expired (lookup `expired`, one store `get`).
    let resp = http
        .get(gw.url("/api/orders/1"))
        .header("cookie", session_cookie(&unstored))
        .send()
        .await
        .unwrap();
    expect_error(resp, 401, "session_expired").await;
    // 1 × POST without Origin on an auth route → 403 csrf_violation, before any lookup.
    let resp = http.post(gw.url("/api/orders/1")).send().await.unwrap();
    expect_error(resp, 403, "csrf_violation").await;
    // 1 × a path no route takes → 404 (route `none`).
    let resp = http.get(gw.url("/nope")).send().await.unwrap();
    expect_error(resp, 404, "route_not_found").await;
    // 1 × a route whose upstream port is closed → 502 upstream_unavailable.
    let resp = http.get(gw.url("/down/x")).send().await.unwrap();
    expect_error(resp, 502, "upstream_unavailable").await;

    // Metrics are recorded in the logging phase, after the response: wait for the last.
    let counted = eventually(Duration::from_secs(5), || async {
        let samples = parse(&scrape(&gw).await);
        let total: f64 = series(&samples, "bff_requests_total")
            .iter()
            .filter(|(k, _)| !k.starts_with("route=health"))
            .map(|(_, v)| v)
            .sum();
        total >= 14.0
    })
    .await;
    let text = scrape(&gw).await;
    assert!(counted, "the 14 requests were not all counted:\n{text}");
    let samples = parse(&text);

    // Every family that is exported has HELP and TYPE, with the catalogued type.
    let catalogue = catalogue();
    let exported = families(&text);
    for (name, kind) in &exported {
        if let Some(want) = catalogue.get(name) {
            assert_eq!(kind, want, "TYPE of {name}");
            assert!(
                text.contains(&format!("# HELP {name} ")),
                "no HELP for {name}:\n{text}"
            );
        }
    }
    let bff_exported: BTreeSet<&String> =
        exported.keys().filter(|n| n.starts_with("bff_")).collect();
    for name in &bff_exported {
        assert!(
            catalogue.contains_key(*name),
            "{name} is exported but not catalogued"
        );
    }

    // What this traffic drives: these families must be there, with exact values.
    let driven = [
        "bff_requests_total",
        "bff_request_duration_seconds",
        "bff_upstream_duration_seconds",
        "bff_upstream_errors_total",
        "bff_session_lookups_total",
        "bff_cookie_unseal_failures_total",
        "bff_csrf_rejections_total",
        "bff_rate_limited_total",
        "bff_store_duration_seconds",
        "bff_upstream_healthy",
        "bff_build_info",
    ];
    // Unlabelled families are exported from the start, with zero observations.
    let always = [
        "bff_memory_sessions",
        "bff_session_cache_entries",
        "bff_session_cache_clears_total",
        "bff_live_connections",
        "bff_session_records_under_old_keys",
        "bff_refresh_duration_seconds",
        "bff_refresh_lock_wait_seconds",
        "bff_config_last_reload_success_timestamp_seconds",
    ];
    // Labelled families this traffic cannot touch (no provider: no logins, logouts,
    // refreshes or provider calls; no store failures; no reloads). A labelled family with
    // no series is not exported at all (the prometheus crate prunes it), which is what
    // docs/metrics.md tells dashboards to expect.
    let untouched = ["bff_store_errors_total", "bff_provider_duration_seconds"];
    // Outcome counters are created at zero by `metrics::init`: present, every series 0.
    let zeroed = [
        "bff_refreshes_total",
        "bff_route_tokens_total",
        "bff_logins_total",
        "bff_logouts_total",
        "bff_config_reloads_total",
        "bff_live_connections_closed_total",
        "bff_session_records_by_key",
        "bff_session_cache_total",
    ];
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    covered.extend(driven);
    covered.extend(always);
    covered.extend(untouched);
    covered.extend(zeroed);
    for name in zeroed {
        let series: Vec<&Sample> = samples.iter().filter(|s| s.name == name).collect();
        assert!(!series.is_empty(), "{name} has no zero series:\n{text}");
        assert!(
            series.iter().all(|s| s.value == 0.0),
            "{name} moved although nothing drove it:\n{text}"
        );
    }
    let catalogued: BTreeSet<&str> = catalogue.keys().map(String::as_str).collect();
    assert_eq!(
        covered, catalogued,
        "this test must say what it expects of every catalogued metric"
    );
    for name in driven.iter().chain(always.iter()) {
        assert!(
            text.contains(&format!("# HELP {name} ")) && exported.contains_key(*name),
            "{name} missing from the scrape:\n{text}"
        );
    }
    for name in untouched {
        assert!(
            !exported.contains_key(name),
            "{name} has series although nothing drove it:\n{text}"
        );
    }

    // Requests, by route and status (health checks by the harness are not counted here).
    let requests: BTreeMap<String, f64> = series(&samples, "bff_requests_total")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("route=health"))
        .collect();
    // Every route's `200` series exists from the start, at zero until answered.
    let want: BTreeMap<String, f64> = [
        ("route=down,status=200", 0.0),
        ("route=down,status=502", 1.0),
        ("route=none,status=404", 1.0),
        ("route=orders,status=200", 0.0),
        ("route=orders,status=401", 7.0),
        ("route=orders,status=403", 1.0),
        ("route=public,status=200", 3.0),
        ("route=public,status=429", 1.0),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(requests, want, "bff_requests_total:\n{text}");
    assert!(
        series(&samples, "bff_requests_total")
            .get("route=health,status=200")
            .is_some_and(|v| *v >= 1.0),
        "the harness's /healthz polls are counted under route=health:\n{text}"
    );

    // Request latency: one observation per request, per route (health aside).
    let counts: BTreeMap<String, f64> = series(&samples, "bff_request_duration_seconds_count")
        .into_iter()
        .filter(|(k, _)| k != "route=health")
        .collect();
    let want: BTreeMap<String, f64> = [
        ("route=down", 1.0),
        ("route=none", 1.0),
        ("route=orders", 8.0),
        ("route=public", 4.0),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(counts, want, "bff_request_duration_seconds_count:\n{text}");
    for (route, n) in [
        ("orders", 8.0),
        ("public", 4.0),
        ("down", 1.0),
        ("none", 1.0),
    ] {
        let inf = samples.iter().find(|s| {
            s.name == "bff_request_duration_seconds_bucket"
                && s.labels.get("route").map(String::as_str) == Some(route)
                && s.labels.get("le").map(String::as_str) == Some("+Inf")
        });
        assert_eq!(inf.map(|s| s.value), Some(n), "+Inf bucket of {route}");
    }

    // Upstream latency: only the requests that reached an upstream and got a header back.
    expect_series(
        &samples,
        "bff_upstream_duration_seconds_count",
        &[("route=public", 3.0)],
        &text,
    );
    expect_series(
        &samples,
        "bff_upstream_errors_total",
        &[("kind=unavailable,route=down", 1.0)],
        &text,
    );

    // Sessions and cookies.
    expect_series(
        &samples,
        "bff_session_lookups_total",
        &[
            ("result=expired", 1.0),
            ("result=invalid", 4.0),
            ("result=missing", 2.0),
        ],
        &text,
    );
    expect_series(
        &samples,
        "bff_cookie_unseal_failures_total",
        &[
            ("reason=malformed", 1.0),
            ("reason=tampered", 1.0),
            ("reason=unknown_key", 1.0),
            ("reason=version", 1.0),
        ],
        &text,
    );
    expect_series(
        &samples,
        "bff_csrf_rejections_total",
        &[("route=orders", 1.0)],
        &text,
    );
    expect_series(
        &samples,
        "bff_rate_limited_total",
        &[("kind=client_ip,route=public", 1.0)],
        &text,
    );
    // The store calls: the `get` of the unstored session, and the public route's rate
    // checks.
    expect_series(
        &samples,
        "bff_store_duration_seconds_count",
        &[("op=get", 1.0), ("op=rate", 4.0)],
        &text,
    );

    // Unlabelled histograms: exported, nothing observed.
    expect_series(
        &samples,
        "bff_refresh_duration_seconds_count",
        &[("", 0.0)],
        &text,
    );
    expect_series(
        &samples,
        "bff_refresh_lock_wait_seconds_count",
        &[("", 0.0)],
        &text,
    );
    // Which bffgate this is.
    let build = series(&samples, "bff_build_info");
    assert_eq!(build.len(), 1, "one build_info series:\n{text}");
    let (labels, value) = build.iter().next().unwrap();
    assert_eq!(*value, 1.0);
    assert!(
        labels.contains(&format!("version={}", env!("CARGO_PKG_VERSION"))),
        "{labels}"
    );
    // No session was created in the gateway's memory store.
    expect_series(&samples, "bff_memory_sessions", &[("", 0.0)], &text);
    // The key census: one series per at-rest key id (the one `at_rest_key`: `default`)
    // and `(other)`, all zero in an empty store, and nothing under an old key.
    expect_series(
        &samples,
        "bff_session_records_by_key",
        &[("key_id=(other)", 0.0), ("key_id=default", 0.0)],
        &text,
    );
    expect_series(
        &samples,
        "bff_session_records_under_old_keys",
        &[("", 0.0)],
        &text,
    );
    // Upstream health: the echo upstream in rotation for both routes; the refusing one
    // taken out by its failed connect (for 5 s; the gauge is refreshed every second).
    let echo_addr = up.trim_start_matches("http://").to_string();
    let dead_addr = format!("127.0.0.1:{dead_port}");
    let want_health = [
        (format!("route=orders,upstream={echo_addr}"), 1.0),
        (format!("route=public,upstream={echo_addr}"), 1.0),
        (format!("route=down,upstream={dead_addr}"), 0.0),
    ];
    let want_health: BTreeMap<String, f64> = want_health.into_iter().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    let mut health = series(&samples, "bff_upstream_healthy");
    while health != want_health && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        health = series(&parse(&scrape(&gw).await), "bff_upstream_healthy");
    }
    assert_eq!(health, want_health, "bff_upstream_healthy");

    // The last successful load is this process's start.
    let loaded = series(&samples, "bff_config_last_reload_success_timestamp_seconds");
    let loaded = loaded
        .get("")
        .copied()
        .unwrap_or_else(|| panic!("no gauge:\n{text}"));
    assert!(
        loaded >= started.floor() - 1.0 && loaded <= now_f64() + 1.0,
        "bff_config_last_reload_success_timestamp_seconds = {loaded}, started at {started}"
    );
}
