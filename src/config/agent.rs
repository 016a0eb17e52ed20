//! The `agent` section: where the OAuth agent's endpoints live and the browser policy
//! (trusted origins, CSRF header) that API routes share.

use super::file::AgentFile;
use super::load::Problems;
use super::values::origin;
use super::{defaults, AgentConfig};
use crate::path::is_clean_path;
use http::HeaderName;

/// Checks the agent section.
pub(super) fn build(f: AgentFile, p: &mut Problems) -> AgentConfig {
    let base_path = f.base_path.trim_end_matches('/').to_string();
    if !f.base_path.starts_with('/') || base_path.is_empty() {
        p.add(
            "agent.base_path",
            "must start with `/` and not be `/` alone",
        );
    } else if !is_clean_path(&base_path) {
        p.add(
            "agent.base_path",
            "must be a plain path (no `//`, `.`/`..` segments, `%`, `?` or `#`)",
        );
    }
    let allowed_origins = f
        .allowed_origins
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match origin(o) {
            Some(o) => Some(o),
            None => {
                p.add(
                    format!("agent.allowed_origins[{i}]"),
                    format!("`{o}` is not an origin like https://www.example.com (scheme, host, optional port, nothing else)"),
                );
                None
            }
        })
        .collect();
    let csrf_header = match HeaderName::from_bytes(f.csrf_header.as_bytes()) {
        Ok(h) => h,
        Err(_) => {
            p.add(
                "agent.csrf_header",
                format!("`{}` is not a valid header name", f.csrf_header),
            );
            HeaderName::from_static(defaults::CSRF_HEADER)
        }
    };
    let rate_limit = super::rate::build(
        f.rate_limit,
        "agent.rate_limit",
        Err("the agent endpoints are limited per client address only (per_client_ip)"),
        p,
    );
    AgentConfig {
        base_path,
        allowed_origins,
        csrf_header,
        rate_limit,
    }
}
