//! The `session` section: the at-rest key ring, session lifetimes and refresh timing, and the
//! store (embedded memory, or Redis as one server, a cluster or behind sentinels).

use super::file::{CacheFile, RedisFile, SessionFile, StoreFile};
use super::load::Problems;
use super::values::{byte_size, duration, duration_or_zero};
use super::{
    defaults, keyring, resolve, RedisMode, RingKey, SecretString, SessionCacheConfig,
    SessionConfig, StoreConfig,
};
use std::path::Path;

/// Checks the session section and reads the at-rest key ring.
pub(super) fn build(f: SessionFile, base_dir: &Path, p: &mut Problems) -> SessionConfig {
    let at_rest_keys = at_rest_keys(&f, base_dir, p);
    let key_census_interval = duration(&f.key_census_interval, "session.key_census_interval", p);
    let idle_timeout = duration(&f.idle_timeout, "session.idle_timeout", p);
    let absolute_timeout = duration(&f.absolute_timeout, "session.absolute_timeout", p);
    if idle_timeout > absolute_timeout {
        p.add(
            "session.idle_timeout",
            "must not be longer than absolute_timeout",
        );
    }
    let store = store(f.store, base_dir, p);
    if let StoreConfig::Redis { cache, .. } = &store {
        if cache.window * 2 > idle_timeout {
            p.add(
                "session.store.redis.cache.window",
                "must be at most half of session.idle_timeout (a cached session's idle timeout slides once per window)",
            );
        }
    }
    let refresh_before_expiry =
        duration_or_zero(&f.refresh_before_expiry, "session.refresh_before_expiry", p);
    let refresh_lock_wait = duration(&f.refresh_lock_wait, "session.refresh_lock_wait", p);
    SessionConfig {
        store,
        at_rest_keys,
        key_census_interval,
        idle_timeout,
        absolute_timeout,
        refresh_before_expiry,
        refresh_lock_wait,
    }
}

/// `session.at_rest_keys`, or `session.at_rest_key` as a one-key ring named
/// [`defaults::AT_REST_KEY_ID`]; exactly one of the two.
fn at_rest_keys(f: &SessionFile, base_dir: &Path, p: &mut Problems) -> Vec<RingKey> {
    match (&f.at_rest_key, &f.at_rest_keys) {
        (Some(_), Some(_)) => {
            p.add(
                "session.at_rest_keys",
                "set `at_rest_keys` or `at_rest_key`, not both",
            );
            Vec::new()
        }
        (None, Some(ring)) => keyring::build(ring, "session.at_rest_keys", base_dir, p),
        (Some(one), None) => vec![RingKey {
            id: defaults::AT_REST_KEY_ID.into(),
            secret: resolve::secret_key(one, "session.at_rest_key", base_dir, p),
        }],
        (None, None) => {
            p.add(
                "session.at_rest_keys",
                "an at-rest key is needed (`at_rest_keys`, or one `at_rest_key`)",
            );
            Vec::new()
        }
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
        cache: cache(r.cache, p),
    }
}

