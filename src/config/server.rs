//! The process-level sections: `listen` (addresses and TLS certificates), `metrics` and
//! `server` (the settings handed to Pingora's `ServerConf`).

use super::file::{ListenFile, MetricsFile, ServerFile};
use super::load::Problems;
use super::values::socket_addr;
use super::{defaults, resolve, Forwarding, ServerSettings, TlsListener};
use crate::host::parse_authority;
use crate::path::PathParams;
use http::HeaderName;
use std::net::SocketAddr;
use std::path::Path;

/// The browser-facing listeners, and the TLS files of those that terminate TLS (checked
/// readable).
pub(super) fn listeners(
    listen: &[ListenFile],
    base_dir: &Path,
    p: &mut Problems,
) -> (Vec<SocketAddr>, Vec<(SocketAddr, TlsListener)>) {
    let addrs = listen
        .iter()
        .enumerate()
        .filter_map(|(i, l)| socket_addr(&l.addr, &format!("listen[{i}].addr"), p))
        .collect();
    if listen.is_empty() {
        p.add("listen", "at least one listener is needed");
    }
    let tls = listen
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.tls.as_ref()?;
            // A bad address is already reported under `listen[i].addr` above; the config
            // is refused, so its certificate files are not checked as well.
            let addr = l.addr.parse().ok()?;
            let cert =
                resolve::readable_file(&t.cert, base_dir, &format!("listen[{i}].tls.cert"), p);
            let key = resolve::readable_file(&t.key, base_dir, &format!("listen[{i}].tls.key"), p);
            Some((addr, TlsListener { cert, key }))
        })
        .collect();
    (addrs, tls)
}

/// The Prometheus listener, if configured.
pub(super) fn metrics(f: Option<&MetricsFile>, p: &mut Problems) -> Option<SocketAddr> {
    f.and_then(|m| socket_addr(&m.addr, "metrics.addr", p))
}

/// Process settings, with the pid file and upgrade socket placed in `run_dir` by default.
pub(super) fn settings(
    f: ServerFile,
    base_dir: &Path,
    run_dir: &str,
    p: &mut Problems,
) -> ServerSettings {
    let threads = match f.threads {
        Some(0) => {
            p.add("server.threads", "must be at least 1");
            1
        }
        Some(n) => n,
        None => defaults::server_threads(),
    };
    let grace_period_seconds = at_most_a_day(
        f.grace_period_seconds,
        defaults::GRACE_PERIOD_SECONDS,
        "server.grace_period_seconds",
        p,
    );
    let graceful_shutdown_timeout_seconds = at_most_a_day(
        f.graceful_shutdown_timeout_seconds,
        defaults::GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS,
        "server.graceful_shutdown_timeout_seconds",
        p,
    );
    ServerSettings {
        threads,
        work_stealing: f.work_stealing.unwrap_or(false),
        hosts: hosts(f.hosts.as_deref(), p),
        path_params: path_params(f.path_params.as_deref(), p),
        grace_period_seconds,
        graceful_shutdown_timeout_seconds,
        pid_file: f
            .pid_file
            .unwrap_or_else(|| format!("{run_dir}/{}", defaults::PID_FILE_NAME)),
        upgrade_sock: f
            .upgrade_sock
            .unwrap_or_else(|| format!("{run_dir}/{}", defaults::UPGRADE_SOCK_NAME)),
        upstream_ca_file: f
            .upstream_ca_file
            .map(|c| resolve::readable_file(&c, base_dir, "server.upstream_ca_file", p)),
        forwarding: forwarding(&f.trusted_proxies, f.client_ip_header.as_deref(), p),
        dns: super::dns::settings(&f.dns, p),
    }
}

/// A drain time in seconds: a stop that waits past a day is a typo.
fn at_most_a_day(v: Option<u64>, default: u64, key: &str, p: &mut Problems) -> u64 {
    match v {
        Some(s) if s > 86_400 => {
            p.add(key, format!("{s} seconds is longer than a day (86400)"));
            default
        }
        Some(s) => s,
        None => default,
    }
}

/// `server.trusted_proxies` (CIDRs, or bare addresses meaning one host) and
/// `server.client_ip_header`.
fn forwarding(proxies: &[String], header: Option<&str>, p: &mut Problems) -> Forwarding {
    let trusted_proxies = proxies
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let parsed = s
                .parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => Some(net.trunc()),
                Err(_) => {
                    p.add(
                        format!("server.trusted_proxies[{i}]"),
                        format!("`{s}` is not an IP address or CIDR such as 10.0.0.0/8"),
                    );
                    None
                }
            }
        })
        .collect();
    let name = header.unwrap_or(defaults::CLIENT_IP_HEADER);
    let client_ip_header = HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|_| {
        p.add(
            "server.client_ip_header",
            format!("`{name}` is not a header name"),
        );
        HeaderName::from_static(defaults::CLIENT_IP_HEADER)
    });
    Forwarding {
        trusted_proxies,
        client_ip_header,
    }
}

