//! The OpenID Connect client: discovery, the authorization-code flow with PKCE, ID-token
//! and logout-token validation, userinfo, revocation and the end-session URL.
//!
//! Built on the `openidconnect` crate. Discovery runs in the background at start (retried
//! with back-off) and again on demand; the provider's keys are re-fetched when a token
//! does not verify with the keys we hold, in a single flight, at most once per
//! [`JWKS_REFRESH_INTERVAL`].
//!
//! This file owns [`OidcClient`] itself (its fields, constructor and small accessors) and
//! the helpers every flow shares. The behaviour lives in one file per concern, each adding
//! an `impl OidcClient` block:
//! - `discovery.rs`: provider metadata, key refresh, the background [`DiscoveryService`].
//! - `login.rs`: the authorization-code flow ([`OidcClient::start_login`],
//!   [`OidcClient::exchange_code`]) and ID-token verification.
//! - `tokens.rs`: what a session does with its tokens: refresh, userinfo, revocation, the
//!   end-session URL.
//! - `token_endpoint.rs`: the client as the request guard's refresh `TokenEndpoint`.
//! - `logout_token.rs`: back-channel logout token validation.
//! - `error.rs`: [`OidcError`], and translating HTTP and `openidconnect` failures into it.

mod discovery;
mod error;
mod login;
mod logout_token;
mod token_endpoint;
mod tokens;

pub use discovery::{DiscoveryService, ExtraMetadata, Provider, JWKS_REFRESH_INTERVAL};
pub use error::OidcError;
pub use login::{Grant, LoginStart};
pub use logout_token::LogoutClaims;

use crate::config::OidcConfig;
use arc_swap::ArcSwapOption;
use discovery::Metadata;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The OpenID Connect client.
pub struct OidcClient {
    config: OidcConfig,
    http: reqwest::Client,
    provider: ArcSwapOption<Provider>,
    /// When discovery was last tried, and how it failed.
    last_attempt: Mutex<Option<(Instant, Option<OidcError>)>>,
    /// Held while the provider's keys are re-fetched: one fetch at a time.
    keys_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.config.issuer)
            .field("ready", &self.is_ready())
            .finish()
    }
}

impl OidcClient {
    /// A client for `config`; nothing is fetched until [`Self::discover`].
    ///
    /// # Errors
    /// The HTTP client cannot be built.
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        let mut http = reqwest::Client::builder();
        // The system's trust store and the built-in public roots, plus an in-house CA.
        if let Some(file) = &config.ca_file {
            let pem = std::fs::read(file)
                .map_err(|e| OidcError::Misconfigured(format!("oidc.ca_file {file}: {e}")))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                OidcError::Misconfigured(format!("oidc.ca_file {file}: no PEM certificate: {e}"))
            })?;
            for cert in certs {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
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
            keys_flight: tokio::sync::Mutex::new(()),
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

/// The JSON payload of a compact JWT (no verification).
pub(crate) fn jwt_payload(jwt: &str) -> Option<serde_json::Value> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}
