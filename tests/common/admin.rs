//! The admin API from a test: the `admin:` block appended to a gateway template, and calls
//! to its listener.

use std::net::SocketAddr;
use std::path::Path;

use super::free_port;

/// A 44-character admin token (what `bffgate --gen-key` prints).
pub const TOKEN: &str = "c2VjcmV0LWFkbWluLXRva2VuLWZvci10ZXN0cy0wMDAw";

/// The gateway's `admin:` section.
#[derive(Clone, Debug)]
pub struct AdminBlock {
    /// `admin.addr` (a free loopback port).
    pub addr: SocketAddr,
    /// `admin.token` as written: the token itself or `file:/path`.
    pub token: String,
    /// `admin.allow`.
    pub allow: Vec<String>,
}

impl AdminBlock {
    /// A free loopback port, the token [`TOKEN`] written in the file, any caller.
    pub fn new() -> AdminBlock {
        AdminBlock {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            token: TOKEN.to_owned(),
            allow: Vec::new(),
        }
    }

    /// The token read from `file` (which this writes).
    pub fn token_file(mut self, file: &Path) -> AdminBlock {
        std::fs::write(file, format!("{TOKEN}\n")).expect("write token file");
        self.token = format!("file:{}", file.display());
        self
    }

    /// Only callers from these networks.
    pub fn allow(mut self, nets: &[&str]) -> AdminBlock {
        self.allow = nets.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// `base` (a gateway template) with this section appended.
    pub fn append_to(&self, base: &str) -> String {
        let mut t = base.to_owned();
        if !t.ends_with('\n') {
            t.push('\n');
        }
        let allow: Vec<String> = self.allow.iter().map(|n| format!("\"{n}\"")).collect();
        t.push_str(&format!(
            "admin:\n  addr: \"{}\"\n  token: \"{}\"\n  allow: [{}]\n",
            self.addr,
            self.token,
            allow.join(", ")
        ));
        t
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `POST path` with `body` and the bearer `token` (`None`: no `Authorization`).
    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let mut req = super::client()
            .post(format!("{}{path}", self.url()))
            .json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("admin request")
    }

    /// A call with the right token that must answer 200: its JSON.
    pub async fn call(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let resp = self.post(path, Some(TOKEN), &body).await;
        let status = resp.status();
        let text = resp.text().await.expect("admin answer");
        assert_eq!(status, 200, "{path} {body}: {text}");
        serde_json::from_str(&text).expect("admin JSON")
    }

    /// `POST /admin/v1/sessions/list {"sub"}`: the sessions.
    pub async fn list(&self, sub: &str) -> Vec<serde_json::Value> {
        let answer = self
            .call("/admin/v1/sessions/list", serde_json::json!({ "sub": sub }))
            .await;
        answer["sessions"].as_array().expect("sessions").clone()
    }

    /// `POST /admin/v1/sessions/revoke` with `body`: how many were revoked.
    pub async fn revoke(&self, body: serde_json::Value) -> u64 {
        let answer = self.call("/admin/v1/sessions/revoke", body).await;
        answer["revoked"].as_u64().expect("revoked count")
    }
}
