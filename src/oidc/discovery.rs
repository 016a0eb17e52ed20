//! Finding the provider: its discovery document and signing keys, kept as a [`Provider`]
//! and swapped whole when re-fetched, plus the [`DiscoveryService`] that discovers it at
//! start with back-off.
//!
//! Keys are re-fetched when a token does not verify with the keys we hold: one fetch
//! however many tokens arrive at once (a single flight), and at most one per
//! [`JWKS_REFRESH_INTERVAL`].

use super::error::discovery_error;
use super::{timed, OidcClient, OidcError};
use crate::config::ClientAuth;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreClaimName, CoreClaimType, CoreClientAuthMethod,
    CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, ClientId, ClientSecret, EmptyAdditionalClaims,
    EndpointMaybeSet, EndpointNotSet, EndpointSet, ExtraTokenFields, IdTokenFields, IssuerUrl,
    ProviderMetadata, RedirectUrl, StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The least time between two JWKS fetches triggered by tokens that do not verify.
pub const JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(1);

/// Discovery fields beyond OpenID Connect Core that bffgate uses.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct ExtraMetadata {
    /// RP-initiated logout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_session_endpoint: Option<url::Url>,
    /// Token revocation (RFC 7009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation_endpoint: Option<url::Url>,
    /// Pushed authorization requests (RFC 9126).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_authorization_request_endpoint: Option<url::Url>,
    /// The provider accepts authorization requests only pushed (RFC 9126 §5).
    #[serde(default)]
    pub require_pushed_authorization_requests: bool,
    /// The JWS algorithms the provider accepts in DPoP proofs (RFC 9449 §5.1); absent
    /// when it does not support DPoP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

pub(super) type Metadata = ProviderMetadata<
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

/// Token-response fields beyond OAuth 2.0 and OpenID Connect Core that bffgate reads: the
/// refresh token's lifetime, as Keycloak (`refresh_expires_in`) and others
/// (`refresh_token_expires_in`) report it. Kept as JSON values: a provider sending them
/// in an unexpected shape must not make the whole token response unreadable.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct RefreshLifetime {
    /// Seconds the refresh token stays valid (Keycloak; 0 means no limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_in: Option<serde_json::Value>,
    /// Seconds the refresh token stays valid (other providers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_in: Option<serde_json::Value>,
}

impl ExtraTokenFields for RefreshLifetime {}

impl RefreshLifetime {
    /// When the refresh token `refresh_token` expires (unix seconds): what the response
    /// says, else the token's own `exp` if it is a JWT; `None` when nobody says.
    pub(super) fn expires_at(&self, refresh_token: &str) -> Option<u64> {
        let seconds = |v: &serde_json::Value| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        };
        let said = self
            .refresh_expires_in
            .as_ref()
            .or(self.refresh_token_expires_in.as_ref())
            .and_then(seconds);
        match said {
            // 0: the refresh token does not expire (an offline token).
            Some(0) => None,
            Some(s) => Some(crate::session::now_secs().saturating_add(s)),
            None => super::jwt_payload(refresh_token)
                .and_then(|claims| claims.get("exp").and_then(serde_json::Value::as_u64)),
        }
    }
}

/// The token response: OpenID Connect Core's, with [`RefreshLifetime`].
pub(super) type TokenResponse = StandardTokenResponse<
    IdTokenFields<
        EmptyAdditionalClaims,
        RefreshLifetime,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

type Client = openidconnect::Client<
    EmptyAdditionalClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    TokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The provider as discovered.
pub struct Provider {
    pub(super) metadata: Metadata,
    pub(super) client: Client,
    fetched: Instant,
}

impl OidcClient {
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
        let unsuitable = unsuitable(&self.config, &metadata);
        if let Ok(mut u) = self.unsuitable.lock() {
            *u = unsuitable;
        }
        if let Some(reason) = unsuitable {
            let err = OidcError::Misconfigured(reason.into());
            if let Ok(mut last) = self.last_attempt.lock() {
                *last = Some((Instant::now(), Some(err.clone())));
            }
            return Err(err);
        }
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

    /// Rebuilds the provider client from the metadata it holds (the client secret changed),
    /// keeping when it was fetched.
    pub(super) fn rebuild_provider(&self) {
        if let Some(current) = self.provider.load_full() {
            let mut fresh = self.build(current.metadata.clone());
            fresh.fetched = current.fetched;
            self.provider.store(Some(Arc::new(fresh)));
        }
    }

