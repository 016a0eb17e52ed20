//! The admin operations: list a user's sessions, revoke sessions by handle, `sub` or `sid`.
//! JSON in, JSON out; revocation uses the store's delete paths (those of `/bff/logout` and
//! back-channel logout).

use super::{error, json, Audit};
use crate::http::ApiError;
use crate::session::SessionStore;
use pingora::protocols::http::ServerSession;
use serde::Deserialize;

/// The path that lists a user's sessions.
const LIST: &str = "/admin/v1/sessions/list";
/// The path that revokes sessions.
const REVOKE: &str = "/admin/v1/sessions/revoke";

/// Every (method, path) the admin listener serves, as `docs/admin-openapi.yaml` describes them.
pub const ENDPOINTS: [(&str, &str); 2] = [("POST", LIST), ("POST", REVOKE)];

/// The largest request body read, in bytes.
const MAX_BODY: usize = 16 * 1024;

/// The longest `sub`, `sid` or handle accepted, in bytes.
const MAX_VALUE: usize = 1024;

/// `POST /admin/v1/sessions/list`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRequest {
    sub: String,
}

/// `POST /admin/v1/sessions/revoke`: exactly one of the three.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    handle: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
}

/// The operation a path names, for the audit line.
pub(super) fn operation_name(path: &str) -> &'static str {
    match path {
        LIST => "list",
        REVOKE => "revoke",
        _ => "unknown",
    }
}

/// The whole request body, at most [`MAX_BODY`] bytes.
async fn body(http: &mut ServerSession) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = http
        .read_request_body()
        .await
        .map_err(|_| ApiError::BadRequest)?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::BodyTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A non-empty value of bounded length.
fn checked(value: String, what: &'static str) -> Result<String, ApiError> {
    if value.is_empty() || value.len() > MAX_VALUE {
        return Err(ApiError::InvalidRequest(what));
    }
    Ok(value)
}

/// Runs the operation of an authenticated call.
pub(super) async fn handle(
    store: &SessionStore,
    http: &mut ServerSession,
    operation: &'static str,
) -> (::http::Response<Vec<u8>>, Audit) {
    let mut audit = Audit {
        operation,
        target: None,
        outcome: "ok",
        count: 0,
    };
    match run(store, http, &mut audit).await {
        Ok(resp) => (resp, audit),
        Err(e) => {
            audit.outcome = e.code();
            (error(e), audit)
        }
    }
}

async fn run(
    store: &SessionStore,
    http: &mut ServerSession,
    audit: &mut Audit,
) -> Result<::http::Response<Vec<u8>>, ApiError> {
    let path = http.req_header().uri.path().to_string();
    if !ENDPOINTS.iter().any(|(_, p)| *p == path) {
        return Err(ApiError::RouteNotFound("no such admin endpoint"));
    }
    if http.req_header().method != ::http::Method::POST {
        return Err(ApiError::MethodNotAllowed("admin calls are POST"));
    }
    let body = body(http).await?;
    if path == LIST {
        let req: ListRequest = serde_json::from_slice(&body)
            .map_err(|_| ApiError::InvalidRequest("the body must be {\"sub\": \"...\"}"))?;
        let sub = checked(req.sub, "`sub` must be 1 to 1024 bytes")?;
        audit.target = Some(("sub", sub.clone()));
        let sessions = store
            .sessions_of(&sub)
            .await
            .map_err(|_| ApiError::StoreUnavailable)?;
        audit.count = sessions.len();
        return Ok(json(
            200,
            &serde_json::json!({ "sub": sub, "sessions": sessions }),
        ));
    }
    let req: RevokeRequest = serde_json::from_slice(&body).map_err(|_| {
        ApiError::InvalidRequest("the body must be one of {\"handle\"}, {\"sub\"}, {\"sid\"}")
    })?;
    let one_of = "give exactly one of `handle`, `sub`, `sid`";
    let revoked = match (req.handle, req.sub, req.sid) {
        (Some(handle), None, None) => {
            let handle = checked(handle, "`handle` must be 64 hex digits")?;
            if !crate::session::is_handle(&handle) {
                return Err(ApiError::InvalidRequest("`handle` must be 64 hex digits"));
            }
            audit.target = Some(("handle", handle.clone()));
            usize::from(
                store
                    .delete_by_handle(&handle)
                    .await
                    .map_err(|_| ApiError::StoreUnavailable)?,
            )
        }
        (None, Some(sub), None) => {
            let sub = checked(sub, "`sub` must be 1 to 1024 bytes")?;
            audit.target = Some(("sub", sub.clone()));
            store
                .delete_by_sub(&sub)
                .await
                .map_err(|_| ApiError::StoreUnavailable)?
        }
        (None, None, Some(sid)) => {
            let sid = checked(sid, "`sid` must be 1 to 1024 bytes")?;
            audit.target = Some(("sid", sid.clone()));
            store
                .delete_by_sid(&sid)
                .await
                .map_err(|_| ApiError::StoreUnavailable)?
        }
        _ => return Err(ApiError::InvalidRequest(one_of)),
    };
    audit.count = revoked;
    if revoked == 0 {
        audit.outcome = "not_found";
    }
    Ok(json(200, &serde_json::json!({ "revoked": revoked })))
}

#[cfg(test)]
mod tests {
    use super::ENDPOINTS;

    /// `docs/openapi.yaml` describes exactly the endpoints served, with their methods.
    #[test]
    fn openapi_paths_are_the_served_endpoints() {
        let doc: serde_yaml::Value =
            serde_yaml::from_str(include_str!("../../docs/admin-openapi.yaml"))
                .expect("openapi yaml");
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
        let mut documented: Vec<(String, String)> = doc["paths"]
            .as_mapping()
            .expect("paths")
            .iter()
            .flat_map(|(path, ops)| {
                let path = path.as_str().expect("path").to_string();
                ops.as_mapping()
                    .expect("operations")
                    .keys()
                    .filter_map(|m| m.as_str())
                    .filter(|m| *m != "parameters")
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        documented.sort();
        let mut served: Vec<(String, String)> = ENDPOINTS
            .iter()
            .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
    }
}
