//! Helpers for OAuth-agent tests against the real provider (`common/provider.rs`):
//!
//! * [`OidcBlock`] — the gateway's `oidc:` section, appended to a [`super::GatewayConfig`]
//!   template; its `redirect_uri` uses the `{LISTEN}` placeholder, so it names the port the
//!   gateway is started on.
//! * [`LogoutRelay`] — a loopback HTTP relay put between the provider and bffgate's
//!   back-channel logout endpoint: it records every logout token the provider sends and
//!   forwards the request unchanged, answering with bffgate's status. Tests replay the
//!   recorded tokens.
//! * small readers for `Set-Cookie` and JWT payloads.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Where the SPA lands after login when no `return_to` is given (on the allowed origin).
pub const POST_LOGIN: &str = "http://app.test/home";
/// Sent as `post_logout_redirect_uri` (registered at the provider).
pub const POST_LOGOUT: &str = "http://app.test/bye";

/// The gateway's `oidc:` block.
#[derive(Clone, Debug)]
pub struct OidcBlock {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// `oidc.client_auth`; `None` keeps the default (`client_secret_basic`).
    pub client_auth: Option<String>,
    /// `oidc.session_claims`; `None` keeps the default.
    pub session_claims: Option<Vec<String>>,
    /// More `oidc` keys, each a line indented two spaces (e.g. `  dpop: true\n`).
    pub extra: String,
}

impl OidcBlock {
    pub fn new(issuer: &str, client_id: &str, client_secret: &str) -> OidcBlock {
        OidcBlock {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            client_auth: None,
            session_claims: None,
            extra: String::new(),
        }
    }

    /// The block for `provider`'s issuer and client, with `extra` `oidc` lines.
    pub fn of(provider: &super::provider::Provider, extra: &str) -> OidcBlock {
        OidcBlock {
            extra: extra.to_owned(),
            ..OidcBlock::new(
                &provider.base_url(),
                provider.client_id(),
                provider.client_secret(),
            )
        }
    }

    /// The YAML, with `{LISTEN}` left in `redirect_uri` for [`super::Gateway::start`].
    pub fn yaml(&self) -> String {
        let claims = match &self.session_claims {
            Some(c) => format!("  session_claims: [{}]\n", c.join(", ")),
            None => String::new(),
        };
        let auth = match &self.client_auth {
            Some(a) => format!("  client_auth: {a}\n"),
            None => String::new(),
        };
        format!(
            "oidc:\n  issuer: \"{}\"\n  client_id: \"{}\"\n  client_secret: \"{}\"\n  \
             redirect_uri: \"http://{{LISTEN}}/bff/callback\"\n  \
             post_login_redirect: \"{POST_LOGIN}\"\n  post_logout_redirect: \"{POST_LOGOUT}\"\n{auth}{claims}{}",
            self.issuer, self.client_id, self.client_secret, self.extra
        )
    }

    /// A whole gateway template: `base` (a [`super::GatewayConfig::yaml`]) plus this block.
    pub fn append_to(&self, base: &str) -> String {
        let mut t = base.to_owned();
        if !t.ends_with('\n') {
            t.push('\n');
        }
        t.push_str(&self.yaml());
        t
    }
}

// ---------------------------------------------------------------------------------------
// Back-channel logout relay

#[derive(Default)]
struct RelayState {
    target: Option<String>,
    tokens: Vec<String>,
    statuses: Vec<u16>,
}

/// A loopback relay for back-channel logout requests (see the module docs).
pub struct LogoutRelay {
    addr: SocketAddr,
    state: Arc<Mutex<RelayState>>,
    task: JoinHandle<()>,
}

impl LogoutRelay {
    /// Binds `127.0.0.1:0`; requests are answered 503 until [`LogoutRelay::forward_to`].
    pub async fn start() -> LogoutRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let state = Arc::new(Mutex::new(RelayState::default()));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .expect("relay client");
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let st = Arc::clone(&st);
                let http = http.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| relay(req, Arc::clone(&st), http.clone()));
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        LogoutRelay { addr, state, task }
    }

    /// The URL to register as the client's `backchannel_logout_uri`.
    pub fn url(&self) -> String {
        format!("http://{}/backchannel-logout", self.addr)
    }

    /// Forward to this URL (bffgate's back-channel logout endpoint) from now on.
    pub fn forward_to(&self, url: &str) {
        self.state.lock().unwrap().target = Some(url.to_owned());
    }

    /// Every `logout_token` received so far, in order.
    pub fn tokens(&self) -> Vec<String> {
        self.state.lock().unwrap().tokens.clone()
    }

    /// bffgate's status for each relayed request, in order.
    pub fn statuses(&self) -> Vec<u16> {
        self.state.lock().unwrap().statuses.clone()
    }
}

impl Drop for LogoutRelay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    req: Request<Incoming>,
    state: Arc<Mutex<RelayState>>,
    http: reqwest::Client,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-www-form-urlencoded")
        .to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let token = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned());
    let target = {
        let mut st = state.lock().unwrap();
        if let Some(t) = token {
            st.tokens.push(t);
        }
        st.target.clone()
    };
    let (status, answer) = match target {
        None => (503, Bytes::new()),
        Some(url) => match http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
        {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.bytes().await.unwrap_or_default())
            }
            Err(_) => (502, Bytes::new()),
        },
    };
    state.lock().unwrap().statuses.push(status);
    Ok(Response::builder()
        .status(status)
        .body(Full::new(answer))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

// ---------------------------------------------------------------------------------------
// Small readers

/// Every `Set-Cookie` header value of a response.
pub fn set_cookie_headers(headers: &reqwest::header::HeaderMap) -> Vec<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

/// The whole `Set-Cookie` header that sets cookie `name`, if any.
pub fn set_cookie_for(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    set_cookie_headers(headers).into_iter().find(|h| {
        h.split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .is_some_and(|(n, _)| n.trim() == name)
    })
}

/// The value a `Set-Cookie` header gives its cookie.
pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default()
}

/// The attributes of a `Set-Cookie` header after the `name=value` pair, trimmed.
pub fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

/// The JSON payload of a compact JWT (not verified).
pub fn jwt_payload(jwt: &str) -> serde_json::Value {
    let part = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}
