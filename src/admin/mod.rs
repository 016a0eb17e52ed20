//! The admin API: an operator lists a user's sessions and revokes them, on a listener of its
//! own (`admin.addr`), never on the public ones.
//!
//! Every call is checked in order: the caller's address against `admin.allow` (403
//! `admin_forbidden`), then its `Authorization: Bearer` token against `admin.token`,
//! compared in constant time (401 `admin_unauthorized`). Both come from an [`AccessHandle`]
//! the config reloader swaps, so a new token or network list is live without a restart
//! (the listener's address is not). The operations (`ops.rs`) take and
//! give JSON and are described in `docs/admin-openapi.yaml`; [`ENDPOINTS`] is what is served, and
//! a test keeps the two equal. Every call, refused or not, writes one line on the
//! `bffgate::audit` target: caller, operation, target, outcome and count (never a token).
//! `client.rs` is the other side: the `bffgate admin` command.

pub mod client;
mod ops;

use crate::config::AdminConfig;
use crate::http::ApiError;
use crate::session::SessionStore;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::services::listening::Service;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub use ops::ENDPOINTS;

/// The audit log's target.
pub const AUDIT_TARGET: &str = "bffgate::audit";

/// Who may call: the token (as its SHA-256) and the allowed networks.
pub struct AdminAccess {
    token_digest: [u8; 32],
    allow: Vec<ipnet::IpNet>,
}

/// The access rules in force, swapped whole on configuration reload.
pub type AccessHandle = Arc<ArcSwap<AdminAccess>>;

impl AdminAccess {
    /// The rules of `config`.
    pub fn new(config: &AdminConfig) -> Self {
        AdminAccess {
            token_digest: Sha256::digest(config.token.as_bytes()).into(),
            allow: config.allow.clone(),
        }
    }

    /// A swappable handle holding the rules of `config`.
    pub fn handle(config: &AdminConfig) -> AccessHandle {
        Arc::new(ArcSwap::from_pointee(Self::new(config)))
    }

    /// Whether `ip` may call (any address when `admin.allow` is empty).
    fn allowed(&self, ip: Option<IpAddr>) -> bool {
        self.allow.is_empty() || ip.is_some_and(|ip| self.allow.iter().any(|net| net.contains(&ip)))
    }

    /// Whether the request carries the admin token. Both sides are hashed first, so the
    /// comparison takes the same time whatever the presented token's length.
    fn authorized(&self, http: &ServerSession) -> bool {
        let presented = http
            .req_header()
            .headers
            .get(::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(presented) = presented else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        digest.ct_eq(&self.token_digest).into()
    }
}

/// The admin API over a session store.
pub struct AdminApi {
    store: SessionStore,
    access: AccessHandle,
}

/// What one call did, for its audit line.
pub(crate) struct Audit {
    /// The operation (`list`, `revoke`), or `unknown` for a path that is none.
    pub operation: &'static str,
    /// What it was about: `sub`, `sid` or `handle`, and the value.
    pub target: Option<(&'static str, String)>,
    /// `ok`, `not_found`, or the error code.
    pub outcome: &'static str,
    /// Sessions listed or revoked.
    pub count: usize,
}

impl AdminApi {
    /// The listening service (plain HTTP on `addr`), checking callers against `access`.
    pub fn service(addr: SocketAddr, store: SessionStore, access: AccessHandle) -> Service<Self> {
        let mut service = Service::new("bffgate admin".to_string(), AdminApi { store, access });
        service.add_tcp(&addr.to_string());
        service
    }
}

/// A JSON response, framed and not cacheable.
fn json(status: u16, body: &serde_json::Value) -> ::http::Response<Vec<u8>> {
    let body = body.to_string().into_bytes();
    let mut resp = ::http::Response::new(Vec::new());
    *resp.status_mut() =
        ::http::StatusCode::from_u16(status).unwrap_or(::http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = resp.headers_mut();
    headers.insert(
        ::http::header::CONTENT_TYPE,
        ::http::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        ::http::header::CACHE_CONTROL,
        ::http::HeaderValue::from_static("no-store"),
    );
    headers.insert(::http::header::CONTENT_LENGTH, body.len().into());
    *resp.body_mut() = body;
    resp
}

/// The JSON error answer for `e`.
pub(crate) fn error(e: ApiError) -> ::http::Response<Vec<u8>> {
    json(
        e.status(),
        &serde_json::json!({ "code": e.code(), "message": e.message() }),
    )
}

/// Writes the audit line of one call.
fn audit(caller: Option<IpAddr>, a: &Audit) {
    let caller = caller.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let (kind, value) = a
        .target
        .as_ref()
        .map_or(("none", ""), |(k, v)| (*k, v.as_str()));
    tracing::info!(
        target: AUDIT_TARGET,
        caller = %caller,
        operation = a.operation,
        target_kind = kind,
        target = value,
        outcome = a.outcome,
        count = a.count,
        "admin call"
    );
}

#[async_trait]
impl ServeHttp for AdminApi {
    /// Checks the caller, runs the operation, answers JSON and writes the audit line.
    async fn response(&self, http: &mut ServerSession) -> ::http::Response<Vec<u8>> {
        let caller = http
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip().to_canonical());
        let operation = ops::operation_name(http.req_header().uri.path());
        let access = self.access.load();
        let refused = if !access.allowed(caller) {
            Some(ApiError::AdminForbidden)
        } else if !access.authorized(http) {
            Some(ApiError::AdminUnauthorized)
        } else {
            None
        };
        let (resp, record) = match refused {
            Some(e) => (
                error(e),
                Audit {
                    operation,
                    target: None,
                    outcome: e.code(),
                    count: 0,
                },
            ),
            None => ops::handle(&self.store, http, operation).await,
        };
        audit(caller, &record);
        resp
    }
}
