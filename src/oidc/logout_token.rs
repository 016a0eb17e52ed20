//! Back-channel logout token validation (OpenID Connect Back-Channel Logout 1.0, §2.4 and
//! §2.6): a JWT signed by the provider, naming a `sid` and/or `sub`, with the logout event,
//! and never a `nonce`. [`OidcClient::validate_logout_token`] is the entry point.

use super::{Metadata, OidcClient, OidcError};
use crate::config::OidcConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::JsonWebKey;
use serde_json::Value;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// Oldest `iat` accepted: logout tokens are delivered at once, not queued for long.
const MAX_AGE_SECS: u64 = 600;

/// What a valid logout token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutClaims {
    /// The provider session to end.
    pub sid: Option<String>,
    /// The user whose sessions end (when no `sid`).
    pub sub: Option<String>,
    /// The token's unique id, for replay detection.
    pub jti: String,
}

/// Why a logout token was refused.
#[derive(Debug)]
pub(super) enum Failure {
    /// Signed with a key id we do not hold (the keys may have rotated).
    UnknownKey,
    /// Any other reason.
    Invalid(&'static str),
}

impl From<Failure> for OidcError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::UnknownKey => {
                OidcError::Rejected("logout token signed with an unknown key".into())
            }
            Failure::Invalid(why) => OidcError::Rejected(format!("logout token: {why}")),
        }
    }
}

impl OidcClient {
    /// Validates a back-channel logout token (OpenID Connect Back-Channel Logout 1.0 §2.6).
    /// Replay (`jti`) is the caller's to check.
    ///
    /// # Errors
    /// [`OidcError::Rejected`] with the reason.
    pub async fn validate_logout_token(&self, token: &str) -> Result<LogoutClaims, OidcError> {
        let provider = self.provider().await?;
        let first = validate(token, &provider.metadata, &self.config);
        match first {
            Err(Failure::UnknownKey) if self.refresh_keys(&provider).await => {
                let provider = self.provider().await?;
                validate(token, &provider.metadata, &self.config).map_err(Into::into)
            }
            other => other.map_err(Into::into),
        }
    }
}

fn part(s: &str) -> Result<Vec<u8>, Failure> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| Failure::Invalid("not a compact JWT"))
}

pub(super) fn validate(
    token: &str,
    metadata: &Metadata,
    config: &OidcConfig,
) -> Result<LogoutClaims, Failure> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Invalid("not a compact JWS"));
    };
    let header: Value =
        serde_json::from_slice(&part(h)?).map_err(|_| Failure::Invalid("header is not JSON"))?;
    let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("none");
    if alg_name.eq_ignore_ascii_case("none") || !config.id_token_algs.iter().any(|a| a == alg_name)
    {
        return Err(Failure::Invalid("signature algorithm not allowed"));
    }
    if let Some(typ) = header.get("typ").and_then(Value::as_str) {
        if !typ.eq_ignore_ascii_case("logout+jwt") && !typ.eq_ignore_ascii_case("jwt") {
            return Err(Failure::Invalid("wrong token type"));
        }
    }
    let alg: CoreJwsSigningAlgorithm = serde_json::from_value(Value::String(alg_name.to_string()))
        .map_err(|_| Failure::Invalid("unknown signature algorithm"))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = metadata.jwks().keys();
    let candidates: Vec<_> = keys
        .iter()
        .filter(|k| kid.is_none() || k.key_id().map(|id| id.as_str()) == kid)
        .collect();
    if candidates.is_empty() {
        return Err(Failure::UnknownKey);
    }
    let message = &token.as_bytes()[..h.len() + 1 + p.len()];
    let signature = part(sig)?;
    if !candidates
        .iter()
        .any(|k| k.verify_signature(&alg, message, &signature).is_ok())
    {
        return Err(Failure::Invalid("bad signature"));
    }
    let claims: Value =
        serde_json::from_slice(&part(p)?).map_err(|_| Failure::Invalid("claims are not JSON"))?;
    check_claims(&claims, config, crate::session::now_secs())
}