/// `server.hosts`: each a host name or IP literal without scheme, port or path; kept
/// lowercase without a trailing dot (the form requests are compared in).
fn hosts(f: Option<&[String]>, p: &mut Problems) -> Vec<String> {
    let Some(list) = f else {
        return defaults::HOSTS.iter().map(|h| (*h).to_string()).collect();
    };
    list.iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let host = parse_authority(h)
                .filter(|a| a.port.is_none())
                .map(|a| a.host.into_owned());
            if host.is_none() {
                p.add(
                    format!("server.hosts[{i}]"),
                    "must be a host name or IP address, without scheme, port or path",
                );
            }
            host
        })
        .collect()
}

/// `server.path_params`.
fn path_params(f: Option<&str>, p: &mut Problems) -> PathParams {
    match f.unwrap_or(defaults::PATH_PARAMS) {
        "strip_for_routing" => PathParams::StripForRouting,
        "refuse" => PathParams::Refuse,
        _ => {
            p.add(
                "server.path_params",
                "must be `strip_for_routing` or `refuse`",
            );
            PathParams::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, env, problems};
    use super::super::parse;
    use crate::path::PathParams;
    use std::path::Path;

    #[test]
    fn trusted_proxies_are_cidrs_or_addresses() {
        let mut f = base();
        f.push_str("\nserver:\n  trusted_proxies: [10.0.0.0/8, \"::1\", 192.0.2.7/24]\n  client_ip_header: CF-Connecting-IP\n");
        let c = parse(Path::new("t.yaml"), &f, &env).expect("valid");
        let nets: Vec<String> = c
            .server
            .forwarding
            .trusted_proxies
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(nets, ["10.0.0.0/8", "::1/128", "192.0.2.0/24"]);
        assert_eq!(c.server.forwarding.client_ip_header, "cf-connecting-ip");
        let mut f = base();
        f.push_str(
            "\nserver:\n  trusted_proxies: [10.0.0.0/33, nope]\n  client_ip_header: \"a b\"\n",
        );
        let e = parse(Path::new("t.yaml"), &f, &env)
            .expect_err("invalid")
            .to_string();
        assert!(e.contains("server.trusted_proxies[0]"), "{e}");
        assert!(e.contains("server.trusted_proxies[1]"), "{e}");
        assert!(e.contains("server.client_ip_header"), "{e}");
    }

    #[test]
    fn work_stealing_is_off_unless_asked_for() {
        let c = parse(Path::new("t.yaml"), &base(), &env).expect("valid");
        assert!(!c.server.work_stealing);
        let text = format!("{}server: {{work_stealing: true}}\n", base());
        let c = parse(Path::new("t.yaml"), &text, &env).expect("valid");
        assert!(c.server.work_stealing);
        let text = format!("{}server: {{work_stealing: sometimes}}\n", base());
        let e = parse(Path::new("t.yaml"), &text, &env).expect_err("not a bool");
        assert!(e.to_string().contains("work_stealing"), "{e}");
    }

    #[test]
    fn hosts_and_path_params_are_checked_with_their_keys() {
        let text = format!(
            "{}server: {{hosts: [API.Example.com., 'a.test:443', 'http://b.test', '', '[::1]'], path_params: maybe}}\n",
            base()
        );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.hosts[1]",
                "server.hosts[2]",
                "server.hosts[3]",
                "server.path_params"
            ]
        );
        let ok = format!(
            "{}server: {{hosts: [API.Example.com., '[::1]'], path_params: refuse}}\n",
            base()
        );
        let c = parse(Path::new("t.yaml"), &ok, &env).expect("valid");
        assert_eq!(c.server.hosts, ["api.example.com", "[::1]"]);
        assert_eq!(c.server.path_params, PathParams::Refuse);
        let c = parse(Path::new("t.yaml"), &base(), &env).expect("valid");
        assert!(c.server.hosts.is_empty());
        assert_eq!(c.server.path_params, PathParams::StripForRouting);
    }

    #[test]
    fn runtime_directory_holds_pid_file_and_upgrade_socket() {
        let with_run_dir = |name: &str| match name {
            "RUNTIME_DIRECTORY" => Some("/run/bffgate".to_string()),
            other => env(other),
        };
        let c = parse(Path::new("t.yaml"), &base(), &with_run_dir).expect("valid");
        assert_eq!(c.server.pid_file, "/run/bffgate/bffgate.pid");
        assert_eq!(c.server.upgrade_sock, "/run/bffgate/bffgate_upgrade.sock");
        let c = parse(Path::new("t.yaml"), &base(), &env).expect("valid");
        assert_eq!(c.server.pid_file, "/tmp/bffgate.pid");
    }
}
