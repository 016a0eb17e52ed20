//! The login driver: [`OpBrowser`], a user agent for the provider's pages that follows
//! redirects and fills in its forms (login, consent, logout confirmation) with just enough
//! HTML parsing, and [`PendingCallback`], bffgate's callback reached but not yet called.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::common::query_param;

/// The most redirects and form posts one drive through the provider follows.
const MAX_HOPS: usize = 20;

/// A user agent for the provider's pages: no automatic redirects, its own cookie jar (so
/// the provider's session survives between logins, and bffgate's cookies never mix with
/// the provider's although both live on 127.0.0.1).
pub struct OpBrowser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
}

impl Default for OpBrowser {
    fn default() -> Self {
        Self::new()
    }
}

/// bffgate's callback, reached but not yet called.
#[derive(Clone, Debug)]
pub struct PendingCallback {
    /// bffgate's redirect URI with `code`, `state` (and `iss`) as the provider sent them.
    pub url: Url,
    /// The cookies bffgate set on the login response (the login binding), `(name, value)`.
    pub cookies: Vec<(String, String)>,
    /// Where bffgate's login sent the browser (the provider's authorization request).
    pub authorization_url: Url,
}

impl PendingCallback {
    /// A query parameter of the callback URL.
    pub fn param(&self, name: &str) -> Option<String> {
        query_param(&self.url, name)
    }

    pub fn code(&self) -> Option<String> {
        self.param("code")
    }

    pub fn state(&self) -> Option<String> {
        self.param("state")
    }

    /// A query parameter of the authorization request bffgate made.
    pub fn authorization_param(&self, name: &str) -> Option<String> {
        query_param(&self.authorization_url, name)
    }

    /// `name=value; name=value` of [`PendingCallback::cookies`].
    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// The same callback with one query parameter replaced (or added, or with `None`
    /// removed): to tamper with `state`, `code` or `iss`.
    pub fn with_param(&self, name: &str, value: Option<&str>) -> PendingCallback {
        let mut pairs: Vec<(String, String)> = self
            .url
            .query_pairs()
            .filter(|(k, _)| k != name)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some(value) = value {
            pairs.push((name.to_owned(), value.to_owned()));
        }
        let mut url = self.url.clone();
        url.set_query(None);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        PendingCallback {
            url,
            ..self.clone()
        }
    }

    /// `GET` the callback on bffgate with the login-binding cookies; bffgate's answer (the
    /// test reads its `Set-Cookie` and `Location`). `client` must not follow redirects.
    pub async fn send(&self, client: &reqwest::Client) -> Result<reqwest::Response, String> {
        self.send_with_cookie(client, &self.cookie_header()).await
    }

    /// As [`PendingCallback::send`] with an explicit `Cookie` header ("" for none).
    pub async fn send_with_cookie(
        &self,
        client: &reqwest::Client,
        cookie: &str,
    ) -> Result<reqwest::Response, String> {
        let mut req = client.get(self.url.clone());
        if !cookie.is_empty() {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        req.send()
            .await
            .map_err(|e| format!("GET callback {}: {e}", self.url))
    }
}

/// The whole login at once with a fresh [`OpBrowser`]: `GET start_url` on bffgate (e.g.
/// `http://127.0.0.1:PORT/bff/login?return_to=/`), the provider's login form, and bffgate's
/// callback; returns bffgate's answer to the callback. `client` must not follow redirects.
pub async fn login(
    client: &reqwest::Client,
    start_url: &str,
    user: &str,
    password: &str,
) -> Result<reqwest::Response, String> {
    OpBrowser::new()
        .login(client, start_url, user, password)
        .await
}

enum Hop {
    Get(Url),
    Post(Url, Vec<(String, String)>),
}

impl OpBrowser {
    pub fn new() -> Self {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(Arc::clone(&jar))
            .no_proxy()
            .timeout(Duration::from_secs(20))
            .build()
            .expect("reqwest client");
        OpBrowser { http, jar }
    }

    /// The cookies this browser would send to `url` (`name=value; ...`), if any.
    pub fn cookies_for(&self, url: &str) -> Option<String> {
        use reqwest::cookie::CookieStore as _;
        let url = Url::parse(url).ok()?;
        self.jar
            .cookies(&url)
            .and_then(|h| h.to_str().ok().map(str::to_owned))
    }

