//! The OpenID Connect client: discovery, the authorization-code flow with PKCE, ID-token
//! and logout-token validation, userinfo, revocation and the end-session URL.
//!
//! Built on the `openidconnect` crate. Discovery runs in the background at start (retried
//! with back-off) and again on demand; the provider's keys are re-fetched when a token
//! does not verify with the keys we hold, in a single flight, at most once per
//! [`JWKS_REFRESH_INTERVAL`].
//!
//! This file owns [`OidcClient`] itself (its fields, constructor and small accessors) and
//! the helpers every flow shares (client authentication outside the `openidconnect` crate,
//! the `private_key_jwt` client assertion). The behaviour lives in one file per concern, each adding
//! an `impl OidcClient` block:
//! - `discovery.rs`: provider metadata, key refresh, the background [`DiscoveryService`].
//! - `login.rs`: the authorization-code flow ([`OidcClient::start_login`],
//!   [`OidcClient::exchange_code`]) and ID-token verification.
//! - `tokens.rs`: what a session does with its tokens: refresh, userinfo, revocation, the
//!   end-session URL.
//! - `grants.rs`: tokens for one route: token exchange and client credentials
//!   ([`OidcClient::route_token`]).
//! - `dpop.rs`: DPoP proofs on token and userinfo requests, and the provider's nonce.
//! - `token_endpoint.rs`: the client as the request guard's `TokenEndpoint` (refresh and
//!   route tokens).
//! - `logout_token.rs`: back-channel logout token validation.
//! - `error.rs`: [`OidcError`], and translating HTTP and `openidconnect` failures into it.

mod discovery;
mod dpop;
mod error;
mod grants;
mod login;
mod logout_token;
mod token_endpoint;
mod tokens;

pub use discovery::{DiscoveryService, ExtraMetadata, Provider, JWKS_REFRESH_INTERVAL};
pub use error::OidcError;
pub use login::{Grant, LoginStart};
pub use logout_token::LogoutClaims;
use tokens::form_encode;

