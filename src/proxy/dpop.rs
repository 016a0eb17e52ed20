//! DPoP towards upstreams: the nonces an upstream hands out, and its `use_dpop_nonce`
//! challenge answered by one more attempt instead of passing the 401 to the client. The
//! proof itself is made on every attempt by `upstream.rs`.

use super::RequestCtx;
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};

/// Keeps the DPoP nonce an upstream's answer carries (per upstream), and turns its
/// `401` `use_dpop_nonce` challenge into a retryable error once per request.
///
/// # Errors
/// The retryable error that makes Pingora send the request again.
pub(super) fn answer_nonce_challenge(resp: &ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
    if ctx.dpop.is_none() {
        return Ok(());
    }
    let Some(route) = &ctx.route else {
        return Ok(());
    };
    if let Some(nonce) = resp
        .headers
        .get(crate::dpop::NONCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|n| !n.is_empty() && n.len() <= 512)
    {
        route.set_dpop_nonce(ctx.upstream_index, nonce);
        let challenged = resp.status.as_u16() == 401
            && resp
                .headers
                .get_all(::http::header::WWW_AUTHENTICATE)
                .iter()
                .any(|v| crate::dpop::asks_for_nonce(v.as_bytes()));
        if challenged && !ctx.dpop_retried {
            ctx.dpop_retried = true;
            let mut e = Error::explain(
                ErrorType::HTTPStatus(401),
                "the upstream asked for a DPoP nonce",
            );
            e.set_retry(true);
            return Err(e);
        }
    }
    Ok(())
}
