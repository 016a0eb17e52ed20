//! Property test: the loader never panics, whatever the text. It either returns a config or
//! refuses naming the file, with at least one problem that says why.
//!
//! Inputs are arbitrary text, YAML-shaped text built from the schema's keys and awkward
//! values, the valid base file with such pieces spliced in, and (most often) the base file
//! with schema-shaped `server`, `agent` and `routes` sections, which reach the checkers. Upstream URLs only ever
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
    "cache",
    "window",
    "max_entries",
    "max_bytes",
    "at_rest_key",
    "at_rest_keys",
    "key_census_interval",
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
        Just("64MiB"),
        Just("0"),
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

/// A value that is always valid YAML: a [`scalar`] as a quoted string, or a plain number,
/// boolean or duration, so that the text reaches the checkers rather than the YAML parser.
fn quoted() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => scalar().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        1 => prop_oneof![Just("2"), Just("0"), Just("true"), Just("30s"), Just("/api")]
            .prop_map(str::to_string),
    ]
}

/// `key: value` for each present field, as a flow mapping.
fn flow(fields: Vec<(&str, Option<String>)>) -> String {
    let items: Vec<String> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| format!("{k}: {v}")))
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// The valid base file plus `server`, `agent` and `routes` sections in the schema's shape,
/// each field present or not, its value awkward or not: what reaches the section checkers.
fn schema_shaped() -> impl Strategy<Value = String> {
    let opt = || prop::option::of(quoted());
    let list = || {
        prop::option::of(
            proptest::collection::vec(quoted(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
        )
    };
    let server = (list(), opt(), opt()).prop_map(|(hosts, params, threads)| {
        flow(vec![
            ("hosts", hosts),
            ("path_params", params),
            ("threads", threads),
        ])
    });
    let agent = (opt(), list(), opt()).prop_map(|(base, origins, csrf)| {
        flow(vec![
            ("base_path", base),
            ("allowed_origins", origins),
            ("csrf_header", csrf),
        ])
    });
    let matcher = (opt(), opt(), list())
        .prop_map(|(p, h, m)| flow(vec![("path_prefix", p), ("host", h), ("methods", m)]));
    let route = (opt(), matcher, list(), opt(), opt(), (opt(), opt(), opt())).prop_map(
        |(name, matcher, ups, auth, strip, (connect, read, interval))| {
            flow(vec![
                ("name", name),
                ("match", Some(matcher)),
                ("upstreams", ups),
                ("auth", auth),
                ("strip_prefix", strip),
                (
                    "timeouts",
                    Some(flow(vec![("connect", connect), ("read", read)])),
                ),
                (
                    "health_check",
                    interval.map(|i| format!("{{interval: {i}}}")),
                ),
            ])
        },
    );
    (server, agent, proptest::collection::vec(route, 0..3)).prop_map(|(server, agent, routes)| {
        let routes: String = routes.iter().map(|r| format!("  - {r}\n")).collect();
        format!(
            "{}server: {server}\nagent: {agent}\nroutes:\n{routes}",
            base()
        )
    })
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
        text in prop_oneof![
            1 => any::<String>(),
            1 => yamlish(),
            1 => spliced(),
            1 => "[ -~\n]{0,200}",
            4 => schema_shaped(),
        ]
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
