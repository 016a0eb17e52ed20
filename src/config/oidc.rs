//! The `oidc` section: the OpenID provider and this client's registration there (issuer,
//! client credentials, redirect URLs, accepted ID-token algorithms, login timings).

use super::file::OidcFile;
use super::load::Problems;
use super::values::{duration, duration_or_zero, http_url};
use super::{
    defaults, resolve, AgentConfig, ClientAuth, OidcConfig, PushedAuthorization, SecretString,
};
use crate::jose::SigningKey;
use std::path::Path;
use std::sync::Arc;

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
    let client_auth = match f.client_auth.as_str() {
        "client_secret_basic" => ClientAuth::Basic,
        "client_secret_post" => ClientAuth::Post,
        "private_key_jwt" => ClientAuth::PrivateKeyJwt,
        other => {
            p.add(
                "oidc.client_auth",
                format!(
                    "`{other}` is not client_secret_basic, client_secret_post or private_key_jwt"
                ),
            );
            ClientAuth::Basic
        }
    };
    if client_auth != ClientAuth::PrivateKeyJwt && client_secret.is_empty() {
        p.add(
            "oidc.client_secret",
            format!(
                "must not be empty with client_auth `{}` (a confidential client needs its secret)",
                f.client_auth
            ),
        );
    }
    let signing_key = signing_key(&f, client_auth, base_dir, p);
    let pushed_authorization = match f.pushed_authorization.as_str() {
        "auto" => PushedAuthorization::Auto,
        "required" => PushedAuthorization::Required,
        "off" => PushedAuthorization::Off,
        other => {
            p.add(
                "oidc.pushed_authorization",
                format!("`{other}` is not auto, required or off"),
            );
            PushedAuthorization::Auto
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
        signing_key,
        pushed_authorization,
        dpop: f.dpop,
    }
}

/// The `private_key_jwt` signing key: required (readable, supported, consistent with
/// `signing_alg`) in that mode, and refused in the others, where it would be silently unused.
fn signing_key(
    f: &OidcFile,
    client_auth: ClientAuth,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<Arc<SigningKey>> {
    if client_auth != ClientAuth::PrivateKeyJwt {
        for (key, set) in [
            ("oidc.signing_key", f.signing_key.is_some()),
            ("oidc.signing_alg", f.signing_alg.is_some()),
            ("oidc.signing_kid", f.signing_kid.is_some()),
        ] {
            if set {
                p.add(key, "only used with client_auth `private_key_jwt`");
            }
        }
        return None;
    }
    let Some(raw) = f.signing_key.as_deref() else {
        p.add(
            "oidc.signing_key",
            "client_auth `private_key_jwt` needs a signing key (`file:/path/to/key.pem`)",
        );
        return None;
    };
    if let Some(kid) = &f.signing_kid {
        if kid.is_empty() {
            p.add(
                "oidc.signing_kid",
                "must not be empty (omit it for the key's thumbprint)",
            );
        }
    }
    let file = raw.strip_prefix("file:").unwrap_or(raw);
    let path = base_dir.join(file);
    let pem = match std::fs::read(&path) {
        Ok(pem) => pem,
        Err(e) => {
            p.add(
                "oidc.signing_key",
                format!("cannot read {}: {e}", path.display()),
            );
            return None;
        }
    };
    match SigningKey::from_pem(&pem, f.signing_alg.as_deref(), f.signing_kid.as_deref()) {
        Ok(k) => Some(Arc::new(k)),
        Err(reason) => {
            // An algorithm the key cannot do is `signing_alg`'s problem; anything else the
            // key file's.
            let key = match &f.signing_alg {
                Some(a) if !crate::jose::SIGNING_ALGS.contains(&a.as_str()) => {
                    p.add(
                        "oidc.signing_alg",
                        format!("`{a}` is not RS256, PS256 or ES256"),
                    );
                    return None;
                }
                Some(a) if reason.starts_with(&format!("`{a}`")) => "oidc.signing_alg",
                _ => "oidc.signing_key",
            };
            p.add(key, format!("{}: {reason}", path.display()));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};
    use crate::jose::tests::{openssl_key, P256};

    /// The base file with an `oidc` block of `extra` lines.
    fn with_oidc(extra: &str) -> String {
        format!(
            "{}oidc:\n  issuer: https://idp.test\n  client_id: bff\n  redirect_uri: https://api.test/bff/callback\n  post_login_redirect: https://www.test/\n{extra}",
            base()
        )
    }

    fn keys(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn private_key_jwt_needs_a_usable_key_and_no_secret() {
        let dir = tempfile::tempdir().expect("dir");
        let pem = dir.path().join("key.pem");
        std::fs::write(&pem, openssl_key(&P256, &[])).expect("write");
        let pem = pem.display();
        let ok = with_oidc(&format!(
            "  client_auth: private_key_jwt\n  signing_key: file:{pem}\n  pushed_authorization: required\n"
        ));
        assert_eq!(problems(&ok), vec![]);
        // Without a key, with an unreadable one, with one that is not a key, with an
        // algorithm the key cannot do.
        assert_eq!(
            keys(&with_oidc("  client_auth: private_key_jwt\n")),
            ["oidc.signing_key"]
        );
        let missing = dir.path().join("none.pem");
        let found = problems(&with_oidc(&format!(
            "  client_auth: private_key_jwt\n  signing_key: file:{}\n",
            missing.display()
        )));
        assert_eq!(found.len(), 1);
        assert!(found[0].reason.contains("cannot read"), "{found:?}");
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").expect("write");
        assert_eq!(
            keys(&with_oidc(&format!(
                "  client_auth: private_key_jwt\n  signing_key: file:{}\n",
                junk.display()
            ))),
            ["oidc.signing_key"]
        );
        for (alg, key) in [("RS256", "oidc.signing_alg"), ("HS256", "oidc.signing_alg")] {
            assert_eq!(
                keys(&with_oidc(&format!(
                    "  client_auth: private_key_jwt\n  signing_key: file:{pem}\n  signing_alg: {alg}\n"
                ))),
                [key]
            );
        }
    }

    #[test]
    fn secret_modes_need_a_secret_and_no_signing_settings() {
        assert_eq!(
            keys(&with_oidc("  client_auth: client_secret_post\n")),
            ["oidc.client_secret"]
        );
        assert_eq!(keys(&with_oidc("")), ["oidc.client_secret"]);
        assert_eq!(
            keys(&with_oidc(
                "  client_secret: s\n  signing_key: file:/k.pem\n  signing_kid: k\n"
            )),
            ["oidc.signing_key", "oidc.signing_kid"]
        );
        assert_eq!(
            keys(&with_oidc(
                "  client_secret: s\n  client_auth: tls_client_auth\n  pushed_authorization: sometimes\n"
            )),
            ["oidc.client_auth", "oidc.pushed_authorization"]
        );
        assert_eq!(problems(&with_oidc("  client_secret: s\n")), vec![]);
    }
}
