//! Routing sees what the upstream will see (issue 9): `;` path parameters and every
//! spelling of a dot-segment, absolute-form targets, HTTP/2 `:path` and `:authority`, host
//! routes against `Host`/authority conflicts, and the `server.hosts` allow-list.

mod h1;
mod h2;

use std::net::SocketAddr;

use crate::common::{route, EchoServer, GatewayConfig};

/// The host the gateway answers for in these tests.
pub const API_HOST: &str = "api.example.com";

/// Routes: a catch-all and `/pub` without auth, `/api` with it, and `/hosted` twice: with
/// auth for [`API_HOST`], without for any other host. An answer from the echo upstream
/// means a route without auth took the request; `401 no_session` means one with auth did.
pub fn routes(echo: &EchoServer) -> Vec<String> {
    let up = echo.url();
    vec![
        route("catch-all", "/", &up, "none", ""),
        route("pub", "/pub", &up, "none", ""),
        route("api", "/api", &up, "required", ""),
        format!(
            "{{ name: hosted-api, match: {{ path_prefix: /hosted, host: {API_HOST} }}, upstreams: [\"{up}\"], auth: required }}"
        ),
        route("hosted-any", "/hosted", &up, "none", ""),
    ]
}

/// The gateway config with `server:` keys added (e.g. `hosts: [...]`).
pub fn config(echo: &EchoServer, server: &str) -> String {
    let yaml = GatewayConfig::new(routes(echo)).yaml();
    if server.is_empty() {
        return yaml;
    }
    yaml.replacen("server:\n", &format!("server:\n  {server}\n"), 1)
}

/// One answer read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub body: String,
}

impl Raw {
    /// The JSON error code of the body, if it is one.
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_str(self.body.trim()).ok()?;
        v["code"].as_str().map(str::to_owned)
    }

    /// The echo upstream's view of the request, if it answered.
    pub fn echoed(&self) -> Option<crate::common::Echoed> {
        serde_json::from_str(self.body.trim()).ok()
    }
}

/// Sends `head` (request line and headers, without the blank line) as written, with
/// `Connection: close`, and reads the whole answer.
pub fn send_raw(addr: SocketAddr, head: &str) -> Raw {
    let (status, body) = crate::common::send_raw(addr, head);
    Raw { status, body }
}
