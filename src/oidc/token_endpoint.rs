//! The provider client as the guard's [`TokenEndpoint`]: refresh grants, with the
//! provider's failures sorted into "the session cannot go on" and "try again later".
//!
//! Only `invalid_grant` and a refreshed ID token naming another user end a session. Every
//! other refusal (`invalid_client` during a client-secret rotation, `server_error`,
//! `temporarily_unavailable`, an ID token that fails verification even with re-fetched
//! keys) is the provider's bad day, not the user's: the session is kept.

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
                OidcError::InvalidGrant | OidcError::SubjectChanged => RefreshFailure::Refused,
                other @ (OidcError::Rejected(_)
                | OidcError::Unavailable(_)
                | OidcError::Misconfigured(_)) => RefreshFailure::Unavailable(other.to_string()),
            })
    }
}
