//! Routing sees what the upstream will see (issue 9): `;` path parameters and every
//! spelling of a dot-segment, absolute-form targets, HTTP/2 `:path` and `:authority`, host
//! routes against `Host`/authority conflicts, and the `server.hosts` allow-list.

mod h1;
mod h2;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

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
    let mut stream = TcpStream::connect(addr).expect("connect gateway");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("read timeout");
    let req = format!("{head}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(req.as_bytes()).expect("write request");
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?} for {head:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Raw {
        status,
        body: body.to_owned(),
    }
}
