//! Who the client is, and the forwarding headers bffgate vouches for.
//!
//! A forwarding header (`X-Forwarded-For`, `Forwarded`, `X-Real-IP`, …) is believed only
//! from a peer in `server.trusted_proxies`; from anyone else the peer's own address is the
//! client. Upstream, every forwarding header the client sent is dropped and bffgate sets its
//! own, so an upstream never reads an address, host or URL a client made up.

use crate::config::Forwarding;
use http::HeaderName;
use pingora::http::RequestHeader;
use pingora::proxy::Session as HttpSession;
use std::net::{IpAddr, SocketAddr};

/// Request headers through which a client or a proxy can claim an address, a host, a
/// scheme or a URL: all removed before bffgate sets its own. Every `x-forwarded-*` header
/// goes as well (see [`is_forwarding_header`]).
pub const FORWARDING_HEADERS: [&str; 14] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-url",
    "x-rewrite-url",
    "x-original-host",
    "x-host",
    "x-original-forwarded-for",
    "x-proxyuser-ip",
    "client-ip",
];

/// Whether `name` is a forwarding header bffgate removes from what the client sent.
pub fn is_forwarding_header(name: &HeaderName, f: &Forwarding) -> bool {
    let n = name.as_str();
    n.starts_with("x-forwarded-") || FORWARDING_HEADERS.contains(&n) || *name == f.client_ip_header
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(ip: IpAddr, f: &Forwarding) -> bool {
    f.trusted_proxies.iter().any(|net| net.contains(&ip))
}

/// The client's address for a request from `peer`: `peer` itself unless it is a trusted
/// proxy; then the configured header's address (`X-Forwarded-For`: read right to left,
/// skipping trusted hops, stopping at the first entry that is not an address).
pub fn client_of(peer: IpAddr, req: &RequestHeader, f: &Forwarding) -> IpAddr {
    let peer = peer.to_canonical();
    if !is_trusted(peer, f) {
        return peer;
    }
    forwarded_client(peer, req, f)
}

/// The client a trusted proxy `peer` names in the configured header (`peer` itself when
/// the header names none).
fn forwarded_client(peer: IpAddr, req: &RequestHeader, f: &Forwarding) -> IpAddr {
    let values = req.headers.get_all(&f.client_ip_header);
    if f.client_ip_header == "x-forwarded-for" {
        let joined: Vec<&str> = values.iter().filter_map(|v| v.to_str().ok()).collect();
        let mut client = peer;
        for entry in joined.iter().flat_map(|v| v.split(',')).rev() {
            let Some(ip) = parse_addr(entry) else { break };
            client = ip;
            if !is_trusted(ip, f) {
                break;
            }
        }
        return client;
    }
    let mut it = values.iter();
    match (it.next(), it.next()) {
        (Some(v), None) => v.to_str().ok().and_then(parse_addr).unwrap_or(peer),
        _ => peer,
    }
}

/// A live request's client address, and whether its peer is a trusted proxy (whose
/// forwarding headers and request id are believed): the peer read and checked once.
/// `(None, false)` on a Unix socket.
pub fn client_and_trust(http: &HttpSession, f: &Forwarding) -> (Option<IpAddr>, bool) {
    let Some(peer) = http.client_addr().and_then(|a| a.as_inet()) else {
        return (None, false);
    };
    let peer = peer.ip().to_canonical();
    if is_trusted(peer, f) {
        (Some(forwarded_client(peer, http.req_header(), f)), true)
    } else {
        (Some(peer), false)
    }
}

/// The client address of a live request (`None` on a Unix socket).
pub fn client_addr(http: &HttpSession, f: &Forwarding) -> Option<IpAddr> {
    client_and_trust(http, f).0
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `::1`, `[::1]:5678`.
fn parse_addr(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let ip = s
        .parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| {
            s.strip_prefix('[')
                .and_then(|r| r.strip_suffix(']'))
                .and_then(|r| r.parse().ok())
        })?;
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarding(nets: &[&str], header: &'static str) -> Forwarding {
        Forwarding {
            trusted_proxies: nets.iter().map(|n| n.parse().expect("cidr")).collect(),
            client_ip_header: HeaderName::from_static(header),
        }
    }

    fn req(headers: &[(&'static str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("request");
        for (k, v) in headers {
            r.append_header(*k, *v).expect("header");
        }
        r
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let f = forwarding(&[], "x-forwarded-for");
        let r = req(&[("x-forwarded-for", "1.1.1.1"), ("x-real-ip", "2.2.2.2")]);
        assert_eq!(client_of(ip("203.0.113.9"), &r, &f), ip("203.0.113.9"));
        assert_eq!(
            client_of(ip("::ffff:203.0.113.9"), &r, &f),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_chain_is_read_right_to_left() {
        let f = forwarding(&["10.0.0.0/8"], "x-forwarded-for");
        let peer = ip("10.0.0.1");
        let r = req(&[("x-forwarded-for", "6.6.6.6, 198.51.100.4, 10.0.0.7")]);
        assert_eq!(client_of(peer, &r, &f), ip("198.51.100.4"));
        let r = req(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.4:443, [2001:db8::1]:80"),
        ]);
        assert_eq!(client_of(peer, &r, &f), ip("2001:db8::1"));
        // Garbage stops the walk at the last address a trusted hop vouched for.
        let r = req(&[("x-forwarded-for", "6.6.6.6, garbage, 10.0.0.9")]);
        assert_eq!(client_of(peer, &r, &f), ip("10.0.0.9"));
        // No header: the trusted peer itself.
        assert_eq!(client_of(peer, &req(&[]), &f), peer);
    }

    #[test]
    fn a_configured_header_is_believed_only_once_and_from_a_trusted_peer() {
        let f = forwarding(&["192.0.2.0/24"], "cf-connecting-ip");
        let r = req(&[
            ("cf-connecting-ip", "198.51.100.4"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(client_of(ip("192.0.2.1"), &r, &f), ip("198.51.100.4"));
        assert_eq!(client_of(ip("203.0.113.1"), &r, &f), ip("203.0.113.1"));
        let twice = req(&[
            ("cf-connecting-ip", "1.1.1.1"),
            ("cf-connecting-ip", "2.2.2.2"),
        ]);
        assert_eq!(client_of(ip("192.0.2.1"), &twice, &f), ip("192.0.2.1"));
    }

    #[test]
    fn every_spelling_of_a_forwarding_header_is_recognised() {
        let f = forwarding(&[], "cf-connecting-ip");
        for n in [
            "x-forwarded-prefix",
            "forwarded",
            "x-original-url",
            "cf-connecting-ip",
        ] {
            assert!(is_forwarding_header(&HeaderName::from_static(n), &f), "{n}");
        }
        assert!(!is_forwarding_header(
            &HeaderName::from_static("accept"),
            &f
        ));
    }
}
