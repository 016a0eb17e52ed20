//! `bffgate --check --config FILE`: good files pass, bad ones fail naming the key.

use crate::common::{check_config, check_file, key, random_secret, route, secret, GatewayConfig};

/// A valid config with literal secrets and two routes (placeholders filled with fixed ports).
fn base_yaml() -> String {
    let cfg = GatewayConfig::new(vec![
        route(
            "orders",
            "/api/orders",
            "http://127.0.0.1:3002",
            "required",
            "strip_prefix: /api",
        ),
        route("public", "/api/public", "http://127.0.0.1:3002", "none", ""),
    ]);
    cfg.yaml()
        .replace("{LISTEN}", "127.0.0.1:18080")
        .replace("{METRICS}", "127.0.0.1:19090")
        .replace("{DIR}", "/tmp")
}

/// `base_yaml` with `from` replaced by `to` (which must occur).
fn edited(from: &str, to: &str) -> String {
    let base = base_yaml();
    assert!(
        base.contains(from),
        "{from:?} not in the base config:\n{base}"
    );
    base.replacen(from, to, 1)
}

/// Runs the check and asserts it fails with output containing every `needle`.
fn assert_refused(yaml: &str, env: &[(&str, &str)], needles: &[&str]) -> String {
    let (status, out) = check_config(yaml, env);
    assert!(
        !status.success(),
        "--check accepted a bad config:\n{yaml}\noutput:\n{out}"
    );
    for needle in needles {
        assert!(out.contains(needle), "output lacks {needle:?}:\n{out}");
    }
    out
}

#[test]
fn valid_config_passes() {
    let (status, out) = check_config(&base_yaml(), &[]);
    assert!(status.success(), "valid config refused:\n{out}");
}

#[test]
fn unknown_key_is_named() {
    let yaml = edited("  secure: false\n", "  secure: false\n  colour: red\n");
    assert_refused(&yaml, &[], &["cookie", "colour"]);
}

#[test]
fn short_secret_is_named() {
    let short = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 16]);
    let (_, k1) = key("k1");
    let yaml = edited(&k1, &short);
    assert_refused(&yaml, &[], &["cookie.keys[0].secret"]);
}

#[test]
fn missing_env_var_is_named() {
    let (_, k1) = key("k1");
    let yaml = edited(&k1, "${NOPE_NOT_SET}");
    assert_refused(&yaml, &[], &["cookie.keys[0].secret", "NOPE_NOT_SET"]);
    // The same file passes once the variable is set.
    let key = random_secret();
    let (status, out) = check_config(&yaml, &[("NOPE_NOT_SET", &key)]);
    assert!(status.success(), "refused with the variable set:\n{out}");
}

#[test]
fn duplicate_route_name_is_named() {
    let yaml = edited("name: public", "name: orders");
    assert_refused(&yaml, &[], &["routes[1].name", "orders"]);
}

#[test]
fn malformed_upstream_url_is_named() {
    let yaml = edited(
        "upstreams: [\"http://127.0.0.1:3002\"]",
        "upstreams: [\"not a url\"]",
    );
    assert_refused(&yaml, &[], &["routes[0].upstreams[0]"]);
    let yaml = edited(
        "upstreams: [\"http://127.0.0.1:3002\"]",
        "upstreams: [\"ftp://127.0.0.1:21\"]",
    );
    assert_refused(&yaml, &[], &["routes[0].upstreams[0]"]);
}

#[test]
fn same_prefix_with_overlapping_methods_is_ambiguous() {
    let up = "http://127.0.0.1:3002";
    let cfg = GatewayConfig::new(vec![
        format!("{{ name: a, match: {{ path_prefix: /x, methods: [GET, POST] }}, upstreams: [\"{up}\"] }}"),
        format!("{{ name: b, match: {{ path_prefix: /x, methods: [POST, PUT] }}, upstreams: [\"{up}\"] }}"),
    ]);
    let yaml = cfg
        .yaml()
        .replace("{LISTEN}", "127.0.0.1:18080")
        .replace("{METRICS}", "127.0.0.1:19090")
        .replace("{DIR}", "/tmp");
    assert_refused(&yaml, &[], &["routes[1]"]);

    // Disjoint methods on the same prefix are fine.
    let disjoint = yaml.replace("methods: [POST, PUT]", "methods: [PUT, DELETE]");
    let (status, out) = check_config(&disjoint, &[]);
    assert!(status.success(), "disjoint methods refused:\n{out}");
}

#[test]
fn bad_duration_is_named() {
    let yaml = edited("idle_timeout: 30m", "idle_timeout: soon");
    assert_refused(&yaml, &[], &["session.idle_timeout"]);
}

#[test]
fn every_problem_is_listed_with_file_and_key() {
    let yaml = edited("idle_timeout: 30m", "idle_timeout: soon").replacen(
        "name: public",
        "name: orders",
        1,
    );
    let out = assert_refused(
        &yaml,
        &[],
        &["session.idle_timeout", "routes[1].name", "bff.yaml"],
    );
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("session.idle_timeout") || l.contains("routes[1].name"))
        .collect();
    assert!(lines.len() >= 2, "expected one line per problem:\n{out}");
}

#[test]
fn shipped_example_configs_pass() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("conf/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no conf/*.yaml");
    let (cookie_key, session_key) = (secret(1), secret(2));
    let env = [
        ("BFFGATE_COOKIE_KEY", cookie_key.as_str()),
        ("BFFGATE_SESSION_KEY", session_key.as_str()),
        ("BFFGATE_CLIENT_SECRET", "example-client-secret"),
    ];
    for file in files {
        let (status, out) = check_file(&file, &env);
        assert!(status.success(), "{} refused:\n{out}", file.display());
    }
}

#[test]
fn absurd_durations_and_bad_forwarding_settings_are_named() {
    let yaml = edited(
        "  idle_timeout: 30m\n",
        "  idle_timeout: 1000000h\n  refresh_lock_wait: 400d\n",
    )
    .replacen(
        "  threads: 1\n",
        "  threads: 1\n  trusted_proxies: [10.0.0.0/33, 192.0.2.1]\n  client_ip_header: \"bad header\"\n",
        1,
    )
    .replacen(
        "  grace_period_seconds: 0\n",
        "  grace_period_seconds: 18446744073709551615\n",
        1,
    );
    let out = assert_refused(
        &yaml,
        &[],
        &[
            "session.idle_timeout",
            "session.refresh_lock_wait",
            "longer than a year",
            "server.trusted_proxies[0]",
            "server.client_ip_header",
            "server.grace_period_seconds",
        ],
    );
    assert!(!out.contains("trusted_proxies[1]"), "{out}");
    let yaml = edited("  absolute_timeout: 12h\n", "  absolute_timeout: 366d\n");
    let (status, out) = check_config(&yaml, &[]);
    assert!(status.success(), "a year is allowed:\n{out}");
}
