//! `POST /refresh`: refresh the session's access token now (single flight with the
//! proxy's inline refreshes, through the guard).

use super::Agent;
use crate::guard::When;
use crate::http::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use pingora::proxy::Session as HttpSession;
use serde_json::json;

impl Agent {
    /// Refreshes now and answers the new access token's expiry (never the token).
    pub(super) async fn refresh(
        &self,
        http: &HttpSession,
        live: &LiveConfig,
    ) -> Result<LocalResponse, ApiError> {
        let session = self.guard.session(http.req_header(), live).await?;
        if session.tokens.refresh_token.is_none() {
            return Err(ApiError::NoRefreshToken);
        }
        let tokens = self.guard.fresh(session, When::Now).await?;
        Ok(LocalResponse::json(
            200,
            &json!({ "access_token_expires_at": tokens.access_expires_at }),
        ))
    }
}
