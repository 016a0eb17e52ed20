//! Tokens for one route rather than for the user's session: RFC 8693 token exchange of the
//! user's access token, and the client-credentials grant, each for an RFC 8707 resource.
//!
//! Both are plain form posts to the token endpoint, authenticated as every other call
//! (`client_secret_basic`, `client_secret_post` or `private_key_jwt`). The provider's error
//! code is kept; the tokens never appear in an error.

use super::error::without_url;
use super::{form_encode, timed, OidcClient, OidcError};
use crate::config::{ClientAuth, GrantKind, RouteGrant};
use crate::session::{now_secs, RouteToken};

/// RFC 8693 §2.1's `grant_type`.
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3: the subject is an OAuth access token.
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl OidcClient {
    /// Obtains `grant`'s token: by exchanging `subject` (the user's access token) or, for a
    /// client-credentials grant, as the client itself (`subject` unused).
    ///
    /// # Errors
    /// [`OidcError::InvalidGrant`] when the provider refuses the subject token;
    /// [`OidcError::Rejected`] for other refusals (the code is kept);
    /// [`OidcError::Unavailable`] when the provider cannot be reached, fails or answers
    /// something that is not a token response.
    pub async fn route_token(
        &self,
        grant: &RouteGrant,
        subject: &str,
    ) -> Result<RouteToken, OidcError> {
        let provider = self.provider().await?;
        let url = provider
            .metadata
            .token_endpoint()
            .ok_or_else(|| OidcError::Misconfigured("the provider has no token endpoint".into()))?
            .url()
            .clone();
        let mut form: Vec<(&str, String)> = match grant.kind {
            GrantKind::Exchange => vec![
                ("grant_type", TOKEN_EXCHANGE.into()),
                ("subject_token", subject.into()),
                ("subject_token_type", ACCESS_TOKEN_TYPE.into()),
                ("requested_token_type", ACCESS_TOKEN_TYPE.into()),
            ],
            GrantKind::Client => vec![("grant_type", "client_credentials".into())],
        };
        if let Some(r) = &grant.resource {
            form.push(("resource", r.clone()));
        }
        if !grant.scopes.is_empty() {
            form.push(("scope", grant.scopes.join(" ")));
        }
        form.extend(self.auth_form()?);
        let mut req = self.http.post(url).form(&form);
        if self.config.client_auth == ClientAuth::Basic {
            req = req.basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(self.config.client_secret.expose())),
            );
        }
        let op = match grant.kind {
            GrantKind::Exchange => "token_exchange",
            GrantKind::Client => "client_credentials",
        };
        let resp = timed(op, req.send())
            .await
            .map_err(|e| OidcError::Unavailable(format!("{op}: {}", without_url(&e))))?;
        let status = resp.status().as_u16();
        let body: serde_json::Value = resp
            .json()
            .await
            .map_err(|_| OidcError::Unavailable(format!("{op}: the answer is not JSON")))?;
        parse(status, &body, op)
    }
}

/// A token endpoint's answer as a route token, or the refusal it carries.
fn parse(status: u16, body: &serde_json::Value, op: &str) -> Result<RouteToken, OidcError> {
    let text = |k: &str| body.get(k).and_then(|v| v.as_str());
    match (status, text("access_token")) {
        (200, Some(token)) if !token.is_empty() => {
            // RFC 8693 §2.2.1: `N_A` means "not an access token" and is refused here.
            if text("token_type").is_some_and(|t| t.eq_ignore_ascii_case("n_a")) {
                return Err(OidcError::Rejected(format!(
                    "{op}: the issued token is not an access token"
                )));
            }
            Ok(RouteToken {
                access_token: token.to_string(),
                expires_at: body
                    .get("expires_in")
                    .and_then(serde_json::Value::as_u64)
                    .map(|s| now_secs().saturating_add(s)),
            })
        }
        (200, _) => Err(OidcError::Unavailable(format!(
            "{op}: the answer has no access_token"
        ))),
        (s, _) if s >= 500 => Err(OidcError::Unavailable(format!("{op}: answered {s}"))),
        (_, _) => match text("error").unwrap_or("error") {
            "invalid_grant" => Err(OidcError::InvalidGrant),
            code => Err(OidcError::Rejected(format!(
                "{op} refused: {}",
                code.chars()
                    .filter(|c| c.is_ascii_graphic())
                    .take(64)
                    .collect::<String>()
            ))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_become_tokens_or_refusals_without_the_token() {
        let ok = parse(200, &json!({"access_token": "at", "expires_in": 60}), "x").expect("ok");
        assert_eq!(ok.access_token, "at");
        assert!(ok.expires_at.is_some_and(|e| e >= now_secs() + 59));
        assert!(matches!(
            parse(200, &json!({"token_type": "N_A", "access_token": "x"}), "x"),
            Err(OidcError::Rejected(_))
        ));
        assert!(matches!(
            parse(200, &json!({}), "x"),
            Err(OidcError::Unavailable(_))
        ));
        assert!(matches!(
            parse(400, &json!({"error": "invalid_grant"}), "x"),
            Err(OidcError::InvalidGrant)
        ));
        match parse(
            400,
            &json!({"error": "invalid_target", "access_token": "leak"}),
            "x",
        ) {
            Err(OidcError::Rejected(m)) => {
                assert!(m.contains("invalid_target") && !m.contains("leak"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(503, &json!({}), "x"),
            Err(OidcError::Unavailable(_))
        ));
    }
}
