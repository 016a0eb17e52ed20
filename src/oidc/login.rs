//! The authorization-code flow with PKCE: [`OidcClient::start_login`] builds the
//! provider's authorization URL (pushing its parameters first where PAR is used), [`OidcClient::exchange_code`] trades the returned code
//! for tokens, and ID tokens (from a login or a refresh) are verified here.

use super::error::{token_error, without_url};
use super::{jwt_payload, timed, OidcClient, OidcError, Provider};
use openidconnect::core::{CoreAuthenticationFlow, CoreJwsSigningAlgorithm};
use openidconnect::{
    AuthorizationCode, CsrfToken, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
    Scope,
};

/// Tokens and identity from a completed code exchange or refresh.
#[derive(Debug)]
pub struct Grant {
    /// The tokens to store.
    pub tokens: crate::session::Tokens,
    /// The user.
    pub sub: String,
    /// The provider session.
    pub sid: Option<String>,
    /// Every ID-token claim, verified.
    pub claims: serde_json::Value,
    /// Whether the provider bound the tokens to the DPoP key the exchange was made with.
    pub dpop_bound: bool,
}

/// A started login: what the browser is sent to, and what must be kept to finish it.
#[derive(Debug)]
pub struct LoginStart {
    /// The provider's authorization URL with all parameters.
    pub url: url::Url,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
}

/// A random URL-safe string of `N` bytes of OS randomness.
fn random_token<const N: usize>() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::random::os_bytes::<N>())
}

fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl OidcClient {
    /// Starts a login: state is the caller's, nonce and PKCE verifier are fresh.
    ///
    /// # Errors
    /// The provider is not discovered.
    pub async fn start_login(&self, state: &str) -> Result<LoginStart, OidcError> {
        let provider = self.provider().await?;
        let nonce = random_token::<32>();
        let verifier = PkceCodeVerifier::new(random_token::<48>());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let state_value = state.to_string();
        let nonce_value = nonce.clone();
        let mut request = provider
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state_value),
                move || Nonce::new(nonce_value),
            )
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (k, v) in &self.config.auth_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let (url, _, _) = request.url();
        let url = match self.par_endpoint(&provider)? {
            Some(endpoint) => self.push(&provider, endpoint, &url).await?,
            None => url,
        };
        Ok(LoginStart {
            url,
            nonce,
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// The PAR endpoint to push authorization requests to, per `oidc.pushed_authorization`.
    fn par_endpoint<'p>(&self, provider: &'p Provider) -> Result<Option<&'p url::Url>, OidcError> {
        use crate::config::PushedAuthorization as Par;
        let endpoint = provider
            .metadata
            .additional_metadata()
            .pushed_authorization_request_endpoint
            .as_ref();
        match (self.config.pushed_authorization, endpoint) {
            (Par::Off, _) => Ok(None),
            (Par::Required, None) => Err(OidcError::Misconfigured(
                "the provider has no pushed authorization request endpoint".into(),
            )),
            (_, e) => Ok(e),
        }
    }

    /// Pushes the parameters of the authorization URL `full` to the PAR endpoint (RFC 9126
    /// §2, authenticated as at the token endpoint) and returns the URL the browser gets:
    /// the authorization endpoint with only `client_id` and `request_uri`.
    async fn push(
        &self,
        provider: &Provider,
        endpoint: &url::Url,
        full: &url::Url,
    ) -> Result<url::Url, OidcError> {
        let mut form: Vec<(String, String)> = full
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        form.extend(
            self.auth_form()?
                .into_iter()
                .filter(|(k, _)| *k != "client_id")
                .map(|(k, v)| (k.to_string(), v)),
        );
        let mut req = self.http.post(endpoint.clone()).form(&form);
        if self.config.client_auth == crate::config::ClientAuth::Basic {
            req = req.basic_auth(
                super::form_encode(&self.config.client_id),
                Some(super::form_encode(self.client_secret().expose())),
            );
        }
        let resp = timed("par", req.send())
            .await
            .map_err(|e| OidcError::Unavailable(format!("PAR: {}", without_url(&e))))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|_| OidcError::Unavailable("PAR: the answer is not JSON".into()))?;
        // A refused push is the registration's fault (client, redirect URI, scopes), never
        // the user's: the provider is misconfigured for us.
        let request_uri = match (status, body.get("request_uri").and_then(|u| u.as_str())) {
            (200 | 201, Some(u)) => u.to_string(),
            (200 | 201, None) => {
                return Err(OidcError::Unavailable(
                    "PAR: the answer has no request_uri".into(),
                ))
            }
            (s, _) if s >= 500 => return Err(OidcError::Unavailable(format!("PAR answered {s}"))),
            (_, _) => {
                let code = body
                    .get("error")
                    .and_then(|c| c.as_str())
                    .unwrap_or("error");
                return Err(OidcError::Misconfigured(format!("PAR refused: {code}")));
            }
        };
        let mut url = provider.metadata.authorization_endpoint().url().clone();
        url.set_query(None);
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("request_uri", &request_uri);
        Ok(url)
    }

    /// Exchanges an authorization code and validates the ID token (signature with an
    /// allowed algorithm, issuer, audience, azp, expiry, issue time, nonce).
    ///
    /// # Errors
    /// [`OidcError::Rejected`] when the provider refuses the code or the ID token is not
    /// valid; [`OidcError::Unavailable`] when the provider cannot be reached.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        dpop: Option<&crate::dpop::DpopKey>,
    ) -> Result<Grant, OidcError> {
        let provider = self.provider().await?;
        let mut request = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| OidcError::Misconfigured("the provider has no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()));
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
        let response = timed("token", response).await.map_err(token_error)?;
        let dpop_bound =
            dpop.is_some() && response.token_type().as_ref().eq_ignore_ascii_case("dpop");
        let id_token = response
            .extra_fields()
            .id_token()
            .ok_or_else(|| OidcError::Rejected("the token response has no ID token".into()))?;
        let nonce = Nonce::new(nonce.to_string());
        let mut verified = self.verify_id_token(&provider, id_token, Some(&nonce));
        // A failure may be a key the provider rotated in: re-fetch the keys (at most once
        // per JWKS_REFRESH_INTERVAL) and verify once more.
        if verified.is_err() && self.refresh_keys(&provider).await {
            let provider = self.provider().await?;
            verified = self.verify_id_token(&provider, id_token, Some(&nonce));
        }
        let claims = verified.map_err(|e| OidcError::Rejected(format!("ID token refused: {e}")))?;
        let sub = claims
            .get("sub")
            .and_then(|s| s.as_str())
            .ok_or_else(|| OidcError::Rejected("ID token has no sub".into()))?
            .to_string();
        let sid = claims
            .get("sid")
            .and_then(|s| s.as_str())
            .map(str::to_string);
        Ok(Grant {
            tokens: crate::session::Tokens {
                access_token: response.access_token().secret().clone(),
                refresh_token: response.refresh_token().map(|t| t.secret().clone()),
                refresh_expires_at: response.refresh_token().and_then(|t| {
                    response
                        .extra_fields()
                        .extra_fields()
                        .expires_at(t.secret())
                }),
                id_token: Some(id_token.to_string()),
                access_expires_at: response
                    .expires_in()
                    .map(|d| crate::session::now_secs().saturating_add(d.as_secs())),
            },
            sub,
            sid,
            claims,
            dpop_bound,
        })
    }

    /// Verifies an ID token and returns all its claims as JSON. Without a `nonce` (a
    /// refreshed ID token) none is checked.
    pub(super) fn verify_id_token(
        &self,
        provider: &Provider,
        token: &openidconnect::core::CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<serde_json::Value, String> {
        let algs: Vec<CoreJwsSigningAlgorithm> = self
            .config
            .id_token_algs
            .iter()
            .filter_map(|a| serde_json::from_value(serde_json::Value::String(a.clone())).ok())
            .collect();
        // `oidc.clock_skew` is at most a year (the config refuses more), so this converts;
        // the clock arithmetic below is checked all the same.
        let skew = chrono::Duration::from_std(self.config.clock_skew).unwrap_or_default();
        let verifier = provider
            .client
            .id_token_verifier()
            .set_allowed_algs(algs)
            // Expiry is checked against a clock set back by the skew…
            .set_time_fn(move || {
                let now = now_utc();
                now.checked_sub_signed(skew).unwrap_or(now)
            })
            // …and a token may not be issued further in the future than the skew.
            .set_issue_time_verifier_fn(move |iat| {
                let now = now_utc();
                if iat > now.checked_add_signed(skew).unwrap_or(now) {
                    Err("the ID token is issued in the future".into())
                } else {
                    Ok(())
                }
            });
        match nonce {
            Some(n) => token.claims(&verifier, n).map(|_| ()),
            // Refreshed ID tokens carry no nonce to check (OpenID Connect Core §12.2).
            None => token
                .claims(&verifier, |_: Option<&Nonce>| Ok(()))
                .map(|_| ()),
        }
        .map_err(|e| e.to_string())?;
        jwt_payload(&token.to_string()).ok_or_else(|| "the ID token payload is not JSON".into())
    }
}
