//! The HTTP vocabulary shared by the proxy and the agent: local responses, the one
//! [`ApiError`] (JSON for programs, a page for a person's browser), CORS, reading requests,
//! and the seam through which the proxy hands requests to the agent.

mod cors;
mod endpoint;
mod error;
mod forwarded;
mod page;
mod request;
mod request_id;
mod respond;

pub use cors::{allow_local, allow_proxied, allowed_origin, preflight};
pub use endpoint::{AgentEndpoints, Handled};
pub use error::ApiError;
pub use forwarded::{client_addr, client_and_trust, client_of, is_forwarding_header, is_trusted};
pub use page::{error_page, escape_html, wants_page};
pub use request::{cookie, host, is_preflight, is_safe_method, is_upgrade, path, query_param};
pub use request_id::{request_id, HEADER as REQUEST_ID_HEADER};
pub use respond::LocalResponse;

use crate::live::LiveConfig;
use pingora::http::RequestHeader;

/// The response for `e` to `req`: a page for a browser navigation ([`wants_page`]), else
/// the JSON error. Errors that name no live session also clear the session cookie.
pub fn error_response(e: ApiError, req: &RequestHeader, live: &LiveConfig) -> LocalResponse {
    let cookie = &live.cookie;
    let resp = if wants_page(req) {
        let login = format!("{}/login", live.agent.base_path);
        error_page(e, live.home.as_deref(), &login)
    } else {
        LocalResponse::from(e)
    };
    if e.clears_session_cookie() {
        resp.with_header("set-cookie", cookie.clear_cookie())
    } else {
        resp
    }
}