use crate::config::{ClientAuth, OidcConfig, SecretString};
use arc_swap::{ArcSwap, ArcSwapOption};
use discovery::Metadata;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The OpenID Connect client.
pub struct OidcClient {
    config: OidcConfig,
    /// `oidc.client_secret`, which a configuration reload may change.
    client_secret: ArcSwap<SecretString>,
    http: reqwest::Client,
    provider: ArcSwapOption<Provider>,
    /// When discovery was last tried, and how it failed.
    last_attempt: Mutex<Option<(Instant, Option<OidcError>)>>,
    /// Held while the provider's keys are re-fetched: one fetch at a time.
    keys_flight: tokio::sync::Mutex<()>,
    /// Why the last discovered provider cannot serve this configuration (readiness says so).
    unsuitable: Mutex<Option<&'static str>>,
    /// The provider's latest DPoP nonce (`dpop.rs`).
    dpop_nonce: Mutex<Option<String>>,
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
            // Idle connections go before the 5 s keep-alive of Node and Apache servers: a
            // token request (a POST, never retried) must not go out on a connection the
            // provider is closing.
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|e| OidcError::Unavailable(format!("http client: {e}")))?;
        Ok(OidcClient {
            client_secret: ArcSwap::from_pointee(config.client_secret.clone()),
            config,
            http,
            provider: ArcSwapOption::empty(),
            last_attempt: Mutex::new(None),
            keys_flight: tokio::sync::Mutex::new(()),
            unsuitable: Mutex::new(None),
            dpop_nonce: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// The client secret now in force (`oidc.client_secret`, reloadable).
    pub(crate) fn client_secret(&self) -> Arc<SecretString> {
        self.client_secret.load_full()
    }

    /// Uses `secret` as the client secret from now on (configuration reload): in every
    /// request to the provider, and in the provider client, rebuilt from the metadata it
    /// holds. True when it differed.
    pub fn set_client_secret(&self, secret: &SecretString) -> bool {
        if *self.client_secret.load_full() == *secret {
            return false;
        }
        self.client_secret.store(Arc::new(secret.clone()));
        self.rebuild_provider();
        true
    }

    /// Whether discovery has succeeded.
    pub fn is_ready(&self) -> bool {
        self.provider.load().is_some()
    }

    /// Why the provider, though it answered discovery, cannot serve this configuration
    /// (e.g. PAR required and not offered); `None` otherwise.
    pub fn unsuitable(&self) -> Option<&'static str> {
        self.unsuitable.lock().ok().and_then(|u| *u)
    }

    /// A fresh `private_key_jwt` client assertion (RFC 7523 §2.2) for a request to the
    /// provider, or `None` in the secret-based modes: `iss` and `sub` the client id, `aud`
    /// the issuer (FAPI 2.0), a random `jti`, and a 60-second life.
    ///
    /// # Errors
    /// The signature failed.
    pub(crate) fn client_assertion(&self) -> Result<Option<String>, OidcError> {
        use base64::Engine;
        let Some(key) = &self.config.signing_key else {
            return Ok(None);
        };
        let now = crate::session::now_secs();
        let jti = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(crate::random::os_bytes::<24>());
        let claims = serde_json::json!({
            "iss": self.config.client_id,
            "sub": self.config.client_id,
            "aud": self.config.issuer,
            "jti": jti,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        key.sign_jwt(&claims)
            .map(Some)
            .map_err(|e| OidcError::Unavailable(format!("client assertion: {e}")))
    }

    /// The form fields authenticating this client to the provider outside the
    /// `openidconnect` crate (revocation, PAR), per `oidc.client_auth`; Basic is the
    /// caller's header.
    pub(crate) fn auth_form(&self) -> Result<Vec<(&'static str, String)>, OidcError> {
        Ok(match self.config.client_auth {
            ClientAuth::Basic => vec![],
            // RFC 6749 §2.3.1: credentials in the form body, never in the URL.
            ClientAuth::Post => vec![
                ("client_id", self.config.client_id.clone()),
                ("client_secret", self.client_secret().expose().to_string()),
            ],
            ClientAuth::PrivateKeyJwt => {
                let mut form = vec![("client_id", self.config.client_id.clone())];
                if let Some(a) = self.client_assertion()? {
                    form.push(("client_assertion_type", ASSERTION_TYPE.to_string()));
                    form.push(("client_assertion", a));
                }
                form
            }
        })
    }
}

/// RFC 7523 §2.2's `client_assertion_type`.
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How long a client assertion is valid.
const ASSERTION_LIFETIME_SECS: u64 = 60;

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

/// What the provider client's unit tests share.
#[cfg(test)]
pub(crate) mod tests_support {
    use crate::config::{ClientAuth, OidcConfig, PushedAuthorization, SecretString};
    use std::time::Duration;

    /// A complete client configuration for `https://idp.test` (client `bff`, secret `s`,
    /// `client_secret_basic`, RS256 ID tokens), nothing optional turned on.
    pub(crate) fn config() -> OidcConfig {
        let u = |s: &str| url::Url::parse(s).expect("url");
        OidcConfig {
            ca_file: None,
            issuer: "https://idp.test".into(),
            client_id: "bff".into(),
            client_secret: SecretString("s".into()),
            client_auth: ClientAuth::Basic,
            scopes: vec!["openid".into()],
            redirect_uri: u("https://api.test/bff/callback"),
            post_login_redirect: u("https://www.test/"),
            post_logout_redirect: None,
            id_token_algs: vec!["RS256".into()],
            session_claims: vec![],
            login_timeout: Duration::from_secs(60),
            logins_per_client: 60,
            clock_skew: Duration::from_secs(30),
            auth_params: vec![],
            dpop: false,
            signing_key: None,
            pushed_authorization: PushedAuthorization::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretString;
    use crate::jose::tests::{openssl_key, P256};
    use std::sync::Arc;

    fn client(signing_key: Option<crate::jose::SigningKey>) -> OidcClient {
        OidcClient::new(OidcConfig {
            client_secret: SecretString(String::new()),
            client_auth: ClientAuth::PrivateKeyJwt,
            signing_key: signing_key.map(Arc::new),
            ..tests_support::config()
        })
        .expect("client")
    }

    /// RFC 7523 §3 and FAPI 2.0: iss = sub = client id, aud = the issuer, a short life, and
    /// a jti never seen before; the form carries the assertion type and no secret.
    #[test]
    fn each_client_assertion_is_fresh_and_addressed_to_the_issuer() {
        let key =
            crate::jose::SigningKey::from_pem(&openssl_key(&P256, &[]), None, None).expect("key");
        let c = client(Some(key));
        let mut jtis = std::collections::HashSet::new();
        for _ in 0..20 {
            let jwt = c.client_assertion().expect("signed").expect("assertion");
            let claims = jwt_payload(&jwt).expect("claims");
            assert_eq!(claims["iss"], "bff");
            assert_eq!(claims["sub"], "bff");
            assert_eq!(claims["aud"], "https://idp.test");
            let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
            assert_eq!(exp.zip(iat).map(|(e, i)| e - i), Some(60));
            let jti = claims["jti"].as_str().expect("jti").to_string();
            assert_eq!(jti.len(), 32, "24 random bytes, base64url");
            assert!(jtis.insert(jti), "a jti came twice");
        }
        let form = c.auth_form().expect("form");
        let names: Vec<&str> = form.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["client_id", "client_assertion_type", "client_assertion"]
        );
        assert_eq!(form[1].1, ASSERTION_TYPE);
        assert_eq!(client(None).client_assertion().expect("none"), None);
    }
}
