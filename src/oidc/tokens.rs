//! What a session does with its tokens after login: [`OidcClient::refresh`] them,
//! [`OidcClient::userinfo`] with the access token, [`OidcClient::revoke`] the refresh
//! token, and the RP-initiated logout URL ([`OidcClient::end_session_url`]).

use super::error::{token_error, without_url};
use super::{timed, OidcClient, OidcError};
use crate::config::ClientAuth;
use openidconnect::{OAuth2TokenResponse, RefreshToken};

impl OidcClient {
    /// Refreshes tokens with a refresh token. A new ID token, if one comes back, is
    /// validated (signature, issuer, audience, expiry) and must name the same `sub`.
    ///
    /// # Errors
    /// [`OidcError::InvalidGrant`] when the provider refuses the refresh token;
    /// [`OidcError::SubjectChanged`] when the new ID token names another user;
    /// [`OidcError::Rejected`] for other refusals or an ID token that does not verify
    /// (also with the provider's keys re-fetched);
    /// [`OidcError::Unavailable`] when the provider cannot be reached or fails.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        sub: &str,
        dpop: Option<&crate::dpop::DpopKey>,
    ) -> Result<crate::session::Tokens, OidcError> {
        let provider = self.provider().await?;
        let token = RefreshToken::new(refresh_token.to_string());
        let mut request = provider
            .client
            .exchange_refresh_token(&token)
            .map_err(|_| OidcError::Misconfigured("the provider has no token endpoint".into()))?;
        if let Some(assertion) = self.client_assertion()? {
            request = request
                .add_extra_param("client_assertion_type", super::ASSERTION_TYPE)
                .add_extra_param("client_assertion", assertion);
        }
        let send = super::dpop::WithProof {
            client: self,
            key: dpop,
        };
        let response = request.request_async(&send);
        let response = timed("refresh", response).await.map_err(token_error)?;
        let id_token = response.extra_fields().id_token();
        if let Some(t) = id_token {
            let mut verified = self.verify_id_token(&provider, t, None);
            // A failure may be a key the provider rotated in: re-fetch the keys once and
            // verify again before judging the token.
            if verified.is_err() && self.refresh_keys(&provider).await {
                let provider = self.provider().await?;
                verified = self.verify_id_token(&provider, t, None);
            }
            let claims = verified
                .map_err(|e| OidcError::Rejected(format!("refreshed ID token refused: {e}")))?;
            if claims.get("sub").and_then(|s| s.as_str()) != Some(sub) {
                return Err(OidcError::SubjectChanged);
            }
        }
        let new_refresh_token = response
            .refresh_token()
            .map_or_else(|| refresh_token.to_string(), |t| t.secret().clone());
        Ok(crate::session::Tokens {
            access_token: response.access_token().secret().clone(),
            refresh_expires_at: response
                .extra_fields()
                .extra_fields()
                .expires_at(&new_refresh_token),
            refresh_token: Some(new_refresh_token),
            id_token: id_token.map(ToString::to_string),
            access_expires_at: response
                .expires_in()
                .map(|d| crate::session::now_secs().saturating_add(d.as_secs())),
        })
    }

    /// The provider's userinfo for an access token.
    ///
    /// # Errors
    /// [`OidcError::Rejected`] when the provider refuses the token; otherwise unavailable.
    pub async fn userinfo(
        &self,
        access_token: &str,
        dpop: Option<&crate::dpop::DpopKey>,
    ) -> Result<serde_json::Value, OidcError> {
        let provider = self.provider().await?;
        let url = provider.metadata.userinfo_endpoint().ok_or_else(|| {
            OidcError::Misconfigured("the provider has no userinfo endpoint".into())
        })?;
        let url = url.url().clone();
        let send = || {
            let req = self
                .http
                .get(url.clone())
                .header("accept", "application/json");
            match dpop {
                Some(key) => {
                    let proof = self.proof_for(key, "GET", url.as_str(), Some(access_token));
                    req.header("authorization", format!("DPoP {access_token}"))
                        .header(crate::dpop::HEADER, proof.unwrap_or_default())
                }
                None => req.bearer_auth(access_token),
            }
            .send()
        };
        let mut resp = timed("userinfo", send())
            .await
            .map_err(|e| OidcError::Unavailable(format!("userinfo: {}", without_url(&e))))?;
        if dpop.is_some() && self.learn_nonce(resp.headers(), resp.status().as_u16(), &[]) {
            resp = timed("userinfo", send())
                .await
                .map_err(|e| OidcError::Unavailable(format!("userinfo: {}", without_url(&e))))?;
        }
        match resp.status().as_u16() {
            200 => resp
                .json()
                .await
                .map_err(|_| OidcError::Unavailable("userinfo: the answer is not JSON".into())),
            401 | 403 => Err(OidcError::Rejected(
                "the provider refused the access token".into(),
            )),
            s => Err(OidcError::Unavailable(format!("userinfo answered {s}"))),
        }
    }

    /// Revokes a refresh token where the provider supports revocation (best effort).
    pub async fn revoke(&self, refresh_token: &str) {
        let Ok(provider) = self.provider().await else {
            return;
        };
        let Some(url) = provider
            .metadata
            .additional_metadata()
            .revocation_endpoint
            .clone()
        else {
            return;
        };
        let mut form = vec![
            ("token", refresh_token.to_string()),
            ("token_type_hint", "refresh_token".to_string()),
        ];
        match self.auth_form() {
            Ok(auth) => form.extend(auth),
            Err(e) => {
                tracing::warn!(error = %e, "refresh token revocation failed");
                return;
            }
        }
        let mut req = self.http.post(url).form(&form);
        if self.config.client_auth == ClientAuth::Basic {
            req = req.basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.client_secret().expose())),
            );
        }
        match timed("revoke", req.send()).await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => tracing::warn!(
                status = r.status().as_u16(),
                "refresh token revocation refused"
            ),
            Err(e) => tracing::warn!(error = %without_url(&e), "refresh token revocation failed"),
        }
    }

    /// The RP-initiated logout URL for a session, or `None` where the provider has none.
    pub fn end_session_url(&self, id_token: Option<&str>) -> Option<url::Url> {
        let provider = self.provider.load_full()?;
        let mut url = provider
            .metadata
            .additional_metadata()
            .end_session_endpoint
            .clone()?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("client_id", &self.config.client_id);
            if let Some(t) = id_token {
                q.append_pair("id_token_hint", t);
            }
            if let Some(p) = &self.config.post_logout_redirect {
                q.append_pair("post_logout_redirect_uri", p.as_str());
            }
        }
        Some(url)
    }
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic authentication.
pub(super) fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
