//! The `cookie` section: the session cookie's name and attributes (including the
//! `__Host-`/`__Secure-` prefix rules) and its sealing key ring.

use super::file::CookieFile;
use super::load::Problems;
use super::{defaults, resolve, CookieConfig, CookieKey, SameSite};
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
    if f.keys.is_empty() {
        p.add("cookie.keys", "at least one key is needed");
    }
    let mut keys: Vec<CookieKey> = Vec::new();
    for (i, k) in f.keys.iter().enumerate() {
        let valid_id = (1..=32).contains(&k.id.len())
            && k.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_id {
            p.add(
                format!("cookie.keys[{i}].id"),
                "must be 1 to 32 of A-Z a-z 0-9 _ -",
            );
        } else if keys.iter().any(|o| o.id == k.id) {
            p.add(
                format!("cookie.keys[{i}].id"),
                format!("`{}` appears twice", k.id),
            );
        }
        let secret =
            resolve::secret_key(&k.secret, &format!("cookie.keys[{i}].secret"), base_dir, p);
        keys.push(CookieKey {
            id: k.id.clone(),
            secret,
        });
    }
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
