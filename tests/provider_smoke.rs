//! The test OpenID provider (`tests/provider`, npm `oidc-provider`) on its own, without
//! bffgate: documents what it does and checks the harness in `common/provider.rs`.
//!
//! Authorization code + PKCE by hand, the token endpoint with both client authentication
//! methods, refresh (with and without rotation, reuse detection), introspection,
//! userinfo, the login form refusing a wrong password, single sign-on, restart with the
//! same keys and state, back-channel logout (triggered, and via RP-initiated logout), and
//! the issuer override.

mod loopback;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::common::provider::{
    self, pkce_pair, random_token, OpBrowser, Provider, ProviderSettings, PASSWORD, USER,
};
use crate::common::query_param;

/// Never called: the driver stops at the redirect back.
const REDIRECT: &str = "http://127.0.0.1:9/cb";
const POST_LOGOUT: &str = "http://127.0.0.1:9/signed-out";

fn settings() -> ProviderSettings {
    ProviderSettings {
        post_logout_redirect_uris: vec![POST_LOGOUT.into()],
        ..ProviderSettings::with_redirect_uris(&[REDIRECT])
    }
}

fn jwt_part(jwt: &str, index: usize) -> Value {
    let part = jwt.split('.').nth(index).expect("JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

struct Login {
    callback: Url,
    verifier: String,
    state: String,
    nonce: String,
}

/// Authorization request with PKCE, driven through the login form by `browser`.
async fn authorize(
    op: &Provider,
    browser: &OpBrowser,
    user: &str,
    password: &str,
) -> Result<Login, String> {
    let (verifier, challenge) = pkce_pair();
    let (state, nonce) = (random_token(), random_token());
    let url = op.authorization_url(
        REDIRECT,
        "openid profile email offline_access",
        &state,
        &nonce,
        &challenge,
    );
    let callback = browser.authorize(url, user, password).await?;
    Ok(Login {
        callback,
        verifier,
        state,
        nonce,
    })
}

/// A full login and code exchange; the token response.
async fn tokens(op: &Provider, browser: &OpBrowser) -> Value {
    let login = authorize(op, browser, USER, PASSWORD).await.expect("login");
    let code = query_param(&login.callback, "code").expect("code");
    let (status, body) = op.exchange_code(&code, REDIRECT, &login.verifier).await;
    assert_eq!(status, 200, "code exchange: {body}");
    body
}

/// An RP-initiated logout request for `id_token`, back to [`POST_LOGOUT`] with `state=bye`.
fn end_session_url(op: &Provider, id_token: &str) -> Url {
    let mut end = Url::parse(&op.url("/session/end")).unwrap();
    end.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", POST_LOGOUT)
        .append_pair("state", "bye");
    end
}

#[tokio::test]
async fn code_flow_with_pkce_refresh_introspection_and_stats() {
    let op = Provider::start(settings()).await;

    // Discovery
    let d = op.discovery().await;
    assert_eq!(d["issuer"], op.issuer());
    assert_eq!(op.issuer(), op.base_url());
    assert_eq!(op.base_url(), format!("http://127.0.0.1:{}", op.port()));
    assert_eq!(d["authorization_endpoint"], op.url("/auth"));
    assert_eq!(d["token_endpoint"], op.url("/token"));
    assert_eq!(d["userinfo_endpoint"], op.url("/me"));
    assert_eq!(d["end_session_endpoint"], op.url("/session/end"));
    assert_eq!(d["introspection_endpoint"], op.url("/token/introspection"));
    assert_eq!(d["revocation_endpoint"], op.url("/token/revocation"));
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["response_types_supported"], json!(["code"]));
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["backchannel_logout_session_supported"], true);
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);

    // A wrong password is refused, and so is an unknown user.
    let browser = OpBrowser::new();
    let err = authorize(&op, &browser, USER, "looking-glass")
        .await
        .err()
        .expect("refused");
    assert!(err.starts_with("login rejected"), "{err}");
    assert!(err.contains("Invalid login or password"), "{err}");
    let err = authorize(&op, &browser, "mallory", PASSWORD)
        .await
        .err()
        .expect("refused");
    assert!(err.starts_with("login rejected"), "{err}");

    // The right one goes through, back to the redirect URI with code, state and iss.
    let login = authorize(&op, &browser, USER, PASSWORD)
        .await
        .expect("login");
    assert!(
        login.callback.as_str().starts_with(REDIRECT),
        "{}",
        login.callback
    );
    assert_eq!(
        query_param(&login.callback, "state").as_deref(),
        Some(login.state.as_str())
    );
    assert_eq!(query_param(&login.callback, "iss"), Some(op.issuer()));
    let code = query_param(&login.callback, "code").expect("code");

    // A wrong verifier is refused (and burns nothing: the code still works after).
    let (status, body) = op.exchange_code(&code, REDIRECT, &pkce_pair().0).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );

    let (status, t) = op.exchange_code(&code, REDIRECT, &login.verifier).await;
    assert_eq!(status, 200, "code exchange: {t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 60);
    let at = t["access_token"].as_str().expect("access_token");
    let rt = t["refresh_token"]
        .as_str()
        .expect("refresh_token without prompt=consent");
    let id_token = t["id_token"].as_str().expect("id_token");
    // offline_access was dropped (no prompt=consent), the refresh token issued anyway.
    assert_eq!(t["scope"], "openid profile email");

    // The ID token: RS256 with a key from the JWKS, our claims.
    let header = jwt_part(id_token, 0);
    assert_eq!(header["alg"], "RS256");
    let jwks = reqwest::get(op.url("/jwks"))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "private key leaked: {jwks}"
    );
    let claims = jwt_part(id_token, 1);
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], op.client_id());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"].as_str(), Some(login.nonce.as_str()));
    assert_eq!(claims["name"], "Alice Liddell");
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(claims["email_verified"], true);
    // `sid` only when the client registered a back-channel logout URI.
    assert!(claims.get("sid").is_none(), "{claims}");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // Replaying the code fails and revokes what it gave.
    let (status, body) = op.exchange_code(&code, REDIRECT, &login.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(op.introspect(at).await["active"], false);
    assert_eq!(op.refresh(rt).await.0, 400);

    // Again, properly this time (single sign-on: no login form).
    let t = tokens(&op, &browser).await;
    let at = t["access_token"].as_str().unwrap().to_owned();
    let rt = t["refresh_token"].as_str().unwrap().to_owned();

    let (status, info) = op.userinfo(&at).await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        info,
        json!({"sub": "alice", "name": "Alice Liddell", "email": "alice@example.com", "email_verified": true})
    );

    let i = op.introspect(&at).await;
    assert_eq!(i["active"], true, "{i}");
    assert_eq!(i["sub"], "alice");
    assert_eq!(i["client_id"], op.client_id());
    assert_eq!(i["token_type"], "Bearer");
    assert_eq!(op.introspect("not-a-token").await["active"], false);

    // Refresh (rotation is on by default): new access and refresh tokens.
    let (status, r) = op.refresh(&rt).await;
    assert_eq!(status, 200, "refresh: {r}");
    let at2 = r["access_token"].as_str().unwrap().to_owned();
    let rt2 = r["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(at2, at);
    assert_ne!(rt2, rt);
    assert!(r["id_token"].is_string(), "{r}");
    assert_eq!(op.introspect(&at2).await["active"], true);
    assert_eq!(op.introspect(&rt2).await["active"], true);

    // Reusing the rotated-out refresh token: invalid_grant, and the whole grant is revoked.
    let (status, body) = op.refresh(&rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(op.introspect(&at2).await["active"], false);
    assert_eq!(op.refresh(&rt2).await.0, 400);

    // Revocation.
    let t = tokens(&op, &browser).await;
    let at3 = t["access_token"].as_str().unwrap();
    assert_eq!(op.revoke(at3).await, 200);
    assert_eq!(op.introspect(at3).await["active"], false);
    let (status, _) = op.userinfo(at3).await;
    assert_eq!(status, 401);

    let s = op.stats().await;
    assert_eq!(s["grants"]["authorization_code"], 3, "{s}");
    assert_eq!(s["grants"]["refresh_token"], 1, "{s}");
    assert_eq!(s["grant_errors"]["invalid_grant"], 5, "{s}");
    assert_eq!(s["refresh_token_reuse"], 1, "{s}");
    assert_eq!(s["authorization_code_reuse"], 1, "{s}");
    assert_eq!(s["logins"], json!({"success": 1, "failure": 2}), "{s}");
    assert_eq!(s["authorizations"], 3, "{s}");
    assert_eq!(s["userinfo"], json!({"success": 1, "error": 1}), "{s}");
    assert_eq!(s["revocation"], 1, "{s}");
    assert_eq!(s["server_errors"], 0, "{s}\n{}", op.log());
}

#[tokio::test]
async fn pkce_is_required() {
    let op = Provider::start(settings()).await;
    let mut url = Url::parse(&op.url("/auth")).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", op.client_id())
        .append_pair("response_type", "code")
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", "openid")
        .append_pair("state", "s1");
    let back = OpBrowser::new()
        .authorize(url, USER, PASSWORD)
        .await
        .expect("error redirect");
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );
    assert_eq!(query_param(&back, "state").as_deref(), Some("s1"));
    assert_eq!(op.stats().await["logins"]["success"], 0);

    // A redirect URI that is not registered gets no redirect at all.
    let (_, challenge) = pkce_pair();
    let url = op.authorization_url(
        "http://127.0.0.1:9/elsewhere",
        "openid",
        "s",
        "n",
        &challenge,
    );
    let err = OpBrowser::new()
        .authorize(url, USER, PASSWORD)
        .await
        .unwrap_err();
    assert!(err.contains("400") && err.contains("redirect_uri"), "{err}");
}

