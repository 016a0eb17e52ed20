//! The OpenID Connect client: discovery, the authorization-code flow with PKCE, ID-token
//! and logout-token validation, userinfo, revocation and the end-session URL.
//!
//! Built on the `openidconnect` crate. Discovery runs in the background at start (retried
//! with back-off) and again on demand; the provider's keys are re-fetched when a token
//! names a key id we do not hold, at most once per [`JWKS_REFRESH_INTERVAL`].

mod error;
mod logout_token;

pub use error::OidcError;
pub use logout_token::LogoutClaims;

use crate::config::{ClientAuth, OidcConfig};
use arc_swap::ArcSwapOption;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, ProviderMetadata, RedirectUrl, RefreshToken, Scope,
};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The least time between two JWKS fetches triggered by unknown key ids.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// Discovery fields beyond OpenID Connect Core that bffgate uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RP-initiated logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<url::Url>,
    /// Token revocation (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<url::Url>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider as discovered.
pub struct Provider {
    metadata: Metadata,
    client: Client,
    fetched: Instant,
}

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

/// The OpenID Connect client.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    provider: ArcSwapOption<Provider>,
    /// When discovery was last tried, and how it failed.
    last_attempt: Mutex<Option<(Instant, Option<OidcError>)>>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// A random URL-safe string of `N` bytes of OS randomness.
fn random_token<const N: usize>() -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::random::os_bytes::<N>())
}

/// Runs one provider call, recording its latency under `op`.
async fn timed<T>(op: &'static str, fut: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    crate::metrics::PROVIDER_DURATION
        .with_label_values(&[op])
        .observe(started.elapsed().as_secs_f64());
    out
}

