//! The test OpenID provider (`tests/provider`, npm `oidc-provider`) on its own, without
//! bffgate: documents what it does and checks the harness in `common/provider.rs`.
//!
//! Authorization code + PKCE by hand, the token endpoint with both client authentication
//! methods, refresh (with and without rotation, reuse detection), introspection,
//! userinfo, the login form refusing a wrong password, single sign-on, restart with the
//! same keys and state, back-channel logout (triggered, and via RP-initiated logout), and
//! the issuer override.

#[path = "common/provider.rs"]
mod provider;

use std::time::Duration;

use base64::Engine as _;
use provider::{pkce_pair, random_token, OpBrowser, Provider, ProviderSettings, PASSWORD, USER};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

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

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
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
    let code = param(&login.callback, "code").expect("code");
    let (status, body) = op.exchange_code(&code, REDIRECT, &login.verifier).await;
    assert_eq!(status, 200, "code exchange: {body}");
    body
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
        param(&login.callback, "state").as_deref(),
        Some(login.state.as_str())
    );
    assert_eq!(param(&login.callback, "iss"), Some(op.issuer()));
    let code = param(&login.callback, "code").expect("code");

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
        param(&back, "error").as_deref(),
        Some("invalid_request"),
        "{back}"
    );
    assert_eq!(param(&back, "state").as_deref(), Some("s1"));
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

/// A request as [`mini_server`] hands it over.
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Answer = (u16, Vec<(String, String)>, String);

/// A tiny HTTP/1.1 server on loopback, one request per connection; returns its base URL.
async fn mini_server<F>(handler: F) -> String
where
    F: Fn(Req) -> Answer + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handler = std::sync::Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let handler = std::sync::Arc::clone(&handler);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let Some(head_end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let mut lines = text[..head_end].lines();
                    let mut request_line = lines.next().unwrap_or("").split(' ');
                    let method = request_line.next().unwrap_or("").to_owned();
                    let target = request_line.next().unwrap_or("").to_owned();
                    let headers: Vec<(String, String)> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                        .collect();
                    let len = headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < head_end + 4 + len {
                        continue;
                    }
                    let body =
                        String::from_utf8_lossy(&buf[head_end + 4..head_end + 4 + len]).to_string();
                    let (status, headers, body) = handler(Req {
                        method,
                        target,
                        headers,
                        body,
                    });
                    let mut out = format!("HTTP/1.1 {status} X\r\n");
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str(&format!(
                        "content-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    ));
                    let _ = sock.write_all(out.as_bytes()).await;
                    return;
                }
            });
        }
    });
    url
}

/// A back-channel logout receiver: each request body is sent on the channel, answered 200.
async fn logout_receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let base = mini_server(move |req| {
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let _ = tx.send(req.body);
        (200, Vec::new(), String::new())
    })
    .await;
    (format!("{base}/bff/backchannel-logout"), rx)
}

fn end_session_url(op: &Provider, id_token: &str) -> Url {
    let mut end = Url::parse(&op.url("/session/end")).unwrap();
    end.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", POST_LOGOUT)
        .append_pair("state", "bye");
    end
}

async fn next_logout_token(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>) -> Value {
    let body = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a back-channel logout request")
        .expect("receiver alive");
    let token = url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no logout_token in {body}"));
    assert_eq!(jwt_part(&token, 0)["typ"], "logout+jwt");
    jwt_part(&token, 1)
}