#[tokio::test]
async fn client_secret_post_short_access_tokens_and_no_rotation() {
    let op = Provider::start(ProviderSettings {
        token_endpoint_auth_method: "client_secret_post".into(),
        access_token_ttl: 2,
        rotate_refresh_token: false,
        ..settings()
    })
    .await;
    let t = tokens(&op, &OpBrowser::new()).await;
    assert_eq!(t["expires_in"], 2);
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(op.introspect(at).await["active"], true);

    // client_secret_basic is refused for a client_secret_post client.
    let resp = reqwest::Client::new()
        .post(op.url("/token"))
        .basic_auth(op.client_id(), Some(op.client_secret()))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", rt)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    // Without rotation the same refresh token works again and again.
    for _ in 0..2 {
        let (status, r) = op.refresh(rt).await;
        assert_eq!(status, 200, "{r}");
        assert!(
            r.get("refresh_token").is_none() || r["refresh_token"] == rt,
            "{r}"
        );
    }

    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        op.introspect(at).await["active"],
        false,
        "expired after 2 s"
    );
    let s = op.stats().await;
    assert_eq!(s["grants"]["refresh_token"], 2, "{s}");
    assert_eq!(s["grant_errors"]["invalid_client"], 1, "{s}");
    assert_eq!(s["client_auth_mismatch"], 1, "{s}");
}

