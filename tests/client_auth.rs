//! How bffgate authenticates to the provider and sends the browser there, against the real
//! `oidc-provider`: `private_key_jwt` (RFC 7523) with no client secret configured at all —
//! the provider fetches bffgate's public key from `/bff/jwks.json` — and pushed
//! authorization requests (RFC 9126), with which the browser's authorization URL carries
//! only `client_id` and `request_uri`; PAR `required` against a provider without PAR keeps
//! `/readyz` refusing, saying why.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::agent::{cookie_value, set_cookie_for, POST_LOGIN};
use crate::common::provider::{stat, Provider, ProviderSettings, USER};
use crate::common::scrape::{metric, scrape};
use crate::common::{
    client, echo_get, eventually, expect_error, get_json, route, session_cookie, EchoServer,
    Gateway, GatewayConfig, APP_ORIGIN, COOKIE, CSRF_HEADER,
};
use crate::common::{login_alice_until_callback, session_json};

/// How long a gateway may take to answer `/readyz` 200.
const READY: Duration = Duration::from_secs(10);

/// A fresh private key from `openssl genpkey` (PKCS#8 PEM) written to `dir/name`.
fn key_file(dir: &Path, name: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("openssl")
        .arg("genpkey")
        .args(args)
        .output()
        .expect("openssl genpkey");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.join(name);
    std::fs::write(&path, out.stdout).unwrap();
    path.display().to_string()
}

/// The gateway: route `api` (session required) to `upstream`, and an `oidc` block with
/// `extra` lines (client authentication, PAR) and no `client_secret` key unless `extra`
/// has one.
fn template(provider: &Provider, upstream: &str, extra: &str) -> String {
    template_for(&provider.base_url(), provider.client_id(), upstream, extra)
}

/// As [`template`] for any issuer and client id.
fn template_for(issuer: &str, client_id: &str, upstream: &str, extra: &str) -> String {
    let cfg = GatewayConfig::new(vec![route("api", "/api", upstream, "required", "")]);
    format!(
        "{}oidc:\n  issuer: \"{}\"\n  client_id: \"{}\"\n  \
         redirect_uri: \"http://{{LISTEN}}/bff/callback\"\n  post_login_redirect: \"{POST_LOGIN}\"\n{extra}",
        cfg.yaml(),
        issuer,
        client_id,
    )
}

/// Registers bffgate's callback and, for `private_key_jwt`, the method and bffgate's JWKS
/// URL as the client's `jwks_uri` (the provider fetches it when it checks an assertion).
async fn register(provider: &mut Provider, gw: &Gateway, private_key_jwt: bool) {
    let mut patch = json!({ "redirect_uris": [gw.url("/bff/callback")] });
    if private_key_jwt {
        patch["token_endpoint_auth_method"] = json!("private_key_jwt");
        patch["jwks_uri"] = json!(gw.url("/bff/jwks.json"));
    }
    provider.update_client(patch).await;
}

/// A whole login of alice through the provider's form: the authorization URL bffgate sent
/// the browser to, and the session cookie bffgate set.
async fn login(gw: &Gateway, provider: &Provider) -> (url::Url, String) {
    let http = client();
    let pending = login_alice_until_callback(gw, provider, &http).await;
    let resp = pending.send(&http).await.unwrap();
    let status = resp.status().as_u16();
    let set = set_cookie_for(resp.headers(), COOKIE);
    let body = resp.text().await.unwrap_or_default();
    assert_eq!(status, 302, "callback: {body}\n{}", gw.log());
    let cookie = cookie_value(&set.expect("the callback sets the session cookie"));
    (pending.authorization_url, cookie)
}

