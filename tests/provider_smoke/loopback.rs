//! The provider talking to loopback servers: back-channel logout (triggered, and via
//! RP-initiated logout) to a receiver, and the login driver through a stand-in for bffgate.

use super::*;

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
                    let state = query_param(&url, "state").unwrap_or_default();
                    let cookie = req.header("cookie").unwrap_or("").to_owned();
                    if !cookie
                        .split("; ")
                        .any(|c| c == format!("bff_login={state}"))
                    {
                        return (400, Vec::new(), format!("binding mismatch: {cookie}"));
                    }
                    let code = query_param(&url, "code").unwrap_or_default();
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
