//! A route's `token`: which access token its upstream gets — the user's, none, or one
//! obtained for the route alone (token exchange or client credentials, for a resource).

use super::file::TokenFile;
use super::load::Problems;
use super::{AuthMode, GrantKind, RouteGrant, TokenPolicy};

/// The longest resource indicator or scope list accepted: they travel in every grant.
const MAX_TEXT: usize = 512;

/// Checks `routes[i].token` (`key` is `routes[i]`) for a route with session policy `auth`;
/// `has_provider` says whether an `oidc` section can issue route tokens.
pub(super) fn build(
    f: Option<TokenFile>,
    key: &str,
    auth: AuthMode,
    has_provider: bool,
    p: &mut Problems,
) -> TokenPolicy {
    let tk = format!("{key}.token");
    let (kind, resource, scopes) = match f {
        None => return TokenPolicy::User,
        Some(TokenFile::Name(n)) => match n.as_str() {
            "user" => return TokenPolicy::User,
            "none" => return TokenPolicy::None,
            "client" => (GrantKind::Client, None, Vec::new()),
            other => {
                p.add(
                    tk,
                    format!("`{other}` is not one of user, none, client, or a grant"),
                );
                return TokenPolicy::User;
            }
        },
        Some(TokenFile::Grant(g)) => {
            let kind = match g.grant.as_str() {
                "exchange" => GrantKind::Exchange,
                "client" => GrantKind::Client,
                other => {
                    p.add(
                        format!("{tk}.grant"),
                        format!("`{other}` is not exchange or client"),
                    );
                    return TokenPolicy::User;
                }
            };
            (kind, g.resource, g.scopes)
        }
    };
    if let Some(r) = &resource {
        if let Some(why) = resource_problem(r) {
            p.add(format!("{tk}.resource"), why);
        }
    }
    for (i, s) in scopes.iter().enumerate() {
        let printable = s
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if s.is_empty() || !printable || s.len() > MAX_TEXT {
            p.add(
                format!("{tk}.scopes[{i}]"),
                "a scope is 1 to 512 printable ASCII characters without spaces, quotes or backslashes",
            );
        }
    }
    // A route token is obtained with bffgate's own client credentials: forwarding one for a
    // visitor without a session would lend the client's authority to anyone.
    if auth != AuthMode::Required {
        p.add(
            tk.clone(),
            format!(
                "a `{}` token needs `auth: required` (an anonymous request would be forwarded with bffgate's own credentials)",
                kind.as_str()
            ),
        );
    }
    if !has_provider {
        p.add(tk, "route tokens come from the provider: configure `oidc`");
    }
    TokenPolicy::Grant(RouteGrant {
        kind,
        resource,
        scopes,
    })
}

/// Why `r` is not an RFC 8707 resource indicator (an absolute URI without a fragment).
fn resource_problem(r: &str) -> Option<String> {
    if r.len() > MAX_TEXT {
        return Some("longer than 512 characters".into());
    }
    match url::Url::parse(r) {
        Err(e) => Some(format!("`{r}` is not an absolute URI: {e}")),
        Ok(u) if u.fragment().is_some() => {
            Some("a resource indicator has no fragment (RFC 8707 §2)".into())
        }
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{problem_keys, with_routes_and_oidc};

    #[test]
    fn names_and_grants_parse_and_bad_ones_name_their_key() {
        let ok = |t: &str| problem_keys(&with_routes_and_oidc(t, true));
        assert!(ok("token: user").is_empty());
        assert!(ok("token: none").is_empty());
        assert!(ok("token: client").is_empty());
        assert!(ok("token: {resource: 'https://orders.test', scopes: [orders:read]}").is_empty());
        assert!(ok("token: {grant: client, resource: 'https://orders.test'}").is_empty());
        assert_eq!(ok("token: bearer"), ["routes[0].token"]);
        assert_eq!(ok("token: {grant: refresh}"), ["routes[0].token.grant"]);
        assert_eq!(
            ok("token: {resource: 'https://o.test/#x'}"),
            ["routes[0].token.resource"]
        );
        assert_eq!(
            ok("token: {resource: 'orders'}"),
            ["routes[0].token.resource"]
        );
        assert_eq!(
            ok("token: {scopes: ['a b']}"),
            ["routes[0].token.scopes[0]"]
        );
        assert_eq!(
            ok("token: {resource: 'https://o.test', x: 1}"),
            ["routes[0].token"]
        );
    }

    #[test]
    fn route_tokens_need_a_session_and_a_provider() {
        let keys = |t: &str, oidc| problem_keys(&with_routes_and_oidc(t, oidc));
        assert_eq!(
            keys("auth: optional\n    token: client", true),
            ["routes[0].token"]
        );
        assert_eq!(
            keys("auth: none\n    token: {resource: 'https://o.test'}", true),
            ["routes[0].token"]
        );
        assert_eq!(keys("token: client", false), ["routes[0].token"]);
        assert!(keys("auth: none\n    token: none", false).is_empty());
    }
}
