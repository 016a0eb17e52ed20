//! `GET /session` (who is logged in, until when, without any token) and `GET /userinfo`
//! (the provider's userinfo for the session's access token).

use super::{provider_failure, Agent};
use crate::guard::{resealed_cookie, Lookup};
use crate::http::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use crate::oidc::OidcError;
use pingora::proxy::Session as HttpSession;
use serde_json::json;

impl Agent {
    /// `GET /session`: `authenticated: false` (clearing a dead cookie) or the session's
    /// subject, allowed claims and ends.
    pub(super) async fn session(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        match self.guard.lookup(http.req_header(), live).await {
            Lookup::Found { session, reseal } => {
                let resp = LocalResponse::json(
                    200,
                    &json!({
                        "authenticated": true,
                        "sub": session.sub,
                        "claims": session.claims,
                        "expires_at": session.expires_at,
                        "access_token_expires_at": session.tokens.access_expires_at,
                    }),
                );
                Ok(if reseal {
                    resp.with_header("set-cookie", resealed_cookie(live, &session))
                } else {
                    resp
                })
            }
            Lookup::Missing => Ok(LocalResponse::json(200, &json!({ "authenticated": false }))),
            Lookup::Invalid(_) | Lookup::Expired => {
                Ok(LocalResponse::json(200, &json!({ "authenticated": false }))
                    .with_header("set-cookie", live.cookie.clear_cookie()))
            }
            Lookup::StoreFailed(_) => Err(ApiError::StoreUnavailable),
        }
    }

    /// `GET /userinfo`: the provider's answer for the session's access token.
    pub(super) async fn userinfo(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let session = self.guard.session(http.req_header(), live).await?;
        match self.oidc.userinfo(&session.tokens.access_token).await {
            Ok(info) => Ok(LocalResponse::json(200, &info)),
            Err(OidcError::Rejected(_) | OidcError::InvalidGrant) => Err(ApiError::TokenRejected),
            Err(e) => Err(provider_failure(&e)),
        }
    }
}
