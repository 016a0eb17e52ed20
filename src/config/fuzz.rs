//! Property test: the loader never panics, whatever the text. It either returns a config or
//! refuses naming the file, with at least one problem that says why.
//!
//! Inputs are arbitrary text, YAML-shaped text built from the schema's keys and awkward
//! values, and the valid base file with such pieces spliced in. Upstream URLs only ever
//! name loopback IPs, so no case waits on DNS. Run more cases with
//! `PROPTEST_CASES=1000000 cargo test --release --lib config::fuzz`.

use super::fixtures::{base, env, KEY};
use super::parse;
use proptest::prelude::*;
use std::path::Path;

const KEYS: &[&str] = &[
    "listen",
    "addr",
    "tls",
    "cert",
    "key",
    "metrics",
    "server",
    "threads",
    "hosts",
    "path_params",
    "grace_period_seconds",
    "pid_file",
    "upstream_ca_file",
    "oidc",
    "issuer",
    "client_id",
    "client_secret",
    "client_auth",
    "scopes",
    "redirect_uri",
    "post_login_redirect",
    "login_timeout",
    "clock_skew",
    "auth_params",
    "id_token_algs",
    "agent",
    "base_path",
    "allowed_origins",
    "csrf_header",
    "cookie",
    "name",
    "domain",
    "path",
    "same_site",
    "secure",
    "keys",
    "id",
    "secret",
    "session",
    "store",
    "redis",
    "url",
    "cluster",
    "sentinel",
    "master_name",
    "nodes",
    "memory",
    "max_sessions",
    "at_rest_key",
    "idle_timeout",
    "absolute_timeout",
    "refresh_before_expiry",
    "refresh_lock_wait",
    "access_log",
    "routes",
    "match",
    "path_prefix",
    "host",
    "methods",
    "upstreams",
    "strip_prefix",
    "auth",
    "headers",
    "remove",
    "add",
    "timeouts",
    "connect",
    "read",
    "tls_verify",
    "health_check",
    "interval",
    "unknown",
];

fn scalar() -> impl Strategy<Value = String> {
    let fixed = prop_oneof![
        Just("127.0.0.1:8080"),
        Just("[::1]:0"),
        Just("http://127.0.0.1:1"),
        Just("https://127.0.0.1:1/x"),
        Just("redis://127.0.0.1:1"),
        Just("${KEY}"),
        Just("${NOPE}"),
        Just("${"),
        Just("file:/nonexistent/secret"),
        Just("file:"),
        Just("30s"),
        Just("0s"),
        Just("18446744073709551615h"),
        Just("99999999999999999999d"),
        Just("-1"),
        Just("18446744073709551616"),
        Just("0"),
        Just("~"),
        Just("true"),
        Just("none"),
        Just("required"),
        Just("strict"),
        Just("refuse"),
        Just("/api"),
        Just("/"),
        Just("/.."),
        Just("a.test"),
        Just("__Host-x"),
        Just("\"\""),
        Just("'"),
        Just("\""),
        Just("&a x"),
        Just("*a"),
        Just("!!binary AAAA"),
        Just("%"),
        Just("é\u{0}"),
    ]
    .prop_map(str::to_string);
    prop_oneof![4 => fixed, 1 => Just(KEY.to_string()), 1 => "[a-z0-9 ]{0,6}"]
}

fn value(depth: u32) -> BoxedStrategy<String> {
    let leaf = scalar().boxed();
    if depth == 0 {
        return leaf;
    }
    let key = proptest::sample::select(KEYS);
    prop_oneof![
        3 => leaf,
        1 => proptest::collection::vec(value(depth - 1), 0..4)
            .prop_map(|v| format!("[{}]", v.join(", "))),
        1 => proptest::collection::vec((key, value(depth - 1)), 0..4).prop_map(|v| {
            let items: Vec<String> = v.into_iter().map(|(k, x)| format!("{k}: {x}")).collect();
            format!("{{{}}}", items.join(", "))
        }),
    ]
    .boxed()
}

/// A YAML-shaped file: top-level keys with flow values, block lists and nested blocks.
fn yamlish() -> impl Strategy<Value = String> {
    let key = proptest::sample::select(KEYS);
    let line = (key, 0..4usize, prop::bool::ANY, value(3)).prop_map(|(k, indent, dash, v)| {
        let pad = "  ".repeat(indent);
        let dash = if dash { "- " } else { "" };
        format!("{pad}{dash}{k}: {v}\n")
    });
    proptest::collection::vec(line, 0..12).prop_map(|v| v.concat())
}

/// The valid base file with pieces spliced in at places chosen in the original text.
fn spliced() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        scalar(),
        yamlish(),
        Just("\n".to_string()),
        Just(": ".into())
    ];
    proptest::collection::vec((any::<prop::sample::Index>(), piece), 1..4).prop_map(|edits| {
        let text = base();
        let mut at: Vec<(usize, String)> = edits
            .into_iter()
            .map(|(i, p)| {
                let mut pos = i.index(text.len() + 1);
                while !text.is_char_boundary(pos) {
                    pos -= 1;
                }
                (pos, p)
            })
            .collect();
        at.sort_by_key(|e| std::cmp::Reverse(e.0));
        let mut out = text;
        for (pos, p) in at {
            out.insert_str(pos, &p);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn the_loader_never_panics(
        text in prop_oneof![any::<String>(), yamlish(), spliced(), "[ -~\n]{0,200}"]
    ) {
        match parse(Path::new("t.yaml"), &text, &env) {
            Ok(c) => prop_assert!(!c.listen.is_empty()),
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                prop_assert_eq!(e.file.as_path(), Path::new("t.yaml"));
                prop_assert!(e.problems.iter().all(|p| !p.reason.is_empty()));
            }
        }
    }
}
