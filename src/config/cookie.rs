//! The `cookie` section: the session cookie's name and attributes (including the
//! `__Host-`/`__Secure-` prefix rules) and its sealing key ring.

use super::file::CookieFile;
use super::load::Problems;
use super::{defaults, keyring, CookieConfig, SameSite};
use std::path::Path;

/// Whether `s` is a cookie name: an RFC 6265 token.
fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the cookie section and reads its keys.
pub(super) fn build(f: CookieFile, base_dir: &Path, p: &mut Problems) -> CookieConfig {
    let name = f
        .name
        .clone()
        .unwrap_or_else(|| defaults::cookie_name(f.secure, &f.path, f.domain.as_deref()));
    if !is_cookie_token(&name) {
        p.add(
            "cookie.name",
            format!("`{name}` is not a valid cookie name"),
        );
    }
    let same_site = match f.same_site.to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        "none" => SameSite::None,
        other => {
            p.add(
                "cookie.same_site",
                format!("`{other}` is not one of strict, lax, none"),
            );
            SameSite::Strict
        }
    };
    if same_site == SameSite::None && !f.secure {
        p.add(
            "cookie.same_site",
            "`none` requires `secure: true` (browsers refuse it otherwise)",
        );
    }
    if name.starts_with("__Host-") {
        if !f.secure {
            p.add("cookie.secure", "a `__Host-` cookie must be secure");
        }
        if f.path != "/" {
            p.add("cookie.path", "a `__Host-` cookie must have path `/`");
        }
        if f.domain.is_some() {
            p.add("cookie.domain", "a `__Host-` cookie must not set a domain");
        }
    }
    if name.starts_with("__Secure-") && !f.secure {
        p.add("cookie.secure", "a `__Secure-` cookie must be secure");
    }
    if !f.path.starts_with('/') || f.path.contains(';') {
        p.add("cookie.path", "must start with `/` and contain no `;`");
    }
    if let Some(d) = &f.domain {
        if d.is_empty() || d.contains(';') || d.contains(' ') {
            p.add("cookie.domain", format!("`{d}` is not a domain"));
        }
    }
    let keys = keyring::build(&f.keys, "cookie.keys", base_dir, p);
    CookieConfig {
        name,
        domain: f.domain,
        path: f.path,
        same_site,
        secure: f.secure,
        keys,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    #[test]
    fn host_cookie_prefix_rules() {
        let text = base().replace(
            "cookie: {",
            "cookie: {name: __Host-s, secure: false, domain: a.test, ",
        );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["cookie.secure", "cookie.domain"]);
    }

    #[test]
    fn the_default_name_is_host_prefixed_whenever_the_attributes_allow() {
        let name = |cookie_keys: &str| {
            let text = base().replace("cookie: {", &format!("cookie: {{{cookie_keys}"));
            super::super::parse(
                std::path::Path::new("t.yaml"),
                &text,
                &super::super::fixtures::env,
            )
            .expect("valid")
            .cookie
            .name
        };
        assert_eq!(name(""), "__Host-bff_session");
        assert_eq!(name("secure: false, "), "bff_session");
        assert_eq!(name("domain: a.test, "), "bff_session");
        assert_eq!(name("path: /api, "), "bff_session");
        assert_eq!(name("name: sid, "), "sid");
    }
}