#[tokio::test]
async fn backchannel_logout_to_loopback() {
    let (receiver, mut rx) = logout_receiver().await;
    // The client's back-channel URI set at run time, as a test would once bffgate is up.
    let mut op = Provider::start(settings()).await;
    op.update_client(json!({ "backchannel_logout_uri": receiver }))
        .await;
    assert_eq!(
        op.settings().backchannel_logout_uri.as_deref(),
        Some(receiver.as_str())
    );

    // 1. Triggered by the test: every session of alice.
    let browser = OpBrowser::new();
    let t = tokens(&op, &browser).await;
    let sid = jwt_part(t["id_token"].as_str().unwrap(), 1)["sid"].clone();
    let answer = op.backchannel_logout("alice").await;
    assert_eq!(answer, json!({"sessions": 1, "sent": 1, "errors": []}));
    let claims = next_logout_token(&mut rx).await;
    assert_eq!(claims["iss"], op.issuer());
    assert_eq!(claims["aud"], op.client_id());
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["sid"], sid);
    assert!(claims["events"]["http://schemas.openid.net/event/backchannel-logout"].is_object());
    assert!(claims.get("nonce").is_none());
    // Grants revoked, provider session gone: the next login shows the form again.
    assert_eq!(
        op.introspect(t["access_token"].as_str().unwrap()).await["active"],
        false
    );
    assert_eq!(
        op.refresh(t["refresh_token"].as_str().unwrap()).await.0,
        400
    );
    assert_eq!(op.backchannel_logout("alice").await["sessions"], 0);

    // 2. RP-initiated logout: the provider calls the back-channel URI of the session's
    //    clients, then redirects to the post-logout URI.
    let t = tokens(&op, &browser).await;
    assert_eq!(op.stats().await["logins"]["success"], 2);
    let id_token = t["id_token"].as_str().unwrap();
    let sid = jwt_part(id_token, 1)["sid"].clone();
    let back = browser
        .follow_logout(end_session_url(&op, id_token).as_str())
        .await
        .expect("logout");
    assert_eq!(back.as_str(), format!("{POST_LOGOUT}?state=bye"));
    let claims = next_logout_token(&mut rx).await;
    assert_eq!(claims["sid"], sid);
    // The tokens are not revoked by RP-initiated logout unless they expire with the
    // session (`tokens_expire_with_session`): revoking them is the client's business.
    assert_eq!(
        op.introspect(t["access_token"].as_str().unwrap()).await["active"],
        true
    );

    let s = op.stats().await;
    assert_eq!(s["backchannel_logout"]["success"], 2, "{s}");
    assert_eq!(s["backchannel_logout"]["error"], 0, "{s}");
    assert_eq!(s["end_session"], 1, "{s}");

    // A receiver that is down: counted as an error, reported by the trigger.
    tokens(&op, &browser).await;
    op.update_client(json!({ "backchannel_logout_uri": "http://127.0.0.1:9/down" }))
        .await;
    let answer = op.backchannel_logout("alice").await;
    assert_eq!(answer["sent"], 0, "{answer}");
    assert_eq!(answer["errors"].as_array().unwrap().len(), 1, "{answer}");
    assert_eq!(op.stats().await["backchannel_logout"]["error"], 1);
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