fn check_claims(c: &Value, config: &OidcConfig, now: u64) -> Result<LogoutClaims, Failure> {
    let skew = config.clock_skew.as_secs();
    if c.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return Err(Failure::Invalid("wrong issuer"));
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(a)) => *a == config.client_id,
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str() == Some(config.client_id.as_str())),
        _ => false,
    };
    if !aud_ok {
        return Err(Failure::Invalid("wrong audience"));
    }
    let iat = c
        .get("iat")
        .and_then(Value::as_u64)
        .ok_or(Failure::Invalid("no iat"))?;
    if iat > now.saturating_add(skew) || iat.saturating_add(MAX_AGE_SECS.saturating_add(skew)) < now
    {
        return Err(Failure::Invalid("iat out of range"));
    }
    // Back-Channel Logout 1.0 §2.4 requires `exp`: a token without one never expires.
    let exp = c
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or(Failure::Invalid("no exp"))?;
    if exp.saturating_add(skew) < now {
        return Err(Failure::Invalid("expired"));
    }
    let event_ok = c
        .get("events")
        .and_then(|e| e.get(EVENT))
        .is_some_and(Value::is_object);
    if !event_ok {
        return Err(Failure::Invalid("no back-channel logout event"));
    }
    if c.get("nonce").is_some() {
        return Err(Failure::Invalid("a logout token must not carry a nonce"));
    }
    let sid = c.get("sid").and_then(Value::as_str).map(str::to_string);
    let sub = c.get("sub").and_then(Value::as_str).map(str::to_string);
    if sid.is_none() && sub.is_none() {
        return Err(Failure::Invalid("neither sid nor sub"));
    }
    let jti = c
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty())
        .ok_or(Failure::Invalid("no jti"))?
        .to_string();
    Ok(LogoutClaims { sid, sub, jti })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> OidcConfig {
        crate::oidc::tests_support::config()
    }

    fn good() -> Value {
        json!({"iss": "https://idp.test", "aud": ["bff", "x"], "iat": 1000, "exp": 1120, "jti": "j1", "sid": "s1",
               "events": {EVENT: {}}})
    }

    #[test]
    fn claims_rules() {
        let c = config();
        assert_eq!(
            check_claims(&good(), &c, 1000).map_err(|_| ()),
            Ok(LogoutClaims {
                sid: Some("s1".into()),
                sub: None,
                jti: "j1".into()
            })
        );
        let refuse = |f: &dyn Fn(&mut Value), now: u64| {
            let mut v = good();
            f(&mut v);
            assert!(check_claims(&v, &c, now).is_err(), "{v}");
        };
        refuse(&|v| v["iss"] = json!("https://other"), 1000);
        refuse(&|v| v["aud"] = json!("other"), 1000);
        refuse(&|v| v["nonce"] = json!("n"), 1000);
        refuse(&|v| v["events"] = json!({}), 1000);
        refuse(
            &|v| {
                v.as_object_mut().map(|o| o.remove("jti"));
            },
            1000,
        );
        refuse(
            &|v| {
                v.as_object_mut().map(|o| o.remove("sid"));
            },
            1000,
        );
        refuse(
            &|v| {
                v.as_object_mut().map(|o| o.remove("exp"));
            },
            1000,
        );
        refuse(&|v| v["exp"] = json!(960), 1000);
        refuse(&|_| {}, 1000 + MAX_AGE_SECS + 31);
        refuse(&|_| {}, 900);
        // Times at the edge of u64 neither panic nor wrap into acceptance.
        refuse(&|v| v["iat"] = json!(u64::MAX), 1000);
        refuse(&|v| v["exp"] = json!(0), u64::MAX);
        let mut v = good();
        v["exp"] = json!(u64::MAX);
        assert!(check_claims(&v, &c, 1000).is_ok());
    }
}
