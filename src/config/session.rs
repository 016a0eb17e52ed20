//! The `session` section: the at-rest key, session lifetimes and refresh timing, and the
//! store (embedded memory, or Redis as one server, a cluster or behind sentinels).

use super::file::{RedisFile, SessionFile, StoreFile};
use super::load::Problems;
use super::values::{duration, duration_or_zero};
use super::{defaults, resolve, RedisMode, SecretString, SessionConfig, StoreConfig};
use std::path::Path;

/// Checks the session section and reads the at-rest key.
pub(super) fn build(f: SessionFile, base_dir: &Path, p: &mut Problems) -> SessionConfig {
    let at_rest_key = resolve::secret_key(&f.at_rest_key, "session.at_rest_key", base_dir, p);
    let idle_timeout = duration(&f.idle_timeout, "session.idle_timeout", p);
    let absolute_timeout = duration(&f.absolute_timeout, "session.absolute_timeout", p);
    if idle_timeout > absolute_timeout {
        p.add(
            "session.idle_timeout",
            "must not be longer than absolute_timeout",
        );
    }
    let store = store(f.store, base_dir, p);
    let refresh_before_expiry =
        duration_or_zero(&f.refresh_before_expiry, "session.refresh_before_expiry", p);
    let refresh_lock_wait = duration(&f.refresh_lock_wait, "session.refresh_lock_wait", p);
    SessionConfig {
        store,
        at_rest_key,
        idle_timeout,
        absolute_timeout,
        refresh_before_expiry,
        refresh_lock_wait,
    }
}

/// `session.store`: omitted or `memory` for the embedded store, or `redis`; not both.
fn store(f: Option<StoreFile>, base_dir: &Path, p: &mut Problems) -> StoreConfig {
    match f {
        None => StoreConfig::Memory {
            max_sessions: defaults::MAX_SESSIONS,
        },
        Some(StoreFile {
            redis: Some(_),
            memory: Some(_),
        }) => {
            p.add(
                "session.store",
                "choose one of `redis` and `memory`, not both",
            );
            StoreConfig::Memory { max_sessions: 1 }
        }
        Some(StoreFile {
            redis: Some(r),
            memory: None,
        }) => redis_store(r, base_dir, p),
        Some(StoreFile {
            redis: None,
            memory: m,
        }) => {
            let max_sessions = m.map_or(defaults::MAX_SESSIONS, |m| m.max_sessions);
            if max_sessions == 0 {
                p.add("session.store.memory.max_sessions", "must be at least 1");
            }
            StoreConfig::Memory { max_sessions }
        }
    }
}

/// `session.store.redis`: exactly one of `url`, `cluster` and `sentinel`.
fn redis_store(r: RedisFile, base_dir: &Path, p: &mut Problems) -> StoreConfig {
    let url_ok = |u: &str, key: &str, p: &mut Problems| {
        if let Err(e) = redis::Client::open(u) {
            // The URL may carry a password: describe the problem, never echo it.
            p.add(key, format!("not a Redis URL ({:?})", e.kind()));
        }
    };
    let mode = match (r.url, r.cluster, r.sentinel) {
        (Some(url), None, None) => {
            url_ok(&url, "session.store.redis.url", p);
            RedisMode::Single(url)
        }
        (None, Some(nodes), None) => {
            if nodes.is_empty() {
                p.add("session.store.redis.cluster", "name at least one seed node");
            }
            for (i, n) in nodes.iter().enumerate() {
                url_ok(n, &format!("session.store.redis.cluster[{i}]"), p);
            }
            RedisMode::Cluster(nodes)
        }
        (None, None, Some(s)) => {
            if s.nodes.is_empty() {
                p.add(
                    "session.store.redis.sentinel.nodes",
                    "name at least one sentinel",
                );
            }
            if s.master_name.is_empty() {
                p.add(
                    "session.store.redis.sentinel.master_name",
                    "must not be empty",
                );
            }
            for (i, n) in s.nodes.iter().enumerate() {
                url_ok(n, &format!("session.store.redis.sentinel.nodes[{i}]"), p);
            }
            let password = s.password.as_deref().map(|raw| {
                SecretString(resolve::text_secret(
                    raw,
                    "session.store.redis.sentinel.password",
                    base_dir,
                    p,
                ))
            });
            if s.username.as_deref().is_some_and(str::is_empty) {
                p.add("session.store.redis.sentinel.username", "must not be empty");
            }
            RedisMode::Sentinel {
                master_name: s.master_name,
                nodes: s.nodes,
                username: s.username,
                password,
                tls: s.tls,
            }
        }
        _ => {
            p.add(
                "session.store.redis",
                "set exactly one of `url`, `cluster` and `sentinel`",
            );
            RedisMode::Single(String::new())
        }
    };
    let ca_pem = r.ca_file.as_deref().map(|file| {
        let key = "session.store.redis.ca_file";
        let path = resolve::readable_file(file, base_dir, key, p);
        // An unreadable file was reported by `readable_file`.
        let pem = std::fs::read_to_string(&path).ok();
        if pem
            .as_ref()
            .is_some_and(|pem| !pem.contains("-----BEGIN CERTIFICATE-----"))
        {
            p.add(key, format!("{path} holds no PEM certificate"));
        }
        pem.unwrap_or_default()
    });
    if ca_pem.is_some() && !uses_tls(&mode) {
        p.add(
            "session.store.redis.ca_file",
            "no connection uses TLS: use rediss:// URLs (or sentinel.tls)",
        );
    }
    StoreConfig::Redis {
        mode,
        key_prefix: r.key_prefix,
        timeout: duration(&r.timeout, "session.store.redis.timeout", p),
        ca_pem,
    }
}

/// Whether any connection of `mode` is TLS.
fn uses_tls(mode: &RedisMode) -> bool {
    let tls = |u: &String| u.starts_with("rediss://");
    match mode {
        RedisMode::Single(url) => tls(url),
        RedisMode::Cluster(nodes) => nodes.iter().any(tls),
        RedisMode::Sentinel {
            nodes, tls: data, ..
        } => *data || nodes.iter().any(tls),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    fn keys(store: &str) -> Vec<String> {
        let text = base().replace(
            "session: {",
            &format!("session: {{store: {{redis: {store}}}, "),
        );
        problems(&text).into_iter().map(|p| p.key).collect()
    }

    #[test]
    fn redis_tls_and_auth_keys_are_checked() {
        assert_eq!(
            keys("{url: \"redis://h:6379\", ca_file: /nonexistent/ca.pem}"),
            vec!["session.store.redis.ca_file"; 2]
        );
        assert_eq!(
            keys("{sentinel: {master_name: m, nodes: [\"redis://h:26379\"], username: \"\", password: \"file:/nonexistent\"}}"),
            vec![
                "session.store.redis.sentinel.password",
                "session.store.redis.sentinel.username"
            ]
        );
        assert!(keys("{sentinel: {master_name: m, nodes: [\"rediss://u:p@h:26379\"], username: bff, password: pw, tls: true}}").is_empty());
    }
}
