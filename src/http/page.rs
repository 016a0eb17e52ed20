//! Error pages for people: when a browser navigates (a link, a redirect from the provider,
//! the address bar) to something bffgate answers with an error, it gets a small HTML page
//! saying what happened with a way back, instead of JSON. `fetch`/XHR calls and API
//! clients keep the JSON contract.

use super::{ApiError, LocalResponse};
use http::header;
use pingora::http::RequestHeader;

/// Whether the request is a browser navigation that wants a page: `Sec-Fetch-Mode:
/// navigate` (every current browser sends it), or, without Fetch Metadata, an `Accept`
/// that names `text/html`.
pub fn wants_page(req: &RequestHeader) -> bool {
    match req.headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes().eq_ignore_ascii_case(b"navigate"),
        None => req
            .headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.to_ascii_lowercase().contains("text/html")),
    }
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page for `e`: its status, what happened, the error code, a link back to `home`
/// (the SPA) when known, and one to log in again. Scripts, frames and every other
/// resource are forbidden by its `Content-Security-Policy`.
pub fn error_page(e: ApiError, home: Option<&str>, login: &str) -> LocalResponse {
    let back = home.map_or(String::new(), |h| {
        format!(
            "<a href=\"{}\">Back to the application</a> · ",
            escape_html(h)
        )
    });
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{status} · {title}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
         code{{color:#666}}</style></head>\n<body><h1>{title}</h1><p>{message}.</p>\
         <p>{back}<a href=\"{login}\">Log in again</a></p>\
         <p><code>{status} {code}</code></p></body></html>\n",
        status = e.status(),
        title = escape_html(title(e)),
        message = escape_html(e.message()),
        code = escape_html(e.code()),
        login = escape_html(login),
    );
    let mut resp = LocalResponse::empty(e.status())
        .with_header(
            "content-security-policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'".into(),
        )
        .with_header("x-content-type-options", "nosniff".into());
    resp.body = bytes::Bytes::from(body);
    resp.content_type = Some("text/html; charset=utf-8");
    resp.error = Some(e);
    resp
}

/// A heading a person understands, by status class.
fn title(e: ApiError) -> &'static str {
    match e.status() {
        401 => "You are not logged in",
        403 => "This request was refused",
        404 => "Nothing here",
        400 | 405 | 409 | 413 | 421 => "This request cannot be served",
        _ => "Something went wrong on our side",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/x", None).expect("request");
        for (k, v) in headers {
            r.insert_header(*k, *v).expect("header");
        }
        r
    }

    #[test]
    fn navigations_want_pages_and_scripts_do_not() {
        assert!(wants_page(&req(&[("sec-fetch-mode", "navigate")])));
        assert!(!wants_page(&req(&[
            ("sec-fetch-mode", "cors"),
            ("accept", "text/html")
        ])));
        assert!(wants_page(&req(&[(
            "accept",
            "text/html,application/xhtml+xml"
        )])));
        assert!(!wants_page(&req(&[("accept", "application/json")])));
        assert!(!wants_page(&req(&[])));
    }

    #[test]
    fn the_page_escapes_what_it_shows() {
        let page = error_page(
            ApiError::InvalidState("<script>x</script>"),
            Some("https://app.example/\"><x>"),
            "/bff/login",
        );
        let body = String::from_utf8(page.body.to_vec()).expect("utf-8");
        assert_eq!(page.status, 400);
        assert!(!body.contains("<script>") && body.contains("&lt;script&gt;"));
        assert!(body.contains("https://app.example/&quot;&gt;&lt;x&gt;"));
        assert!(body.contains("invalid_state"));
        assert_eq!(page.error.map(ApiError::code), Some("invalid_state"));
    }
}
