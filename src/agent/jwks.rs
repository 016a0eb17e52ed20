//! `GET /jwks.json`: the public half of bffgate's `private_key_jwt` signing key, as a JWK
//! Set the provider fetches (the client's registered `jwks_uri`) to verify client
//! assertions.

use super::Agent;
use crate::http::{ApiError, LocalResponse};

impl Agent {
    /// The JWK Set of the signing key; 404 when `oidc.client_auth` is not
    /// `private_key_jwt` (there is no key to publish).
    pub(super) fn jwks(&self) -> Result<LocalResponse, ApiError> {
        match &self.config().signing_key {
            Some(key) => Ok(LocalResponse::json(200, &key.jwks())),
            None => Err(ApiError::RouteNotFound(
                "no signing key: oidc.client_auth is not private_key_jwt",
            )),
        }
    }
}
