//! A route's `identity`: the headers that tell the upstream who the user is (from the
//! session's claims), and the claims a session must carry to use the route.

use super::file::IdentityFile;
use super::load::Problems;
use super::{AuthMode, RouteIdentity};
use http::HeaderName;

/// Headers that carry something else bffgate vouches for, or frame the request.
const NOT_IDENTITY: [&str; 8] = [
    "authorization",
    "cookie",
    "host",
    "connection",
    "transfer-encoding",
    "content-length",
    "x-forwarded-for",
    "x-request-id",
];

/// Checks `routes[i].identity` (`key` is `routes[i]`) for a route with session policy `auth`.
pub(super) fn build(f: IdentityFile, key: &str, auth: AuthMode, p: &mut Problems) -> RouteIdentity {
    let mut headers = Vec::new();
    for (name, claim) in f.headers {
        let hk = format!("{key}.identity.headers.{name}");
        match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h)
                if NOT_IDENTITY.contains(&h.as_str()) || h.as_str().starts_with("x-forwarded-") =>
            {
                p.add(hk, format!("`{h}` is set by bffgate for another purpose"));
            }
            Ok(h) if claim.trim().is_empty() => {
                p.add(hk, format!("`{h}` names no claim"));
            }
            Ok(h) => headers.push((h, claim)),
            Err(_) => p.add(hk, "not a header name"),
        }
    }
    let mut require = Vec::new();
    for (claim, values) in f.require {
        let rk = format!("{key}.identity.require.{claim}");
        if values.is_empty() {
            p.add(rk, "lists no accepted value");
        } else {
            require.push((claim, values));
        }
    }
    if auth == AuthMode::None && (!headers.is_empty() || !require.is_empty()) {
        p.add(
            format!("{key}.identity"),
            "needs `auth: required` or `optional`: a route that reads no session knows no user",
        );
    }
    RouteIdentity { headers, require }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    fn with_route(identity: &str, auth: &str) -> String {
        format!(
            "{}routes: [{{name: r, match: {{path_prefix: /r}}, upstreams: [\"http://127.0.0.1:9\"], auth: {auth}, identity: {identity}}}]\n",
            base()
        )
    }

    #[test]
    fn identity_settings_are_checked_with_their_keys() {
        let ok = with_route(
            "{headers: {X-User-Sub: sub}, require: {groups: [admin]}}",
            "required",
        );
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        let bad = with_route(
            "{headers: {Authorization: sub, 'a b': sub, X-Empty: ' '}, require: {groups: []}}",
            "required",
        );
        let keys: Vec<String> = problems(&bad).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "routes[0].identity.headers.Authorization",
                "routes[0].identity.headers.X-Empty",
                "routes[0].identity.headers.a b",
                "routes[0].identity.require.groups"
            ]
        );
        let none = with_route("{headers: {X-User-Sub: sub}}", "none");
        let keys: Vec<String> = problems(&none).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["routes[0].identity"]);
    }
}
