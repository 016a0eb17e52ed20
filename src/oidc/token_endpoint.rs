//! The provider client as the guard's [`TokenEndpoint`]: refresh grants, with the
//! provider's failures sorted into "the session cannot go on" and "try again later".
//!
//! Only `invalid_grant` and a refreshed ID token naming another user end a session. Every
//! other refusal (`invalid_client` during a client-secret rotation, `server_error`,
//! `temporarily_unavailable`, an ID token that fails verification even with re-fetched
//! keys) is the provider's bad day, not the user's: the session is kept.

use super::{OidcClient, OidcError};
use crate::config::RouteGrant;
use crate::dpop::DpopKey;
use crate::guard::{RefreshFailure, TokenEndpoint};
use crate::session::{RouteToken, Tokens};
use async_trait::async_trait;

#[async_trait]
impl TokenEndpoint for OidcClient {
    async fn refresh(
        &self,
        refresh_token: &str,
        sub: &str,
        dpop: Option<&DpopKey>,
    ) -> Result<Tokens, RefreshFailure> {
        OidcClient::refresh(self, refresh_token, sub, dpop)
            .await
            .map_err(classify)
    }

    async fn route_token(
        &self,
        grant: &RouteGrant,
        subject: &str,
    ) -> Result<RouteToken, RefreshFailure> {
        OidcClient::route_token(self, grant, subject)
            .await
            .map_err(|e| RefreshFailure::Unavailable(e.to_string()))
    }
}

/// Whether a failed refresh ends the session ([`RefreshFailure::Refused`]) or is tried
/// again later ([`RefreshFailure::Unavailable`]).
fn classify(e: OidcError) -> RefreshFailure {
    match e {
        OidcError::InvalidGrant | OidcError::SubjectChanged => RefreshFailure::Refused,
        other @ (OidcError::Rejected(_)
        | OidcError::Unavailable(_)
        | OidcError::Misconfigured(_)) => RefreshFailure::Unavailable(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_invalid_grant_and_another_user_end_a_session() {
        assert_eq!(classify(OidcError::InvalidGrant), RefreshFailure::Refused);
        assert_eq!(classify(OidcError::SubjectChanged), RefreshFailure::Refused);
        for kept in [
            OidcError::Rejected("token endpoint refused: invalid_client".into()),
            OidcError::Rejected("token endpoint refused: temporarily_unavailable".into()),
            OidcError::Rejected("refreshed ID token refused: bad signature".into()),
            OidcError::Unavailable("the token endpoint cannot be reached".into()),
            OidcError::Misconfigured("the provider has no token endpoint".into()),
        ] {
            assert!(
                matches!(classify(kept.clone()), RefreshFailure::Unavailable(_)),
                "{kept:?} must keep the session"
            );
        }
    }
}
