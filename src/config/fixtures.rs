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
