//! The `admin` section: the admin API's own listener (off when the section is absent), the
//! bearer token it wants (`${ENV}` or `file:/path`) and the client networks it answers.

use super::file::AdminFile;
use super::load::Problems;
use super::values::socket_addr;
use super::{defaults, resolve, AdminConfig};
use std::net::SocketAddr;
use std::path::Path;

/// Checks the admin section: an address of its own (no public or metrics listener), a
/// token long enough to resist guessing, CIDRs that parse.
pub(super) fn build(
    f: AdminFile,
    listen: &[SocketAddr],
    metrics: Option<SocketAddr>,
    base_dir: &Path,
    p: &mut Problems,
) -> Option<AdminConfig> {
    let addr = socket_addr(&f.addr, "admin.addr", p);
    if let Some(a) = addr {
        if listen.contains(&a) {
            p.add(
                "admin.addr",
                format!("{a} is a public listener (`listen`); the admin API needs its own"),
            );
        } else if metrics == Some(a) {
            p.add("admin.addr", format!("{a} is the metrics listener"));
        }
    }
    let token = resolve::text_secret(&f.token, "admin.token", base_dir, p);
    if token.trim().is_empty() {
        p.add("admin.token", "the admin API needs a token");
    } else if token.chars().count() < defaults::ADMIN_TOKEN_MIN_CHARS {
        p.add(
            "admin.token",
            format!(
                "shorter than {} characters (generate one with `bffgate --gen-key`)",
                defaults::ADMIN_TOKEN_MIN_CHARS
            ),
        );
    }
    let allow = f
        .allow
        .iter()
        .enumerate()
        .filter_map(|(i, cidr)| match cidr.trim().parse::<ipnet::IpNet>() {
            Ok(net) => Some(net),
            Err(_) => match cidr.trim().parse::<std::net::IpAddr>() {
                Ok(ip) => Some(ipnet::IpNet::from(ip)),
                Err(_) => {
                    p.add(
                        format!("admin.allow[{i}]"),
                        format!("`{cidr}` is not a CIDR (e.g. 127.0.0.1/32) or an address"),
                    );
                    None
                }
            },
        })
        .collect();
    Some(AdminConfig {
        addr: addr?,
        token,
        allow,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn admin_section_is_checked_with_its_keys() {
        let ok = format!(
            "{}admin: {{addr: 127.0.0.1:9191, token: {TOKEN}, allow: [127.0.0.1/32, \"::1\"]}}\n",
            base()
        );
        assert!(problems(&ok).is_empty(), "{:?}", problems(&ok));
        let bad = format!(
            "{}metrics: {{addr: 127.0.0.1:9090}}\nadmin: {{addr: 127.0.0.1:8080, token: short, allow: [10.0.0.0/33]}}\n",
            base()
        );
        let keys: Vec<String> = problems(&bad).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["admin.addr", "admin.token", "admin.allow[0]"]);
        let metrics = format!(
            "{}metrics: {{addr: 127.0.0.1:9090}}\nadmin: {{addr: 127.0.0.1:9090, token: {TOKEN}}}\n",
            base()
        );
        let keys: Vec<String> = problems(&metrics).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["admin.addr"]);
    }

    #[test]
    fn an_admin_section_without_a_token_is_refused() {
        let text = format!("{}admin: {{addr: 127.0.0.1:9191}}\n", base());
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].reason.contains("token"), "{p:?}");
        let empty = format!("{}admin: {{addr: 127.0.0.1:9191, token: \"\"}}\n", base());
        let keys: Vec<String> = problems(&empty).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["admin.token"]);
    }
}