    fn build(&self, metadata: Metadata) -> Provider {
        // private_key_jwt sends no secret: the client id goes in the body, next to the
        // assertion each request adds.
        let secret = (self.config.client_auth != ClientAuth::PrivateKeyJwt)
            .then(|| ClientSecret::new(self.client_secret().expose().to_string()));
        let mut client = Client::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.config.client_id.clone()),
            secret,
        )
        .set_redirect_uri(RedirectUrl::from_url(self.config.redirect_uri.clone()));
        if self.config.client_auth != ClientAuth::Basic {
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

    /// Re-fetches the provider's keys after a token failed to verify with `current`'s.
    /// True when newer keys than `current`'s are loaded (by this call or by another one
    /// that ran meanwhile).
    ///
    /// A single flight: however many callers come at once, one fetch is made and the
    /// others wait for it and use its keys. Keys fetched less than
    /// [`JWKS_REFRESH_INTERVAL`] ago are not fetched again (a flood of tokens naming
    /// unknown keys costs at most one fetch per interval).
    pub(super) async fn refresh_keys(&self, current: &Provider) -> bool {
        let _flight = self.keys_flight.lock().await;
        if let Some(latest) = self.provider.load_full() {
            if latest.fetched > current.fetched {
                return true;
            }
        }
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
}

/// Why a discovered provider cannot serve this configuration, if it cannot: PAR required
/// on one side and unavailable or refused on the other, `private_key_jwt` or DPoP not
/// offered.
fn unsuitable(config: &crate::config::OidcConfig, metadata: &Metadata) -> Option<&'static str> {
    use crate::config::PushedAuthorization as Par;
    let extra = metadata.additional_metadata();
    let has_par = extra.pushed_authorization_request_endpoint.is_some();
    match config.pushed_authorization {
        Par::Required if !has_par => Some(
            "oidc.pushed_authorization is `required` but the provider's discovery names no pushed_authorization_request_endpoint",
        ),
        Par::Off if extra.require_pushed_authorization_requests => Some(
            "the provider requires pushed authorization requests but oidc.pushed_authorization is `off`",
        ),
        Par::Auto if extra.require_pushed_authorization_requests && !has_par => Some(
            "the provider requires pushed authorization requests but names no pushed_authorization_request_endpoint",
        ),
        _ => private_key_jwt_refused(config, metadata).or_else(|| dpop_refused(config, extra)),
    }
}

/// `oidc.dpop` on and a provider whose discovery does not offer DPoP with ES256 (the
/// algorithm of sessions' keys).
fn dpop_refused(config: &crate::config::OidcConfig, extra: &ExtraMetadata) -> Option<&'static str> {
    let es256 = extra
        .dpop_signing_alg_values_supported
        .as_ref()
        .is_some_and(|algs| algs.iter().any(|a| a == "ES256"));
    (config.dpop && !es256).then_some(
        "oidc.dpop is on but the provider's dpop_signing_alg_values_supported does not list ES256",
    )
}

/// `private_key_jwt` configured and a provider whose discovery lists its token endpoint's
/// authentication methods without it.
fn private_key_jwt_refused(
    config: &crate::config::OidcConfig,
    metadata: &Metadata,
) -> Option<&'static str> {
    let methods = metadata.token_endpoint_auth_methods_supported()?;
    (config.client_auth == ClientAuth::PrivateKeyJwt
        && !methods.contains(&CoreClientAuthMethod::PrivateKeyJwt))
    .then_some(
        "oidc.client_auth is `private_key_jwt` but the provider's token_endpoint_auth_methods_supported does not list it",
    )
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

#[cfg(test)]
mod tests {
    use super::RefreshLifetime;
    use crate::session::now_secs;
    use serde_json::json;

    fn lifetime(v: serde_json::Value) -> RefreshLifetime {
        serde_json::from_value(v).expect("fields")
    }

    #[test]
    fn refresh_token_lifetime_from_the_response_or_the_token() {
        let now = now_secs();
        let at = |v| lifetime(v).expires_at("opaque");
        assert!(at(json!({"refresh_expires_in": 20})).is_some_and(|t| t.abs_diff(now + 20) <= 1));
        assert!(at(json!({"refresh_token_expires_in": "30"}))
            .is_some_and(|t| t.abs_diff(now + 30) <= 1));
        // Keycloak's offline tokens: 0 is "no limit".
        assert_eq!(at(json!({"refresh_expires_in": 0})), None);
        assert_eq!(at(json!({"refresh_expires_in": {"odd": true}})), None);
        assert_eq!(at(json!({})), None);
        // A JWT refresh token's own exp, when the response says nothing.
        use base64::Engine;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            b64(json!({"alg": "HS256"})),
            b64(json!({"exp": 4_000_000_000u64}))
        );
        assert_eq!(lifetime(json!({})).expires_at(&jwt), Some(4_000_000_000));
    }

    #[test]
    fn dpop_needs_a_provider_offering_es256_proofs() {
        use super::{dpop_refused, ExtraMetadata};
        let mut config = crate::oidc::tests_support::config();
        let extra = |algs: Option<Vec<&str>>| ExtraMetadata {
            dpop_signing_alg_values_supported: algs
                .map(|a| a.into_iter().map(String::from).collect()),
            ..Default::default()
        };
        assert_eq!(
            dpop_refused(&config, &extra(None)),
            None,
            "DPoP off: nothing needed"
        );
        config.dpop = true;
        assert!(dpop_refused(&config, &extra(None)).is_some());
        assert!(dpop_refused(&config, &extra(Some(vec!["RS256"]))).is_some());
        assert_eq!(
            dpop_refused(&config, &extra(Some(vec!["PS256", "ES256"]))),
            None
        );
    }
}