/// `session.store.redis.cache`: a window of at most [`defaults::CACHE_WINDOW_MAX`] (zero
/// turns the cache off) and its two bounds.
fn cache(f: Option<CacheFile>, p: &mut Problems) -> SessionCacheConfig {
    let f = f.unwrap_or(CacheFile {
        window: defaults::cache_window(),
        max_entries: defaults::CACHE_MAX_ENTRIES,
        max_bytes: defaults::cache_max_bytes(),
    });
    let window = duration_or_zero(&f.window, "session.store.redis.cache.window", p);
    if window > defaults::CACHE_WINDOW_MAX {
        p.add(
            "session.store.redis.cache.window",
            format!(
                "must be at most {}: a revocation on another instance is seen only after it",
                humantime::format_duration(defaults::CACHE_WINDOW_MAX)
            ),
        );
    }
    if f.max_entries == 0 && !window.is_zero() {
        p.add(
            "session.store.redis.cache.max_entries",
            "must be at least 1 (set window: 0 to turn the cache off)",
        );
    }
    SessionCacheConfig {
        window,
        max_entries: f.max_entries,
        max_bytes: byte_size(&f.max_bytes, "session.store.redis.cache.max_bytes", p),
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
    use super::super::fixtures::{base, env, problems, KEY};

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

    #[test]
    fn the_session_cache_is_checked() {
        let url = "url: \"redis://h:6379\"";
        assert!(keys(&format!("{{{url}}}")).is_empty());
        assert!(keys(&format!("{{{url}, cache: {{window: 0}}}}")).is_empty());
        assert!(keys(&format!(
            "{{{url}, cache: {{window: 5s, max_entries: 10, max_bytes: 2GiB}}}}"
        ))
        .is_empty());
        assert_eq!(
            keys(&format!("{{{url}, cache: {{window: 6s}}}}")),
            ["session.store.redis.cache.window"]
        );
        assert_eq!(
            keys(&format!("{{{url}, cache: {{max_entries: 0}}}}")),
            ["session.store.redis.cache.max_entries"]
        );
        for bad in ["0", "64MB", "-1", "x", "99999999999GiB"] {
            assert_eq!(
                keys(&format!("{{{url}, cache: {{max_bytes: \"{bad}\"}}}}")),
                ["session.store.redis.cache.max_bytes"],
                "{bad}"
            );
        }
    }

    #[test]
    fn the_cache_window_is_at_most_half_the_idle_timeout() {
        let text = base()
            .replace(
                "session: {",
                "session: {idle_timeout: 3s, store: {redis: {url: \"redis://h:6379\", cache: {window: 2s}}}, ",
            );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["session.store.redis.cache.window"], "{text}");
    }

    fn with_session(keys: &str) -> String {
        base().replace(&format!("at_rest_key: \"{KEY}\""), keys)
    }

    #[test]
    fn the_at_rest_key_ring_is_checked() {
        let problem_keys = |keys: &str| -> Vec<String> {
            problems(&with_session(keys))
                .into_iter()
                .map(|p| p.key)
                .collect()
        };
        let ring = |entries: &[(&str, &str)]| {
            let items: Vec<String> = entries
                .iter()
                .map(|(id, secret)| format!("{{id: {id}, secret: \"{secret}\"}}"))
                .collect();
            format!("at_rest_keys: [{}]", items.join(", "))
        };
        assert!(problem_keys(&ring(&[("new", KEY), ("old", "${KEY}")])).is_empty());
        assert_eq!(
            problem_keys(&format!("at_rest_key: \"{KEY}\", {}", ring(&[("a", KEY)]))),
            ["session.at_rest_keys"]
        );
        assert_eq!(
            problem_keys(&ring(&[("a", KEY), ("a", KEY)])),
            ["session.at_rest_keys[1].id"]
        );
        assert_eq!(
            problem_keys(&ring(&[("a", KEY), ("b", "c2hvcnQ=")])),
            ["session.at_rest_keys[1].secret"]
        );
        assert_eq!(
            problem_keys(&ring(&[("bad id", KEY)])),
            ["session.at_rest_keys[0].id"]
        );
        assert_eq!(problem_keys("at_rest_keys: []"), ["session.at_rest_keys"]);
        assert_eq!(problem_keys("idle_timeout: 1m"), ["session.at_rest_keys"]);
    }

    #[test]
    fn one_at_rest_key_is_a_ring_named_default() {
        let parse = |text: &str| {
            super::super::parse(std::path::Path::new("t.yaml"), text, &env).expect("valid")
        };
        let ids = |text: &str| -> Vec<String> {
            parse(text)
                .session
                .at_rest_keys
                .into_iter()
                .map(|k| k.id)
                .collect()
        };
        assert_eq!(ids(&base()), ["default"]);
        assert_eq!(
            ids(&with_session(&format!(
                "at_rest_keys: [{{id: k2, secret: \"{KEY}\"}}, {{id: default, secret: \"{KEY}\"}}]"
            ))),
            ["k2", "default"]
        );
    }
}
