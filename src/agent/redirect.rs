//! Where a browser may be sent after login: a path on the SPA's origin, or a URL on an
//! allow-listed origin. Nothing else, however it is spelled.

use url::Url;

/// Resolves a requested `return_to` against the post-login page. `None` when it is not
/// allowed; an empty request means the post-login page itself.
pub fn resolve(requested: &str, home: &Url, allowed_origins: &[String]) -> Option<Url> {
    if requested.is_empty() {
        return Some(home.clone());
    }
    if requested.len() > 2048
        || requested
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    let target = if requested.starts_with('/') {
        // `//host` and `/\host` are protocol-relative in browsers: refuse them.
        if requested.starts_with("//") {
            return None;
        }
        home.join(requested).ok()?
    } else {
        Url::parse(requested).ok()?
    };
    let origin = target.origin().ascii_serialization();
    let trusted =
        origin == home.origin().ascii_serialization() || allowed_origins.contains(&origin);
    let plain = matches!(target.scheme(), "http" | "https")
        && target.username().is_empty()
        && target.password().is_none();
    (trusted && plain).then_some(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Classic open-redirect payloads (after oauth2-proxy's corpus): none may leave the
    /// trusted origins.
    const ATTACKS: &[&str] = &[
        "//evil.com",
        "///evil.com",
        "////evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https://evil.com",
        "http://evil.com/",
        "https:evil.com",
        "http:/evil.com",
        "//evil.com/%2F..",
        "/\t/evil.com",
        "/ /evil.com",
        "javascript:alert(1)",
        "data:text/html,<script>",
        "https://www.example.com.evil.com/",
        "https://www.example.com@evil.com/",
        "https://user:pass@www.example.com/",
        "//www.example.com@evil.com",
        "https://evil.com\\@www.example.com",
        "ftp://www.example.com/",
        "https://www.example.com:8443/",
        "/%0d%0aSet-Cookie:x",
        "\r\n/x",
        "https:\\\\evil.com",
        "%2F%2Fevil.com",
        "http://[::1]/",
    ];

    fn home() -> Url {
        Url::parse("https://www.example.com/app/").expect("url")
    }

    #[test]
    fn open_redirect_corpus_is_refused() {
        let allowed = vec!["https://admin.example.com".to_string()];
        for a in ATTACKS {
            let got = resolve(a, &home(), &allowed);
            let ok = got.as_ref().is_some_and(|u| {
                let o = u.origin().ascii_serialization();
                o == "https://www.example.com" || o == "https://admin.example.com"
            });
            assert!(got.is_none() || ok, "{a:?} resolved to {got:?}");
        }
    }

    #[test]
    fn paths_and_allowed_origins_pass() {
        let allowed = vec!["https://admin.example.com".to_string()];
        let r = |s: &str| resolve(s, &home(), &allowed).map(|u| u.to_string());
        assert_eq!(r("").as_deref(), Some("https://www.example.com/app/"));
        assert_eq!(
            r("/orders?id=7#x").as_deref(),
            Some("https://www.example.com/orders?id=7#x")
        );
        assert_eq!(
            r("https://admin.example.com/a").as_deref(),
            Some("https://admin.example.com/a")
        );
        assert_eq!(r("https://evil.com/"), None);
        assert_eq!(r("//evil.com"), None);
    }
}
