//! The `routes` section: each API route's match (path prefix, host, methods), upstreams
//! (parsed, not looked up), prefix stripping, session policy, header changes and timeouts, and the
//! checks across routes (unique names, no two routes that could take the same request).

use super::file::RouteFile;
use super::identity;
use super::load::Problems;
use super::token;
use super::values::duration;
use super::{defaults, AgentConfig, AuthMode, RouteConfig, UpstreamConfig};
use crate::path::{is_clean_path, segment_prefix};
use http::{HeaderName, HeaderValue, Method};

/// Checks every route, in file order.
pub(super) fn build(
    f: Vec<RouteFile>,
    agent: &AgentConfig,
    has_provider: bool,
    p: &mut Problems,
) -> Vec<RouteConfig> {
    let mut out: Vec<RouteConfig> = Vec::with_capacity(f.len());
    for (i, r) in f.into_iter().enumerate() {
        let key = format!("routes[{i}]");
        let valid_name = !r.name.is_empty()
            && r.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid_name {
            p.add(
                format!("{key}.name"),
                "must be non-empty, of A-Z a-z 0-9 _ - .",
            );
        } else if let Some(j) = out.iter().position(|o| o.name == r.name) {
            p.add(
                format!("{key}.name"),
                format!("`{}` is already the name of routes[{j}]", r.name),
            );
        }
        let prefix = if r.matcher.path_prefix.len() > 1 {
            r.matcher.path_prefix.trim_end_matches('/').to_string()
        } else {
            r.matcher.path_prefix.clone()
        };
        if !is_clean_path(&prefix) && prefix != "/" {
            p.add(
                format!("{key}.match.path_prefix"),
                "must be a plain path starting with `/` (no `//`, `.`/`..` segments, `%`, `?`, `#`)",
            );
        } else if segment_prefix(&agent.base_path, &prefix) {
            p.add(
                format!("{key}.match.path_prefix"),
                format!(
                    "lies under agent.base_path `{}`, whose endpoints take precedence",
                    agent.base_path
                ),
            );
        } else if matches!(prefix.as_str(), "/healthz" | "/readyz") {
            p.add(
                format!("{key}.match.path_prefix"),
                "`/healthz` and `/readyz` are reserved",
            );
        }
        // Kept in the canonical form requests are compared in (lowercase, no trailing dot).
        let host = r.matcher.host.as_ref().map(|h| {
            match crate::host::parse_authority(h).filter(|a| a.port.is_none()) {
                Some(a) => a.host.into_owned(),
                None => {
                    p.add(
                        format!("{key}.match.host"),
                        format!("`{h}` is not a host name (no scheme or port)"),
                    );
                    h.to_ascii_lowercase()
                }
            }
        });
        let methods = r.matcher.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(m_i, m)| {
                    match Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            p.add(
                                format!("{key}.match.methods[{m_i}]"),
                                format!("`{m}` is not an HTTP method"),
                            );
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        if methods.as_ref().is_some_and(Vec::is_empty) {
            p.add(
                format!("{key}.match.methods"),
                "an empty list would match nothing; omit it for all methods",
            );
        }
        if r.upstreams.is_empty() {
            p.add(
                format!("{key}.upstreams"),
                "at least one upstream is needed",
            );
        }
        let upstreams = r
            .upstreams
            .iter()
            .enumerate()
            .filter_map(|(u_i, u)| upstream(u, &format!("{key}.upstreams[{u_i}]"), p))
            .collect();
        let strip_prefix = r.strip_prefix.as_ref().map(|s| {
            let s = s.trim_end_matches('/').to_string();
            if !is_clean_path(&s) || !segment_prefix(&s, &prefix) {
                p.add(
                    format!("{key}.strip_prefix"),
                    format!("must be a whole-segment prefix of match.path_prefix `{prefix}`"),
                );
            }
            s
        });
        let auth = match r.auth.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "none" => AuthMode::None,
            other => {
                p.add(
                    format!("{key}.auth"),
                    format!("`{other}` is not one of required, optional, none"),
                );
                AuthMode::Required
            }
        };
        let headers_remove = r
            .headers
            .remove
            .iter()
            .enumerate()
            .filter_map(|(h_i, h)| match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    p.add(
                        format!("{key}.headers.remove[{h_i}]"),
                        format!("`{h}` is not a header name"),
                    );
                    None
                }
            })
            .collect();
        let headers_add = r
            .headers
            .add
            .iter()
            .filter_map(|(n, v)| {
                let hk = format!("{key}.headers.add.{n}");
                match (
                    HeaderName::from_bytes(n.as_bytes()),
                    HeaderValue::from_str(v),
                ) {
                    (Ok(n), Ok(_)) if reserved_header(&n) => {
                        p.add(hk, format!("`{n}` is set by bffgate and cannot be added"));
                        None
                    }
                    (Ok(n), Ok(v)) => Some((n, v)),
                    (Err(_), _) => {
                        p.add(hk, "not a header name");
                        None
                    }
                    (_, Err(_)) => {
                        p.add(hk, "not a valid header value");
                        None
                    }
                }
            })
            .collect();
        let connect_timeout = r
            .timeouts
            .connect
            .as_deref()
            .map_or(defaults::CONNECT_TIMEOUT, |d| {
                duration(d, &format!("{key}.timeouts.connect"), p)
            });
        let read_timeout = r
            .timeouts
            .read
            .as_deref()
            .map_or(defaults::READ_TIMEOUT, |d| {
                duration(d, &format!("{key}.timeouts.read"), p)
            });
        let health_check = r
            .health_check
            .as_ref()
            .map(|h| duration(&h.interval, &format!("{key}.health_check.interval"), p));
        let identity = identity::build(r.identity, &key, auth, p);
        let token = token::build(r.token, &key, auth, has_provider, p);
        let session_ok = match auth {
            AuthMode::None => Err("an `auth: none` route reads no session; use per_client_ip"),
            AuthMode::Required | AuthMode::Optional => Ok(()),
        };
        let rate_limit =
            super::rate::build(r.rate_limit, &format!("{key}.rate_limit"), session_ok, p);
        let route = RouteConfig {
            name: r.name,
            path_prefix: prefix,
            host,
            methods,
            upstreams,
            strip_prefix,
            auth,
            headers_remove,
            headers_add,
            connect_timeout,
            read_timeout,
            tls_verify: r.tls_verify,
            health_check,
            identity,
            token,
            dpop: r.dpop,
            rate_limit,
        };
        if let Some(j) = out.iter().position(|o| ambiguous(o, &route)) {
            p.add(
                format!("{key}.match"),
                format!(
                    "overlaps routes[{j}] (`{}`): same path_prefix and host with overlapping methods, so which one serves a request is ambiguous",
                    out[j].name
                ),
            );
        }
        out.push(route);
    }
    out
}

