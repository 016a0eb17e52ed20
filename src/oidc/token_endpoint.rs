//! The provider client as the guard's [`TokenEndpoint`]: refresh grants, with the
//! provider's failures sorted into "the session cannot go on" and "try again later".

use super::{OidcClient, OidcError};
use crate::guard::{RefreshFailure, TokenEndpoint};
use crate::session::Tokens;
use async_trait::async_trait;

#[async_trait]
impl TokenEndpoint for OidcClient {
    async fn refresh(&self, refresh_token: &str, sub: &str) -> Result<Tokens, RefreshFailure> {
        OidcClient::refresh(self, refresh_token, sub)
            .await
            .map_err(|e| match e {
                OidcError::InvalidGrant | OidcError::Rejected(_) => RefreshFailure::Refused,
                other => RefreshFailure::Unavailable(other.to_string()),
            })
    }
}
