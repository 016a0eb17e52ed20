//! Configurations for in-process unit tests (compiled for tests only).

use crate::config::{self, AuthMode, Config, RouteConfig};
use http::Method;
use std::path::Path;

/// The current cookie key (and at-rest key) of test configurations.
pub const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// A retired-but-accepted cookie key.
pub const OLD_KEY: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";
/// The SPA's origin, trusted for credentialed calls.
pub const ORIGIN: &str = "https://app.example";

/// A valid configuration: the memory store, the trusted [`ORIGIN`], the cookie key ring
/// `keys` (YAML flow list items), refresh timings of 30 s / 2 s, and `rest` appended
/// (e.g. a `routes:` block).
pub fn config(keys: &str, rest: &str) -> Config {
    let text = format!(
        "listen: [{{addr: 127.0.0.1:8080}}]\n\
         agent: {{allowed_origins: [\"{ORIGIN}\"]}}\n\
         cookie: {{keys: [{keys}]}}\n\
         session: {{at_rest_key: \"{KEY}\", refresh_before_expiry: 30s, refresh_lock_wait: 2s}}\n\
         {rest}"
    );
    match config::parse(Path::new("test.yaml"), &text, &|_| None) {
        Ok(c) => c,
        Err(e) => panic!("test config is invalid: {e}"),
    }
}

/// [`config`] with the current key first and the old key second.
pub fn config_with_rotation(rest: &str) -> Config {
    config(
        &format!("{{id: k2, secret: \"{KEY}\"}}, {{id: k1, secret: \"{OLD_KEY}\"}}"),
        rest,
    )
}

/// A route with no upstream (for routing tests): `name` on `prefix`, optionally on `host`
/// and `methods`, with session policy `auth`.
pub fn route_config(
    name: &str,
    prefix: &str,
    host: Option<&str>,
    methods: Option<Vec<Method>>,
    auth: AuthMode,
) -> RouteConfig {
    RouteConfig {
        name: name.into(),
        path_prefix: prefix.into(),
        host: host.map(Into::into),
        methods,
        upstreams: Vec::new(),
        strip_prefix: None,
        auth,
        headers_remove: Vec::new(),
        headers_add: Vec::new(),
        connect_timeout: std::time::Duration::from_secs(1),
        read_timeout: std::time::Duration::from_secs(1),
        tls_verify: true,
        health_check: None,
        identity: Default::default(),
        token: Default::default(),
        dpop: true,
        rate_limit: Default::default(),
    }
}
