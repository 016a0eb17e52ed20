//! Property tests: the router against models of how lenient upstreams resolve a path.
//!
//! Each model is written here from its description, independently of [`crate::path`]:
//! - decode-first (Spring, Jetty): percent-decode once, `\` as `/`, each segment's `;`
//!   parameters removed, dot-segments resolved, empty segments merged;
//! - parameters-first (Tomcat): `;` parameters removed from each raw segment, then the same
//!   without removing a decoded `;`.
//!
//! The property: a path the router accepts goes to the route the model's path would get,
//! whichever model the upstream follows. Run more cases with
//! `PROPTEST_CASES=1000000 cargo test --release --lib path_props`.

use super::{RouteMatch, RouteTable};
use crate::config::{AuthMode, RouteConfig};
use crate::path::PathParams;
use http::Method;
use proptest::prelude::*;

fn route(name: &str, prefix: &str, auth: AuthMode) -> RouteConfig {
    crate::live::testing::route_config(name, prefix, None, None, auth)
}

fn table() -> RouteTable {
    RouteTable::new(&[
        route("catch-all", "/", AuthMode::None),
        route("pub", "/pub", AuthMode::None),
        route("api", "/api", AuthMode::Required),
        route("secret", "/api/secret", AuthMode::Required),
        route("pub-api", "/pub/api", AuthMode::Optional),
        route("x", "/x", AuthMode::None),
    ])
}

fn label(m: &RouteMatch) -> String {
    match m {
        RouteMatch::Found(r) => r.config.name.clone(),
        RouteMatch::MethodNotAllowed => "405".into(),
        RouteMatch::NotFound => "404".into(),
    }
}

/// Percent-decodes once; a `%` not followed by two hex digits stays as it is.
fn decode_once(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Resolves `.`, `..` and empty segments of a `/`-separated path.
fn resolve_dots(segments: Vec<String>) -> String {
    let mut stack: Vec<String> = Vec::new();
    for seg in segments {
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            _ => stack.push(seg),
        }
    }
    format!("/{}", stack.join("/"))
}

fn cut_params(seg: &str) -> String {
    seg.split(';').next().unwrap_or("").to_string()
}

fn model_decode_first(raw: &str) -> String {
    let decoded = String::from_utf8_lossy(&decode_once(raw.as_bytes())).replace('\\', "/");
    resolve_dots(decoded.split('/').map(cut_params).collect())
}

fn model_params_first(raw: &str) -> String {
    let stripped: Vec<String> = raw.split('/').map(cut_params).collect();
    let decoded =
        String::from_utf8_lossy(&decode_once(stripped.join("/").as_bytes())).replace('\\', "/");
    resolve_dots(decoded.split('/').map(str::to_string).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    /// A path the router accepts is routed where both models route it; with
    /// `path_params: refuse`, no accepted path holds a `;` in any spelling.
    #[test]
    fn router_agrees_with_lenient_upstreams(
        raw in prop_oneof![
            crate::path::tests::segmented_path(),
            crate::path::tests::path_like(),
            "/[ -~]{0,24}",
        ]
    ) {
        let t = table();
        let get = Method::GET;
        if let Ok(found) = t.find_checked(None, &get, &raw, PathParams::StripForRouting) {
            for model in [model_decode_first(&raw), model_params_first(&raw)] {
                let expected = t.find(None, &get, &model);
                prop_assert_eq!(label(&found), label(&expected), "{} reads as {}", raw, model);
            }
        }
        if t.find_checked(None, &get, &raw, PathParams::Refuse).is_ok() {
            prop_assert!(!raw.contains(';') && !raw.to_ascii_lowercase().contains("%3b"));
        }
    }
}

#[test]
fn the_issue_examples_hold() {
    let t = table();
    let get = |raw: &str| {
        t.find_checked(None, &Method::GET, raw, PathParams::StripForRouting)
            .map(|m| label(&m))
    };
    assert!(get("/pub/..;/api/secret").is_err());
    assert_eq!(model_params_first("/pub/..;/api/secret"), "/api/secret");
    assert_eq!(get("/api;x=1/secret").as_deref(), Ok("secret"));
    assert_eq!(model_decode_first("/api;x=1/secret"), "/api/secret");
}
