//! Test fixtures shared by the section tests: a minimal valid file and a way to list the
//! problems an edited copy of it has.

use super::{parse, ConfigProblem};
use std::path::Path;

/// A valid 32-byte key, base64.
pub(super) const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The environment: only `KEY` is set.
pub(super) fn env(name: &str) -> Option<String> {
    (name == "KEY").then(|| KEY.to_string())
}

/// The smallest valid file: one listener, one cookie key (via `${KEY}`), an at-rest key.
pub(super) fn base() -> String {
    format!(
        "listen: [{{addr: 127.0.0.1:8080}}]\ncookie: {{keys: [{{id: k1, secret: \"${{KEY}}\"}}]}}\nsession: {{at_rest_key: \"{KEY}\"}}\n"
    )
}

/// Every problem `text` has (none if it is valid).
pub(super) fn problems(text: &str) -> Vec<ConfigProblem> {
    match parse(Path::new("t.yaml"), text, &env) {
        Ok(_) => Vec::new(),
        Err(e) => e.problems,
    }
}

/// The keys of every problem `text` has, in order.
pub(super) fn problem_keys(text: &str) -> Vec<String> {
    problems(text).into_iter().map(|p| p.key).collect()
}

/// [`base`] with one route (`extra` appended to its keys, block style at 4 spaces) and,
/// when `oidc`, a complete provider section.
pub(super) fn with_routes_and_oidc(extra: &str, oidc: bool) -> String {
    let provider = if oidc {
        "oidc:\n  issuer: https://idp.test\n  client_id: bff\n  client_secret: s3cret\n  redirect_uri: https://api.test/bff/callback\n  post_login_redirect: https://www.test/\n"
    } else {
        ""
    };
    format!(
        "{}{provider}routes:\n  - name: r\n    match: {{path_prefix: /api}}\n    upstreams: [http://127.0.0.1:1]\n    {extra}\n",
        base()
    )
}