#[tokio::test]
async fn secret_in_body_refused_for_a_basic_client_unless_lenient() {
    for strict in [true, false] {
        let op = Provider::start(ProviderSettings {
            strict_client_auth: strict,
            ..settings()
        })
        .await;
        let resp = reqwest::Client::new()
            .post(op.url("/token/introspection"))
            .form(&[
                ("token", "x"),
                ("client_id", op.client_id()),
                ("client_secret", op.client_secret()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), if strict { 401 } else { 200 });
    }
}

#[tokio::test]
async fn tokens_expiring_with_the_session_die_at_rp_initiated_logout() {
    let op = Provider::start(ProviderSettings {
        tokens_expire_with_session: true,
        ..settings()
    })
    .await;
    let browser = OpBrowser::new();
    let t = tokens(&op, &browser).await;
    let at = t["access_token"].as_str().unwrap();
    let rt = t["refresh_token"].as_str().unwrap();
    assert_eq!(op.introspect(at).await["active"], true);
    let id_token = t["id_token"].as_str().unwrap();
    let back = browser
        .follow_logout(end_session_url(&op, id_token).as_str())
        .await
        .expect("logout");
    assert_eq!(back.as_str(), format!("{POST_LOGOUT}?state=bye"));
    assert_eq!(op.introspect(at).await["active"], false);
    assert_eq!(op.refresh(rt).await.0, 400);
    assert_eq!(op.stats().await["end_session"], 1);
}

#[tokio::test]
async fn restart_keeps_port_keys_and_state() {
    let mut op = Provider::start(settings()).await;
    let browser = OpBrowser::new();
    let t = tokens(&op, &browser).await;
    let jwks1 = reqwest::get(op.url("/jwks"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let (port, pid) = (op.port(), op.pid().unwrap());

    op.stop();
    assert!(!op.is_running());
    assert!(
        reqwest::get(op.discovery_url()).await.is_err(),
        "still answering"
    );

    op.restart().await;
    assert_eq!(op.port(), port);
    assert_ne!(op.pid().unwrap(), pid);
    let jwks2 = reqwest::get(op.url("/jwks"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(jwks1, jwks2, "same signing key after restart");

    // Tokens, grants and the browser session survived.
    assert_eq!(
        op.introspect(t["access_token"].as_str().unwrap()).await["active"],
        true
    );
    let (status, r) = op.refresh(t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{r}");
    tokens(&op, &browser).await;
    assert_eq!(
        op.stats().await["logins"]["success"],
        0,
        "SSO session kept: no login form"
    );

    // A crash loses the state but keeps the keys.
    op.kill();
    op.restart().await;
    assert_eq!(
        reqwest::get(op.url("/jwks"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        jwks1
    );
    assert_eq!(
        op.refresh(r["refresh_token"].as_str().unwrap()).await.0,
        400
    );
}

#[tokio::test]
async fn issuer_override_is_what_discovery_and_tokens_claim() {
    let op = Provider::start(ProviderSettings {
        issuer_override: Some("http://op.invalid".into()),
        ..settings()
    })
    .await;
    assert_eq!(op.issuer(), "http://op.invalid");
    let d = op.discovery().await;
    assert_eq!(d["issuer"], "http://op.invalid");
    // The endpoints still follow the request's host.
    assert_eq!(d["token_endpoint"], op.url("/token"));
    let t = tokens(&op, &OpBrowser::new()).await;
    assert_eq!(
        jwt_part(t["id_token"].as_str().unwrap(), 1)["iss"],
        "http://op.invalid"
    );
}

/// With `prompt=consent` oidc-provider keeps `offline_access`; the consent step is granted
/// automatically (no page).
#[tokio::test]
async fn prompt_consent_keeps_offline_access() {
    let op = Provider::start(settings()).await;
    let (verifier, challenge) = pkce_pair();
    let mut url = op.authorization_url(REDIRECT, "openid offline_access", "s", "n", &challenge);
    url.query_pairs_mut().append_pair("prompt", "consent");
    let back = OpBrowser::new()
        .authorize(url, USER, PASSWORD)
        .await
        .expect("login");
    let code = query_param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    let (status, t) = op.exchange_code(&code, REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "openid offline_access");
    assert!(t["refresh_token"].is_string());
}