    /// [`OpBrowser::login_until_callback`] then [`PendingCallback::send`].
    pub async fn login(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        user: &str,
        password: &str,
    ) -> Result<reqwest::Response, String> {
        self.login_until_callback(client, start_url, user, password)
            .await?
            .send(client)
            .await
    }

    /// `GET start_url` on bffgate with `client` (no cookies), which must redirect to the
    /// provider's authorization endpoint; then drives the provider (login form with
    /// `user`/`password` if it asks — with a live provider session it does not — and any
    /// consent) until it redirects back off the provider: that URL (bffgate's callback) is
    /// returned, not called. Errors start with `login rejected` when the provider refused
    /// the credentials.
    pub async fn login_until_callback(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        user: &str,
        password: &str,
    ) -> Result<PendingCallback, String> {
        self.login_until_callback_with_cookie(client, start_url, "", user, password)
            .await
    }

    /// As [`OpBrowser::login_until_callback`], sending `cookie` (a `Cookie` header value,
    /// "" for none) on the request to `start_url`.
    pub async fn login_until_callback_with_cookie(
        &self,
        client: &reqwest::Client,
        start_url: &str,
        cookie: &str,
        user: &str,
        password: &str,
    ) -> Result<PendingCallback, String> {
        let start = Url::parse(start_url).map_err(|e| format!("bad start url {start_url}: {e}"))?;
        let mut req = client.get(start.clone());
        if !cookie.is_empty() {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        let resp = req.send().await.map_err(|e| format!("GET {start}: {e}"))?;
        let status = resp.status();
        let cookies = set_cookies(resp.headers());
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let Some(location) = location.filter(|_| status.is_redirection()) else {
            let body = resp.text().await.unwrap_or_default();
            return Err(format!(
                "GET {start}: expected a redirect to the provider, got {status}: {body}"
            ));
        };
        let authorization_url = start
            .join(&location)
            .map_err(|e| format!("bad Location {location}: {e}"))?;
        let url = self
            .authorize(authorization_url.clone(), user, password)
            .await?;
        Ok(PendingCallback {
            url,
            cookies,
            authorization_url,
        })
    }

    /// Drives the provider from an authorization request (no bffgate involved) and returns
    /// the redirect back to the client (`redirect_uri?code=...&state=...`), not called.
    pub async fn authorize(
        &self,
        authorization_url: Url,
        user: &str,
        password: &str,
    ) -> Result<Url, String> {
        let url = self
            .drive(authorization_url.clone(), Some((user, password)))
            .await?;
        if url.origin() == authorization_url.origin() {
            return Err(format!(
                "the provider never redirected back; ended at {url}"
            ));
        }
        Ok(url)
    }

    /// Follows an RP-initiated logout (the `end_session_endpoint` URL bffgate redirected
    /// to) through the provider's confirmation form; returns where the provider finally
    /// sends the browser (the `post_logout_redirect_uri`, with `state`), or the provider's
    /// own "signed out" page URL when there is none. Back-channel logout requests for the
    /// session's clients are sent before the provider answers the confirmation.
    pub async fn follow_logout(&self, end_session_url: &str) -> Result<Url, String> {
        let url = Url::parse(end_session_url)
            .map_err(|e| format!("bad end-session url {end_session_url}: {e}"))?;
        self.drive(url, None).await
    }

    /// Follows redirects and submits forms while on the provider's origin (that of
    /// `start`); returns the first URL off it, or the URL of a provider page with no form.
    pub async fn drive(
        &self,
        start: Url,
        credentials: Option<(&str, &str)>,
    ) -> Result<Url, String> {
        let origin = start.origin();
        let mut hop = Hop::Get(start);
        let mut logins = 0;
        for _ in 0..MAX_HOPS {
            let (url, resp) = match hop {
                Hop::Get(url) => {
                    let resp = self.http.get(url.clone()).send().await;
                    (url, resp)
                }
                Hop::Post(url, fields) => {
                    let resp = self.http.post(url.clone()).form(&fields).send().await;
                    (url, resp)
                }
            };
            let resp = resp.map_err(|e| format!("{url}: {e}"))?;
            let status = resp.status();
            if status.is_redirection() {
                let location = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("{url}: {status} without Location"))?;
                let next = url
                    .join(location)
                    .map_err(|e| format!("{url}: bad Location {location}: {e}"))?;
                if next.origin() != origin {
                    return Ok(next);
                }
                hop = Hop::Get(next);
                continue;
            }
            let body = resp.text().await.unwrap_or_default();
            if status.as_u16() == 401 && logins > 0 {
                return Err(format!(
                    "login rejected: {status} at {url}: {}",
                    strip_tags(&body)
                ));
            }
            if !status.is_success() {
                return Err(format!("{url}: {status}: {}", strip_tags(&body)));
            }
            let Some(form) = parse_forms(&body).into_iter().next() else {
                return Ok(url);
            };
            let action = url
                .join(if form.action.is_empty() {
                    url.as_str()
                } else {
                    &form.action
                })
                .map_err(|e| format!("{url}: bad form action {}: {e}", form.action))?;
            if action.origin() != origin {
                return Err(format!(
                    "{url}: a form posts off the provider to {action} (form_post response \
                     mode is not supported by this driver)"
                ));
            }
            let mut fields = form.hidden;
            if form.inputs.iter().any(|n| n == "password") {
                let Some((user, password)) = credentials else {
                    return Err(format!("{url}: the provider asks for a login"));
                };
                logins += 1;
                if logins > 1 {
                    return Err(format!("login rejected: the login form came back at {url}"));
                }
                fields.push(("login".into(), user.into()));
                fields.push(("password".into(), password.into()));
            }
            hop = if form.method.eq_ignore_ascii_case("post") {
                Hop::Post(action, fields)
            } else {
                let mut action = action;
                action.query_pairs_mut().extend_pairs(fields);
                Hop::Get(action)
            };
        }
        Err(format!("more than {MAX_HOPS} hops through the provider"))
    }
}

/// `(name, value)` of each `Set-Cookie`, later ones replacing earlier ones of that name.
pub fn set_cookies(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for h in headers.get_all(reqwest::header::SET_COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        let pair = h.split(';').next().unwrap_or("");
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        let name = name.trim().to_owned();
        out.retain(|(n, _)| *n != name);
        out.push((name, value.trim().to_owned()));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Just enough HTML

#[derive(Debug)]
struct Form {
    action: String,
    method: String,
    /// `(name, value)` of hidden inputs.
    hidden: Vec<(String, String)>,
    /// Names of the other inputs.
    inputs: Vec<String>,
}

fn parse_forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let mut forms = Vec::new();
    let mut pos = 0;
    while let Some(start) = lower[pos..].find("<form").map(|i| i + pos) {
        let Some(tag_end) = lower[start..].find('>').map(|i| i + start) else {
            break;
        };
        let attrs = parse_attrs(&html[start + 5..tag_end]);
        let end = lower[tag_end..]
            .find("</form")
            .map_or(html.len(), |i| i + tag_end);
        let mut form = Form {
            action: attr(&attrs, "action").unwrap_or_default(),
            method: attr(&attrs, "method").unwrap_or_else(|| "get".into()),
            hidden: Vec::new(),
            inputs: Vec::new(),
        };
        let mut p = tag_end;
        while let Some(i) = lower[p..end].find("<input").map(|i| i + p) {
            let Some(e) = lower[i..end].find('>').map(|e| e + i) else {
                break;
            };
            let attrs = parse_attrs(&html[i + 6..e]);
            if let Some(name) = attr(&attrs, "name") {
                let kind = attr(&attrs, "type").unwrap_or_else(|| "text".into());
                if kind.eq_ignore_ascii_case("hidden") {
                    form.hidden
                        .push((name, attr(&attrs, "value").unwrap_or_default()));
                } else {
                    form.inputs.push(name);
                }
            }
            p = e;
        }
        forms.push(form);
        pos = end;
    }
    forms
}

fn attr(attrs: &[(String, String)], name: &str) -> Option<String> {
    attrs
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

fn parse_attrs(s: &str) -> Vec<(String, String)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        if start == i {
            i += 1;
            continue;
        }
        let name = s[start..i].to_owned();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let value = if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                let ve = s[vs..].find(q as char).map_or(s.len(), |e| e + vs);
                i = (ve + 1).min(b.len());
                &s[vs..ve]
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                &s[vs..i]
            };
            out.push((name, decode_entities(value)));
        } else {
            out.push((name, String::new()));
        }
    }
    out
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(semi) = rest.find(';').filter(|&j| j <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of an HTML page, roughly (for error messages).
fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