/// `POST /bff/refresh` with the session cookie and the CSRF header.
async fn refresh_now(gw: &Gateway, cookie: &str) -> reqwest::Response {
    client()
        .post(gw.url("/bff/refresh"))
        .header("cookie", session_cookie(cookie))
        .header(CSRF_HEADER, "1")
        .header("origin", APP_ORIGIN)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_login_refresh_and_logout_without_a_client_secret() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(
        dir.path(),
        "ec.pem",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let echo = EchoServer::start().await;
    let mut provider = Provider::start(ProviderSettings::default()).await;
    let template = template(
        &provider,
        &echo.url(),
        &format!("  client_auth: private_key_jwt\n  signing_key: \"file:{key}\"\n  signing_kid: bff-ec-1\n"),
    );
    assert!(!template.contains("client_secret"), "{template}");
    let gw = Gateway::start(&template).await;
    register(&mut provider, &gw, true).await;
    gw.wait_ready(READY).await;

    // The JWKS: one public EC key with the configured kid, nothing private.
    let jwks = get_json(&gw.url("/bff/jwks.json")).await;
    let keys = jwks["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 1, "{jwks}");
    assert_eq!(keys[0]["kid"], "bff-ec-1");
    assert_eq!(keys[0]["alg"], "ES256");
    assert_eq!(keys[0]["kty"], "EC");
    assert!(
        keys[0].get("d").is_none(),
        "a private member is published: {jwks}"
    );

    // Login: the code exchange authenticates with an assertion the provider checked
    // against the key it fetched from bffgate.
    let (_, cookie) = login(&gw, &provider).await;
    let echoed = echo_get(&gw, "/api/x", &cookie).await;
    assert!(echoed
        .header("authorization")
        .is_some_and(|a| a.starts_with("Bearer ")));
    let jwks_served = metric(
        &scrape(&gw).await,
        "bff_requests_total{route=\"agent_jwks\",status=\"200\"}",
    )
    .unwrap_or(0.0);
    assert!(
        jwks_served >= 2.0,
        "the provider fetched bffgate's JWKS ({jwks_served} answers, one of them ours)"
    );

    // Refresh, twice (each with a fresh assertion: a reused jti would be refused).
    for _ in 0..2 {
        let resp = refresh_now(&gw, &cookie).await;
        let status = resp.status().as_u16();
        assert_eq!(status, 200, "{}\n{}", resp.text().await.unwrap(), gw.log());
    }
    let stats = provider.stats().await;
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 2, "{stats}");
    assert_eq!(
        stat(&stats, &["grant_errors", "invalid_client"]),
        0,
        "{stats}"
    );

    // Logout revokes the refresh token at the revocation endpoint, also with an assertion.
    let resp = client()
        .post(gw.url("/bff/logout"))
        .header("cookie", session_cookie(&cookie))
        .header(CSRF_HEADER, "1")
        .header("origin", APP_ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // Revocation runs in the background after the answer.
    let revoked = eventually(Duration::from_secs(10), || async {
        stat(&provider.stats().await, &["revocation"]) == 1
    })
    .await;
    assert!(revoked, "no revocation at the provider\n{}", gw.log());

    // The provider really checks the assertion: registered with another key, it refuses
    // bffgate's, and the refresh of a new session is not granted.
    let (_, cookie) = login(&gw, &provider).await;
    let other = key_file(
        dir.path(),
        "other.pem",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let other_jwks = jwks_of(&other);
    provider
        .update_client(json!({ "jwks_uri": null, "jwks": other_jwks }))
        .await;
    // (The session's access token is still valid, so bffgate keeps using it: the answer
    // is not the point, the provider's refusal is.)
    refresh_now(&gw, &cookie).await;
    let stats = provider.stats().await;
    assert_eq!(
        stat(&stats, &["grant_errors", "invalid_client"]),
        1,
        "{stats}"
    );
    assert_eq!(stat(&stats, &["grants", "refresh_token"]), 2, "{stats}");
}

/// The public JWK Set of a PEM key, as bffgate publishes it.
fn jwks_of(pem_path: &str) -> Value {
    let pem = std::fs::read(pem_path).unwrap();
    bffgate::jose::SigningKey::from_pem(&pem, None, None)
        .expect("key")
        .jwks()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_sends_the_browser_only_client_id_and_request_uri() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(
        dir.path(),
        "rsa.pem",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let echo = EchoServer::start().await;
    let mut provider = Provider::start(ProviderSettings {
        pushed_authorization_requests: true,
        ..ProviderSettings::default()
    })
    .await;
    let discovery = provider.discovery().await;
    assert!(discovery["pushed_authorization_request_endpoint"].is_string());
    // PAR authenticated with private_key_jwt (PS256), and the default `auto`.
    let gw = Gateway::start(&template(
        &provider,
        &echo.url(),
        &format!(
            "  client_auth: private_key_jwt\n  signing_key: \"file:{key}\"\n  signing_alg: PS256\n"
        ),
    ))
    .await;
    register(&mut provider, &gw, true).await;
    gw.wait_ready(READY).await;

    let (authorization_url, cookie) = login(&gw, &provider).await;
    let mut names: Vec<String> = authorization_url
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["client_id", "request_uri"], "{authorization_url}");
    let request_uri = crate::common::query_param(&authorization_url, "request_uri").unwrap();
    assert!(
        request_uri.starts_with("urn:ietf:params:oauth:request_uri:"),
        "{request_uri}"
    );
    let mut endpoint = authorization_url.clone();
    endpoint.set_query(None);
    assert_eq!(endpoint.as_str(), discovery["authorization_endpoint"]);
    let session = session_json(&gw, &cookie).await;
    assert_eq!(session["sub"], USER, "{session}");
    let resp = refresh_now(&gw, &cookie).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    // A request_uri is single use and bound to the pushed parameters: replaying the URL the
    // browser got does not start another authorization.
    let replay = client()
        .get(authorization_url.clone())
        .send()
        .await
        .unwrap();
    let location = replay
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        location.contains("error=invalid_request_uri"),
        "a used request_uri was accepted again: {} {location}",
        replay.status()
    );

    // `off` against the same provider: the parameters travel in the URL again.
    let classic = Gateway::start(&template(
        &provider,
        &echo.url(),
        &format!(
            "  client_secret: \"{}\"\n  pushed_authorization: \"off\"\n",
            provider.client_secret()
        ),
    ))
    .await;
    classic.wait_ready(READY).await;
    let resp = client()
        .get(classic.url("/bff/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location.query_pairs().any(|(k, _)| k == "code_challenge"),
        "{location}"
    );
    assert!(
        !location.query_pairs().any(|(k, _)| k == "request_uri"),
        "{location}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_required_without_a_provider_par_endpoint_is_not_ready_and_says_why() {
    let echo = EchoServer::start().await;
    let provider = Provider::start(ProviderSettings::default()).await;
    assert!(provider
        .discovery()
        .await
        .get("pushed_authorization_request_endpoint")
        .is_none());
    let gw = Gateway::start(&template(
        &provider,
        &echo.url(),
        &format!(
            "  client_secret: \"{}\"\n  pushed_authorization: required\n",
            provider.client_secret()
        ),
    ))
    .await;
    // Discovery has answered (the provider is up) and readiness still refuses, naming the
    // setting and what discovery lacks. Discovery is retried (1 s, 2 s, ...), so ask a few
    // times within a bounded wait for the first answer to be in.
    let mut body = Value::Null;
    for _ in 0..50 {
        let resp = client().get(gw.url("/readyz")).send().await.unwrap();
        body = resp.json().await.unwrap();
        if body["code"] == "provider_unsuitable" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body["code"], "provider_unsuitable", "{body}\n{}", gw.log());
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("oidc.pushed_authorization")
            && message.contains("pushed_authorization_request_endpoint"),
        "{message}"
    );
    expect_error(
        client().get(gw.url("/readyz")).send().await.unwrap(),
        503,
        "provider_unsuitable",
    )
    .await;
    // No login starts without PAR.
    let resp = client().get(gw.url("/bff/login")).send().await.unwrap();
    assert_eq!(resp.status(), 502, "{}", resp.text().await.unwrap());
    assert!(
        gw.log().contains("pushed_authorization_request_endpoint"),
        "{}",
        gw.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn par_with_a_client_secret_authenticates_as_at_the_token_endpoint() {
    let echo = EchoServer::start().await;
    // client_secret_basic, enforced by the provider at its PAR endpoint too.
    let mut provider = Provider::start(ProviderSettings {
        pushed_authorization_requests: true,
        ..ProviderSettings::default()
    })
    .await;
    let gw = Gateway::start(&template(
        &provider,
        &echo.url(),
        &format!("  client_secret: \"{}\"\n", provider.client_secret()),
    ))
    .await;
    register(&mut provider, &gw, false).await;
    gw.wait_ready(READY).await;
    let (authorization_url, _) = login(&gw, &provider).await;
    let names: Vec<String> = authorization_url
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .collect();
    assert_eq!(names, ["client_id", "request_uri"], "{authorization_url}");
    let stats = provider.stats().await;
    assert_eq!(stat(&stats, &["client_auth_mismatch"]), 0, "{stats}");
    assert_eq!(
        stat(&stats, &["grants", "authorization_code"]),
        1,
        "{stats}"
    );
}

/// `bffgate --check` refuses what the file alone gets wrong, each with its key.
#[test]
fn check_refuses_inconsistent_client_authentication_settings() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a key").unwrap();
    let ec = key_file(
        dir.path(),
        "ec.pem",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let render = |extra: &str| {
        template_for("http://127.0.0.1:9", "bffgate", "http://127.0.0.1:9", extra)
            .replace("{LISTEN}", "127.0.0.1:8080")
            .replace("{METRICS}", "127.0.0.1:9090")
            .replace("{DIR}", &dir.path().display().to_string())
    };
    let ok = render(&format!(
        "  client_auth: private_key_jwt\n  signing_key: \"file:{ec}\"\n  pushed_authorization: required\n"
    ));
    let (status, out) = crate::common::check_config(&ok, &[]);
    assert!(status.success(), "{out}");
    for (extra, key, reason) in [
        ("  client_auth: private_key_jwt\n".to_string(), "oidc.signing_key", "needs a signing key"),
        (
            format!("  client_auth: private_key_jwt\n  signing_key: \"file:{}\"\n", junk.display()),
            "oidc.signing_key",
            "not a PEM private key",
        ),
        (
            format!("  client_auth: private_key_jwt\n  signing_key: \"file:{}/none.pem\"\n", dir.path().display()),
            "oidc.signing_key",
            "cannot read",
        ),
        (
            format!("  client_auth: private_key_jwt\n  signing_key: \"file:{ec}\"\n  signing_alg: PS256\n"),
            "oidc.signing_alg",
            "cannot be used with an EC P-256 key",
        ),
        ("  client_auth: client_secret_post\n".to_string(), "oidc.client_secret", "must not be empty"),
        (
            format!("  client_secret: s\n  signing_key: \"file:{ec}\"\n"),
            "oidc.signing_key",
            "only used with client_auth `private_key_jwt`",
        ),
        ("  client_secret: s\n  pushed_authorization: always\n".to_string(), "oidc.pushed_authorization", "not auto, required or off"),
    ] {
        let (status, out) = crate::common::check_config(&render(&extra), &[]);
        assert!(!status.success(), "accepted:\n{extra}\n{out}");
        assert!(
            out.lines().any(|l| l.contains(&format!(": {key}: ")) && l.contains(reason)),
            "no `{key}: …{reason}…` in:\n{out}"
        );
    }
}
