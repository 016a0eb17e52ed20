//! The `oidc` section: the OpenID provider and this client's registration there (issuer,
//! client credentials, redirect URLs, accepted ID-token algorithms, login timings).

use super::file::OidcFile;
use super::load::Problems;
use super::values::{duration, duration_or_zero, http_url};
use super::{defaults, resolve, AgentConfig, ClientAuth, OidcConfig, SecretString};
use std::path::Path;

/// JWS algorithms an ID token may be signed with (`none` is refused separately).
const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384",
];

/// Checks the oidc section; the redirect URI must be the agent's own callback.
pub(super) fn build(
    f: OidcFile,
    base_dir: &Path,
    agent: &AgentConfig,
    p: &mut Problems,
) -> OidcConfig {
    let issuer = http_url(&f.issuer, "oidc.issuer", p);
    if issuer.query().is_some() || issuer.fragment().is_some() {
        p.add("oidc.issuer", "must have no query or fragment");
    }
    if f.client_id.is_empty() {
        p.add("oidc.client_id", "must not be empty");
    }
    let client_secret = resolve::text_secret(&f.client_secret, "oidc.client_secret", base_dir, p);
    if client_secret.is_empty() {
        p.add(
            "oidc.client_secret",
            "must not be empty (a confidential client needs its secret)",
        );
    }
    let client_auth = match f.client_auth.as_str() {
        "client_secret_basic" => ClientAuth::Basic,
        "client_secret_post" => ClientAuth::Post,
        other => {
            p.add(
                "oidc.client_auth",
                format!("`{other}` is not client_secret_basic or client_secret_post"),
            );
            ClientAuth::Basic
        }
    };
    if !f.scopes.iter().any(|s| s == "openid") {
        p.add("oidc.scopes", "must include `openid`");
    }
    let redirect_uri = http_url(&f.redirect_uri, "oidc.redirect_uri", p);
    if !redirect_uri.path().starts_with(&agent.base_path)
        || !redirect_uri.path().ends_with("/callback")
    {
        p.add(
            "oidc.redirect_uri",
            format!("must be this gateway's `{}/callback` URL", agent.base_path),
        );
    }
    let post_login_redirect = http_url(&f.post_login_redirect, "oidc.post_login_redirect", p);
    let post_logout_redirect = f
        .post_logout_redirect
        .as_deref()
        .map(|u| http_url(u, "oidc.post_logout_redirect", p));
    for (i, alg) in f.id_token_algs.iter().enumerate() {
        if alg.eq_ignore_ascii_case("none") {
            p.add(
                format!("oidc.id_token_algs[{i}]"),
                "`none` (unsigned tokens) is never accepted",
            );
        } else if !ALGS.contains(&alg.as_str()) {
            p.add(
                format!("oidc.id_token_algs[{i}]"),
                format!("`{alg}` is not a JWS algorithm"),
            );
        }
    }
    if f.id_token_algs.is_empty() {
        p.add("oidc.id_token_algs", "at least one algorithm is needed");
    }
    let login_timeout = duration(&f.login_timeout, "oidc.login_timeout", p);
    let clock_skew = duration_or_zero(&f.clock_skew, "oidc.clock_skew", p);
    let logins_per_client = match f.logins_per_client {
        Some(0) => {
            p.add("oidc.logins_per_client", "must be at least 1");
            1
        }
        Some(n) => n,
        None => defaults::LOGINS_PER_CLIENT,
    };
    let ca_file = f
        .ca_file
        .map(|c| resolve::readable_file(&c, base_dir, "oidc.ca_file", p));
    OidcConfig {
        ca_file,
        issuer: f.issuer,
        client_id: f.client_id,
        client_secret: SecretString(client_secret),
        client_auth,
        scopes: f.scopes,
        redirect_uri,
        post_login_redirect,
        post_logout_redirect,
        id_token_algs: f.id_token_algs,
        session_claims: f.session_claims,
        login_timeout,
        logins_per_client,
        clock_skew,
        auth_params: f.auth_params.into_iter().collect(),
    }
}
