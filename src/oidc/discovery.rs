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
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClient, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AuthType, ClientId, ClientSecret, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, ProviderMetadata, RedirectUrl,
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