fn now_utc() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl OidcClient {
    /// A client for `config`; nothing is fetched until [`Self::discover`].
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let http = reqwest::Client::builder()
            // The openidconnect crate requires no redirects (SSRF safety).
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| OidcError::Unavailable(format!("http client: {e}")))?;
        Ok(OidcClient {
            config,
            http,
            provider: ArcSwapOption::empty(),
            last_attempt: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Whether discovery has succeeded.
    pub fn is_ready(&self) -> bool {
        self.provider.load().is_some()
    }

    /// Fetches discovery and keys, checking the provider names exactly our issuer.
    ///
    /// # Errors
    /// [`OidcError::Unavailable`] when the provider cannot be reached;
    /// [`OidcError::Misconfigured`] when its discovery document is not acceptable.
    pub async fn discover(&self) -> Result<Arc<Provider>, OidcError> {
        let result = self.fetch_metadata().await;
        if let Ok(mut last) = self.last_attempt.lock() {
            *last = Some((Instant::now(), result.as_ref().err().cloned()));
        }
        let metadata = result?;
        let provider = Arc::new(self.build(metadata));
        self.provider.store(Some(Arc::clone(&provider)));
        tracing::info!(issuer = %self.config.issuer, "OpenID provider discovered");
        Ok(provider)
    }

    async fn fetch_metadata(&self) -> Result<Metadata, OidcError> {
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|_| OidcError::Misconfigured("issuer is not a URL".into()))?;
        timed("discovery", Metadata::discover_async(issuer, &self.http))
            .await
            .map_err(discovery_error)
    }

    fn build(&self, metadata: Metadata) -> Provider {
        let mut client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            Some(ClientSecret::new(
                self.config.client_secret.expose().to_string(),
            )),
        )
        .set_redirect_uri(RedirectUrl::from_url(self.config.redirect_uri.clone()));
        if self.config.client_auth == ClientAuth::Post {
            client = client.set_auth_type(AuthType::RequestBody);
        }
        Provider {
            metadata,
            client,
            fetched: Instant::now(),
        }
    }

    /// The discovered provider, discovering now if needed (at most once a second).
    ///
    /// # Errors
    /// As [`Self::discover`].
    pub async fn provider(&self) -> Result<Arc<Provider>, OidcError> {
        if let Some(p) = self.provider.load_full() {
            return Ok(p);
        }
        // Within a second of a failed attempt, answer with that attempt's error rather
        // than asking the provider again.
        let recent = self.last_attempt.lock().ok().and_then(|l| l.clone());
        if let Some((at, Some(err))) = recent {
            if at.elapsed() < Duration::from_secs(1) {
                return Err(err);
            }
        }
        self.discover().await
    }

    /// Re-fetches the provider's keys, unless that happened in the last
    /// [`JWKS_REFRESH_INTERVAL`]. True when new keys were loaded.
    async fn refresh_keys(&self, current: &Provider) -> bool {
        if current.fetched.elapsed() < JWKS_REFRESH_INTERVAL {
            return false;
        }
        match timed(
            "jwks",
            CoreJsonWebKeySet::fetch_async(current.metadata.jwks_uri(), &self.http),
        )
        .await
        {
            Ok(jwks) => {
                let metadata = current.metadata.clone().set_jwks(jwks);
                self.provider.store(Some(Arc::new(self.build(metadata))));
                tracing::info!("OpenID provider keys refreshed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "refreshing the provider's keys failed");
                false
            }
        }
    }

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
        Ok(LoginStart {
            url,
            nonce,
            pkce_verifier: verifier.secret().clone(),
        })
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
    ) -> Result<Grant, OidcError> {
        let provider = self.provider().await?;
        let response = provider
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| OidcError::Misconfigured("the provider has no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_string()))
            .request_async(&self.http);
        let response = timed("token", response).await.map_err(token_error)?;
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
                id_token: Some(id_token.to_string()),
                access_expires_at: response
                    .expires_in()
                    .map(|d| crate::session::now_secs().saturating_add(d.as_secs())),
            },
            sub,
            sid,
            claims,
        })
    }

    /// Verifies an ID token and returns all its claims as JSON.
    fn verify_id_token(
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
        let skew = chrono::Duration::from_std(self.config.clock_skew).unwrap_or_default();
        let verifier = provider
            .client
            .id_token_verifier()
            .set_allowed_algs(algs)
            // Expiry is checked against a clock set back by the skew…
            .set_time_fn(move || now_utc() - skew)
            // …and a token may not be issued further in the future than the skew.
            .set_issue_time_verifier_fn(move |iat| {
                if iat > now_utc() + skew {
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

    /// Refreshes tokens with a refresh token. A new ID token, if one comes back, is
    /// validated (signature, issuer, audience, expiry) and must name the same `sub`.
    ///
    /// # Errors
    /// [`OidcError::InvalidGrant`] when the provider refuses the refresh token;
    /// [`OidcError::Rejected`] for other refusals or an invalid ID token;
    /// [`OidcError::Unavailable`] when the provider cannot be reached or fails.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        sub: &str,
    ) -> Result<crate::session::Tokens, OidcError> {
        let provider = self.provider().await?;
        let token = RefreshToken::new(refresh_token.to_string());
        let response = provider
            .client
            .exchange_refresh_token(&token)
            .map_err(|_| OidcError::Misconfigured("the provider has no token endpoint".into()))?
            .request_async(&self.http);
        let response = timed("refresh", response).await.map_err(token_error)?;
        let id_token = response.extra_fields().id_token();
        if let Some(t) = id_token {
            let claims = self
                .verify_id_token(&provider, t, None)
                .map_err(|e| OidcError::Rejected(format!("refreshed ID token refused: {e}")))?;
            if claims.get("sub").and_then(|s| s.as_str()) != Some(sub) {
                return Err(OidcError::Rejected(
                    "refreshed ID token names another user".into(),
                ));
            }
        }
        Ok(crate::session::Tokens {
            access_token: response.access_token().secret().clone(),
            refresh_token: Some(
                response
                    .refresh_token()
                    .map_or_else(|| refresh_token.to_string(), |t| t.secret().clone()),
            ),
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
    pub async fn userinfo(&self, access_token: &str) -> Result<serde_json::Value, OidcError> {
        let provider = self.provider().await?;
        let url = provider.metadata.userinfo_endpoint().ok_or_else(|| {
            OidcError::Misconfigured("the provider has no userinfo endpoint".into())
        })?;
        let resp = self
            .http
            .get(url.url().clone())
            .bearer_auth(access_token)
            .header("accept", "application/json")
            .send();
        let resp = timed("userinfo", resp)
            .await
            .map_err(|e| OidcError::Unavailable(format!("userinfo: {}", without_url(&e))))?;
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
            ("token", refresh_token),
            ("token_type_hint", "refresh_token"),
        ];
        if self.config.client_auth == ClientAuth::Post {
            // RFC 6749 §2.3.1: credentials in the form body, never in the URL.
            form.push(("client_id", self.config.client_id.as_str()));
            form.push(("client_secret", self.config.client_secret.expose()));
        }
        let mut req = self.http.post(url).form(&form);
        if self.config.client_auth == ClientAuth::Basic {
            req = req.basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.config.client_secret.expose())),
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

    /// Validates a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6).
    /// Replay (`jti`) is the caller's to check.
    ///
    /// # Errors
    /// [`OidcError::Rejected`] with the reason.
    pub async fn validate_logout_token(&self, token: &str) -> Result<LogoutClaims, OidcError> {
        let provider = self.provider().await?;
        let first = logout_token::validate(token, &provider.metadata, &self.config);
        match first {
            Err(logout_token::Failure::UnknownKey) if self.refresh_keys(&provider).await => {
                let provider = self.provider().await?;
                logout_token::validate(token, &provider.metadata, &self.config).map_err(Into::into)
            }
            other => other.map_err(Into::into),
        }
    }
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic authentication.
fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A reqwest error's text without its URL (URLs may carry tokens in queries).
fn without_url(e: &reqwest::Error) -> String {
    let mut e = e.to_string();
    if let Some(i) = e.find(" for url") {
        e.truncate(i);
    }
    e
}

/// The JSON payload of a compact JWT (no verification).
pub(crate) fn jwt_payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn discovery_error<E: std::error::Error>(e: openidconnect::DiscoveryError<E>) -> OidcError {
    use openidconnect::DiscoveryError as D;
    match e {
        D::Validation(v) => OidcError::Misconfigured(format!("discovery refused: {v}")),
        D::Parse(_) => OidcError::Misconfigured("discovery document is not valid".into()),
        D::Response(status, _, _) => OidcError::Unavailable(format!("discovery answered {status}")),
        D::Request(_) => OidcError::Unavailable("the provider cannot be reached".into()),
        other => OidcError::Unavailable(format!("discovery failed: {other}")),
    }
}

fn token_error<RE: std::error::Error, T: openidconnect::ErrorResponse>(
    e: openidconnect::RequestTokenError<RE, T>,
) -> OidcError {
    use openidconnect::RequestTokenError as R;
    match e {
        R::ServerResponse(r) => {
            let body = serde_json::to_value(&r).unwrap_or_default();
            let code = body
                .get("error")
                .and_then(|c| c.as_str())
                .unwrap_or("error");
            if code == "invalid_grant" {
                OidcError::InvalidGrant
            } else {
                OidcError::Rejected(format!("token endpoint refused: {code}"))
            }
        }
        R::Request(_) => OidcError::Unavailable("the token endpoint cannot be reached".into()),
        R::Parse(_, _) => OidcError::Unavailable("the token endpoint's answer is not valid".into()),
        R::Other(o) => OidcError::Unavailable(o),
    }
}

/// Discovers the provider at start, retrying with back-off (1 s doubling to 30 s) until it
/// answers or the process shuts down. `/readyz` reports not-ready until then.
pub struct DiscoveryService(pub Arc<OidcClient>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for DiscoveryService {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut delay = Duration::from_secs(1);
        loop {
            if self.0.is_ready() {
                return;
            }
            match self.0.discover().await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "OpenID provider discovery failed")
                }
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }
}
