//! `server.dns`: how the background resolver (`service/dns.rs`) looks up upstream host
//! names — which name servers, and how often a name is looked up again.

use super::defaults;
use super::file::DnsFile;
use super::load::Problems;
use super::values::duration;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The resolver's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// Name servers to ask; empty: the system's (`/etc/resolv.conf`, plus `/etc/hosts`).
    pub nameservers: Vec<SocketAddr>,
    /// A name is looked up again no sooner than this after a lookup, whatever its TTL; a
    /// failed lookup is retried after this long.
    pub refresh_min: Duration,
    /// A name is looked up again no later than this, whatever its TTL.
    pub refresh_max: Duration,
}

/// Checks `server.dns`: name servers are IP addresses (with an optional port), and
/// `refresh_min` is not longer than `refresh_max`.
pub(super) fn settings(f: &DnsFile, p: &mut Problems) -> DnsSettings {
    let nameservers = f
        .nameservers
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, s)| {
            let parsed = s.parse::<SocketAddr>().ok().or_else(|| {
                s.parse::<IpAddr>()
                    .ok()
                    .map(|ip| SocketAddr::new(ip, defaults::DNS_PORT))
            });
            if parsed.is_none() {
                p.add(
                    format!("server.dns.nameservers[{i}]"),
                    format!("`{s}` is not an IP address or ip:port"),
                );
            }
            parsed
        })
        .collect();
    let refresh_min = duration(
        f.refresh_min
            .as_deref()
            .unwrap_or(defaults::DNS_REFRESH_MIN),
        "server.dns.refresh_min",
        p,
    );
    let refresh_max = duration(
        f.refresh_max
            .as_deref()
            .unwrap_or(defaults::DNS_REFRESH_MAX),
        "server.dns.refresh_max",
        p,
    );
    if refresh_min > refresh_max {
        p.add(
            "server.dns.refresh_min",
            "is longer than server.dns.refresh_max",
        );
    }
    DnsSettings {
        nameservers,
        refresh_min,
        refresh_max,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    #[test]
    fn dns_settings_are_checked() {
        let text = base()
            + "server:\n  dns: {nameservers: ['127.0.0.1:5353', '::1', 'dns.local'], refresh_min: 1m, refresh_max: 10s}\n";
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            vec!["server.dns.nameservers[2]", "server.dns.refresh_min"]
        );
    }
}
