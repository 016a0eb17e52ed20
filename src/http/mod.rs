//! The HTTP vocabulary shared by the proxy and the agent: local responses, the one
//! [`ApiError`], CORS, reading requests, and the seam through which the proxy hands
//! requests to the agent.

mod cors;
mod endpoint;
mod error;
mod forwarded;
mod request;
mod respond;

pub use cors::{allow_local, allow_proxied, allowed_origin, preflight};
pub use endpoint::{AgentEndpoints, Handled};
pub use error::ApiError;
pub use forwarded::{client_addr, client_of, is_forwarding_header, is_trusted};
pub use request::{cookie, host, is_preflight, is_safe_method, is_upgrade, path, query_param};
pub use respond::LocalResponse;

use crate::cookie::SessionCookie;

/// The response for `e`; errors that name no live session also clear the session cookie.
pub fn error_response(e: ApiError, cookie: &SessionCookie) -> LocalResponse {
    let resp = LocalResponse::from(e);
    if e.clears_session_cookie() {
        resp.with_header("set-cookie", cookie.clear_cookie())
    } else {
        resp
    }
}