/// The login driver against a stand-in for bffgate: `/bff/login` redirects to the
/// provider and sets a login-binding cookie, `/bff/callback` insists on it.
#[tokio::test]
async fn login_driver_through_a_fake_bff() {
    use std::sync::{Arc, Mutex};

    let mut op = Provider::start(settings()).await;
    // (state, verifier) of logins in flight.
    let pending: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let auth_base = op.url("/auth");
    let client_id = op.client_id().to_owned();
    let redirect: Arc<Mutex<String>> = Arc::default();
    let bff = {
        let (pending, redirect) = (Arc::clone(&pending), Arc::clone(&redirect));
        mini_server(move |req| {
            let url = Url::parse(&format!("http://bff{}", req.target)).unwrap();
            match url.path() {
                "/bff/login" => {
                    let (verifier, challenge) = pkce_pair();
                    let state = random_token();
                    pending.lock().unwrap().push((state.clone(), verifier));
                    let mut auth = Url::parse(&auth_base).unwrap();
                    auth.query_pairs_mut()
                        .append_pair("client_id", &client_id)
                        .append_pair("response_type", "code")
                        .append_pair("redirect_uri", &redirect.lock().unwrap())
                        .append_pair("scope", "openid email")
                        .append_pair("state", &state)
                        .append_pair("code_challenge", &challenge)
                        .append_pair("code_challenge_method", "S256");
                    let headers = vec![
                        ("location".into(), auth.to_string()),
                        (
                            "set-cookie".into(),
                            format!("bff_login={state}; Path=/bff/callback; HttpOnly"),
                        ),
                        ("set-cookie".into(), "other=1; Path=/".into()),
                    ];
                    (302, headers, String::new())
                }
                "/bff/callback" => {
                    let state = param(&url, "state").unwrap_or_default();
                    let cookie = req.header("cookie").unwrap_or("").to_owned();
                    if !cookie
                        .split("; ")
                        .any(|c| c == format!("bff_login={state}"))
                    {
                        return (400, Vec::new(), format!("binding mismatch: {cookie}"));
                    }
                    let code = param(&url, "code").unwrap_or_default();
                    let headers = vec![
                        ("location".into(), "/".into()),
                        (
                            "set-cookie".into(),
                            format!("bff_session={code}; Path=/; HttpOnly"),
                        ),
                    ];
                    (302, headers, String::new())
                }
                _ => (404, Vec::new(), String::new()),
            }
        })
        .await
    };
    // bffgate's port is known only once it runs: register its redirect URI then.
    *redirect.lock().unwrap() = format!("{bff}/bff/callback");
    op.update_client(json!({ "redirect_uris": [format!("{bff}/bff/callback")] }))
        .await;

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let start = format!("{bff}/bff/login?return_to=/");

    // Step by step: stop before the callback.
    let browser = OpBrowser::new();
    let cb = browser
        .login_until_callback(&client, &start, USER, PASSWORD)
        .await
        .expect("to the callback");
    assert!(cb.url.as_str().starts_with(&format!("{bff}/bff/callback?")));
    assert_eq!(cb.cookies.len(), 2);
    assert_eq!(
        cb.authorization_param("code_challenge_method").as_deref(),
        Some("S256")
    );
    let state = cb.state().unwrap();
    assert_eq!(cb.cookie_header(), format!("bff_login={state}; other=1"));
    // Tampered state: the fake BFF refuses.
    let resp = cb
        .with_param("state", Some("forged"))
        .send(&client)
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // No cookie: refused.
    let resp = cb.send_with_cookie(&client, "").await.unwrap();
    assert_eq!(resp.status(), 400);
    // The real thing.
    let resp = cb.send(&client).await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/");
    let code = cb.code().unwrap();
    let verifier = pending
        .lock()
        .unwrap()
        .iter()
        .find(|(s, _)| *s == state)
        .map(|(_, v)| v.clone())
        .unwrap();
    let (status, t) = op
        .exchange_code(&code, &format!("{bff}/bff/callback"), &verifier)
        .await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "openid email");

    // The same browser again: single sign-on, no login form (wrong password unused).
    let resp = browser
        .login(&client, &start, USER, "not-asked")
        .await
        .expect("sso");
    assert_eq!(resp.status(), 302);
    assert!(browser
        .cookies_for(&op.base_url())
        .unwrap()
        .contains("_session="));

    // A fresh browser with a wrong password.
    let err = provider::login(&client, &start, USER, "wrong")
        .await
        .unwrap_err();
    assert!(err.starts_with("login rejected"), "{err}");
    let resp = provider::login(&client, &start, USER, PASSWORD)
        .await
        .expect("login");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        op.stats().await["logins"],
        json!({"success": 2, "failure": 1})
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
    let code = param(&back, "code").unwrap_or_else(|| panic!("no code: {back}"));
    let (status, t) = op.exchange_code(&code, REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["scope"], "openid offline_access");
    assert!(t["refresh_token"].is_string());
}