/// One upstream: `http(s)://host[:port]` and nothing more. A host name is not looked up
/// here: `service/dns.rs` resolves it in the background.
fn upstream(s: &str, key: &str, p: &mut Problems) -> Option<UpstreamConfig> {
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            p.add(key, format!("`{s}` is not a URL: {e}"));
            return None;
        }
    };
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            p.add(key, format!("scheme `{other}` is not http or https"));
            return None;
        }
    };
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
    {
        p.add(
            key,
            "must be scheme://host[:port] with no path, query or credentials",
        );
        return None;
    }
    let Some(host) = url.host_str() else {
        p.add(key, "has no host");
        return None;
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    // `url` knows the default port of http and https, the only schemes left here, so the
    // fallback is never taken; it spells out what that default is.
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    let ip = host.parse().ok();
    Some(UpstreamConfig {
        host,
        port,
        ip,
        tls,
    })
}

/// Request headers bffgate sets itself, which a route may not add.
fn reserved_header(n: &HeaderName) -> bool {
    matches!(
        n.as_str(),
        "authorization"
            | "cookie"
            | "host"
            | "connection"
            | "transfer-encoding"
            | "content-length"
            | "x-forwarded-for"
            | "x-forwarded-proto"
            | "x-forwarded-host"
    )
}

/// Whether two routes could both take the same request: same prefix and host, and
/// methods that overlap (no list means every method).
fn ambiguous(a: &RouteConfig, b: &RouteConfig) -> bool {
    if a.path_prefix != b.path_prefix || a.host != b.host {
        return false;
    }
    match (&a.methods, &b.methods) {
        (Some(x), Some(y)) => x.iter().any(|m| y.contains(m)),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    #[test]
    fn every_route_problem_is_collected() {
        let text = base()
            + "routes:\n"
            + "  - {name: a, match: {path_prefix: /api}, upstreams: [http://127.0.0.1:1]}\n"
            + "  - {name: a, match: {path_prefix: /api/}, upstreams: ['ftp://x', 'http://127.0.0.1:2/p'], auth: maybe}\n"
            + "  - {name: c, match: {path_prefix: /bff/x}, upstreams: [], strip_prefix: /other}\n";
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec![
                "routes[1].name",
                "routes[1].upstreams[0]",
                "routes[1].upstreams[1]",
                "routes[1].auth",
                "routes[1].match",
                "routes[2].match.path_prefix",
                "routes[2].upstreams",
                "routes[2].strip_prefix",
            ]
        );
    }

    #[test]
    fn methods_that_differ_are_not_ambiguous() {
        let text = base()
            + "routes:\n"
            + "  - {name: r, match: {path_prefix: /api, methods: [GET]}, upstreams: [http://127.0.0.1:1]}\n"
            + "  - {name: w, match: {path_prefix: /api, methods: [POST]}, upstreams: [http://127.0.0.1:1]}\n"
            + "  - {name: h, match: {path_prefix: /api, host: a.test}, upstreams: [http://127.0.0.1:1]}\n";
        assert_eq!(problems(&text), Vec::new());
    }
}
