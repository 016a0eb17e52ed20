//! From file text to a validated [`Config`], collecting every problem on the way.

use super::file::{self, FileConfig};
use super::*;
use base64::Engine;
use serde_yaml::Value;
use std::net::ToSocketAddrs;

/// Problems gathered while validating one file.
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

pub(super) fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<ConfigProblem>| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let mut value: Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::single(path.to_path_buf(), "", format!("not valid YAML: {e}")))?;
    let mut problems = Problems(Vec::new());
    expand_env(&mut value, String::new(), env, &mut problems);
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let parsed: FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::single(path.to_path_buf(), key, e.inner().to_string())
    })?;
    // systemd's RuntimeDirectory= (e.g. /run/bffgate) is where the pid file and the upgrade
    // socket belong when no path is configured.
    let run_dir = env("RUNTIME_DIRECTORY").unwrap_or_else(|| "/tmp".into());
    let config = build(path, parsed, &run_dir, &mut problems);
    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems.0))
    }
}

/// Replaces `${NAME}` in every string scalar with the variable's value.
fn expand_env(
    value: &mut Value,
    key: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.add(&key, "unclosed `${` in value");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => problems.add(&key, format!("environment variable `{name}` is not set")),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, format!("{key}[{i}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}.{name}")
                };
                expand_env(v, child, env, problems);
            }
        }
        _ => {}
    }
}

fn build(path: &Path, f: FileConfig, run_dir: &str, p: &mut Problems) -> Config {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let listen = f
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, l)| socket_addr(&l.addr, &format!("listen[{i}].addr"), p))
        .collect::<Vec<_>>();
    if f.listen.is_empty() {
        p.add("listen", "at least one listener is needed");
    }
    let tls = f
        .listen
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.tls.as_ref()?;
            let addr = l.addr.parse().ok()?;
            let resolve = |f: &str| base_dir.join(f).to_string_lossy().into_owned();
            let (cert, key) = (resolve(&t.cert), resolve(&t.key));
            for (what, path) in [("cert", &cert), ("key", &key)] {
                if let Err(e) = std::fs::read(path) {
                    p.add(
                        format!("listen[{i}].tls.{what}"),
                        format!("cannot read {path}: {e}"),
                    );
                }
            }
            Some((addr, TlsListener { cert, key }))
        })
        .collect();
    let metrics = f
        .metrics
        .as_ref()
        .and_then(|m| socket_addr(&m.addr, "metrics.addr", p));
    let server = ServerSettings {
        threads: match f.server.threads {
            Some(0) => {
                p.add("server.threads", "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, usize::from),
        },
        grace_period_seconds: f.server.grace_period_seconds.unwrap_or(5),
        graceful_shutdown_timeout_seconds: f.server.graceful_shutdown_timeout_seconds.unwrap_or(10),
        pid_file: f
            .server
            .pid_file
            .unwrap_or_else(|| format!("{run_dir}/bffgate.pid")),
        upgrade_sock: f
            .server
            .upgrade_sock
            .unwrap_or_else(|| format!("{run_dir}/bffgate_upgrade.sock")),
        upstream_ca_file: f.server.upstream_ca_file.map(|c| {
            let path = base_dir.join(&c).to_string_lossy().into_owned();
            if let Err(e) = std::fs::read(&path) {
                p.add(
                    "server.upstream_ca_file",
                    format!("cannot read {path}: {e}"),
                );
            }
            path
        }),
    };
    let agent = agent(f.agent, p);
    let oidc = f.oidc.map(|o| oidc(o, &base_dir, &agent, p));
    let cookie = cookie(f.cookie, &base_dir, p);
    let session = session(f.session, &base_dir, p);
    let routes = routes(f.routes, &agent, p);
    Config {
        source: path.to_path_buf(),
        listen,
        tls,
        metrics,
        server,
        oidc,
        agent,
        cookie,
        session,
        access_log: f.access_log,
        routes,
    }
}

fn socket_addr(s: &str, key: &str, p: &mut Problems) -> Option<SocketAddr> {
    match s.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            p.add(key, format!("`{s}` is not an ip:port address"));
            None
        }
    }
}

fn duration(s: &str, key: &str, p: &mut Problems) -> Duration {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            p.add(key, "must be longer than zero");
            Duration::from_secs(1)
        }
        Err(e) => {
            p.add(
                key,
                format!("`{s}` is not a duration like 30s, 5m or 12h: {e}"),
            );
            Duration::from_secs(1)
        }
    }
}

/// Reads a secret (literal or `file:/path`) and decodes its base64 into 32 bytes.
fn secret(raw: &str, key: &str, base_dir: &Path, p: &mut Problems) -> SecretKey {
    let placeholder = SecretKey([0; 32]);
    let text = if let Some(file) = raw.strip_prefix("file:") {
        let file_path = base_dir.join(file);
        match std::fs::read_to_string(&file_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                p.add(
                    key,
                    format!("cannot read secret file {}: {e}", file_path.display()),
                );
                return placeholder;
            }
        }
    } else {
        raw.trim().to_string()
    };
    if text.is_empty() {
        p.add(key, "secret is empty");
        return placeholder;
    }
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let Some(mut bytes) = engines.iter().find_map(|e| e.decode(text.as_bytes()).ok()) else {
        p.add(
            key,
            "secret is not base64 (generate one with `bffgate --gen-key`)",
        );
        return placeholder;
    };
    let out = match <[u8; 32]>::try_from(bytes.as_slice()) {
        Ok(b) => SecretKey(b),
        Err(_) => {
            p.add(
                key,
                format!(
                    "secret must decode to exactly 32 bytes, got {} (generate one with `bffgate --gen-key`)",
                    bytes.len()
                ),
            );
            placeholder
        }
    };
    bytes.zeroize();
    out
}

fn origin(s: &str) -> Option<String> {
    let url = url::Url::parse(s).ok()?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || !bare {
        return None;
    }
    if !url.username().is_empty() || url.password().is_some() {
        return None;
    }
    Some(url.origin().ascii_serialization())
}

fn agent(f: file::AgentFile, p: &mut Problems) -> AgentConfig {
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
            HeaderName::from_static("x-bffgate-csrf")
        }
    };
    AgentConfig {
        base_path,
        allowed_origins,
        csrf_header,
    }
}

const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    "HS256", "HS384",
];

fn http_url(s: &str, key: &str, p: &mut Problems) -> url::Url {
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            p.add(key, format!("`{s}` is not an http(s) URL"));
            url::Url::parse("http://invalid.invalid/")
                .unwrap_or_else(|_| unreachable!("constant URL"))
        }
    }
}

fn oidc(f: file::OidcFile, base_dir: &Path, agent: &AgentConfig, p: &mut Problems) -> OidcConfig {
    let issuer = http_url(&f.issuer, "oidc.issuer", p);
    if issuer.query().is_some() || issuer.fragment().is_some() {
        p.add("oidc.issuer", "must have no query or fragment");
    }
    if f.client_id.is_empty() {
        p.add("oidc.client_id", "must not be empty");
    }
    let client_secret = if let Some(file) = f.client_secret.strip_prefix("file:") {
        match std::fs::read_to_string(base_dir.join(file)) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                p.add(
                    "oidc.client_secret",
                    format!("cannot read secret file {file}: {e}"),
                );
                String::new()
            }
        }
    } else {
        f.client_secret.clone()
    };
    if client_secret.is_empty() {
        p.add(
            "oidc.client_secret",
            "must not be empty (a confidential client needs its secret)",
        );
    }
    let client_auth = match f.client_auth.as_str() {
        "client_secret_basic" => ClientAuth::Basic,
        "client_secret_post" => ClientAuth::Post,
        other => {
            p.add(
                "oidc.client_auth",
                format!("`{other}` is not client_secret_basic or client_secret_post"),
            );
            ClientAuth::Basic
        }
    };
    if !f.scopes.iter().any(|s| s == "openid") {
        p.add("oidc.scopes", "must include `openid`");
    }
    let redirect_uri = http_url(&f.redirect_uri, "oidc.redirect_uri", p);
    if !redirect_uri.path().starts_with(&agent.base_path)
        || !redirect_uri.path().ends_with("/callback")
    {
        p.add(
            "oidc.redirect_uri",
            format!("must be this gateway's `{}/callback` URL", agent.base_path),
        );
    }
    let post_login_redirect = http_url(&f.post_login_redirect, "oidc.post_login_redirect", p);
    let post_logout_redirect = f
        .post_logout_redirect
        .as_deref()
        .map(|u| http_url(u, "oidc.post_logout_redirect", p));
    for (i, alg) in f.id_token_algs.iter().enumerate() {
        if alg.eq_ignore_ascii_case("none") {
            p.add(
                format!("oidc.id_token_algs[{i}]"),
                "`none` (unsigned tokens) is never accepted",
            );
        } else if !ALGS.contains(&alg.as_str()) {
            p.add(
                format!("oidc.id_token_algs[{i}]"),
                format!("`{alg}` is not a JWS algorithm"),
            );
        }
    }
    if f.id_token_algs.is_empty() {
        p.add("oidc.id_token_algs", "at least one algorithm is needed");
    }
    OidcConfig {
        issuer: f.issuer.clone(),
        client_id: f.client_id,
        client_secret: SecretString(client_secret),
        client_auth,
        scopes: f.scopes,
        redirect_uri,
        post_login_redirect,
        post_logout_redirect,
        id_token_algs: f.id_token_algs,
        session_claims: f.session_claims,
        login_timeout: duration(&f.login_timeout, "oidc.login_timeout", p),
        clock_skew: humantime::parse_duration(&f.clock_skew).unwrap_or_else(|e| {
            p.add(
                "oidc.clock_skew",
                format!("`{}` is not a duration: {e}", f.clock_skew),
            );
            Duration::from_secs(60)
        }),
        auth_params: f.auth_params.into_iter().collect(),
    }
}

fn is_cookie_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn cookie(f: file::CookieFile, base_dir: &Path, p: &mut Problems) -> CookieConfig {
    if !is_cookie_token(&f.name) {
        p.add(
            "cookie.name",
            format!("`{}` is not a valid cookie name", f.name),
        );
    }
    let same_site = match f.same_site.to_ascii_lowercase().as_str() {
        "strict" => SameSite::Strict,
        "lax" => SameSite::Lax,
        "none" => SameSite::None,
        other => {
            p.add(
                "cookie.same_site",
                format!("`{other}` is not one of strict, lax, none"),
            );
            SameSite::Strict
        }
    };
    if same_site == SameSite::None && !f.secure {
        p.add(
            "cookie.same_site",
            "`none` requires `secure: true` (browsers refuse it otherwise)",
        );
    }
    if f.name.starts_with("__Host-") {
        if !f.secure {
            p.add("cookie.secure", "a `__Host-` cookie must be secure");
        }
        if f.path != "/" {
            p.add("cookie.path", "a `__Host-` cookie must have path `/`");
        }
        if f.domain.is_some() {
            p.add("cookie.domain", "a `__Host-` cookie must not set a domain");
        }
    }
    if f.name.starts_with("__Secure-") && !f.secure {
        p.add("cookie.secure", "a `__Secure-` cookie must be secure");
    }
    if !f.path.starts_with('/') || f.path.contains(';') {
        p.add("cookie.path", "must start with `/` and contain no `;`");
    }
    if let Some(d) = &f.domain {
        if d.is_empty() || d.contains(';') || d.contains(' ') {
            p.add("cookie.domain", format!("`{d}` is not a domain"));
        }
    }
    if f.keys.is_empty() {
        p.add("cookie.keys", "at least one key is needed");
    }
    let mut keys: Vec<CookieKey> = Vec::new();
    for (i, k) in f.keys.iter().enumerate() {
        let valid_id = (1..=32).contains(&k.id.len())
            && k.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid_id {
            p.add(
                format!("cookie.keys[{i}].id"),
                "must be 1 to 32 of A-Z a-z 0-9 _ -",
            );
        } else if keys.iter().any(|o| o.id == k.id) {
            p.add(
                format!("cookie.keys[{i}].id"),
                format!("`{}` appears twice", k.id),
            );
        }
        let secret = secret(&k.secret, &format!("cookie.keys[{i}].secret"), base_dir, p);
        keys.push(CookieKey {
            id: k.id.clone(),
            secret,
        });
    }
    CookieConfig {
        name: f.name,
        domain: f.domain,
        path: f.path,
        same_site,
        secure: f.secure,
        keys,
    }
}

fn session(f: file::SessionFile, base_dir: &Path, p: &mut Problems) -> SessionConfig {
    let at_rest_key = secret(&f.at_rest_key, "session.at_rest_key", base_dir, p);
    let idle_timeout = duration(&f.idle_timeout, "session.idle_timeout", p);
    let absolute_timeout = duration(&f.absolute_timeout, "session.absolute_timeout", p);
    if idle_timeout > absolute_timeout {
        p.add(
            "session.idle_timeout",
            "must not be longer than absolute_timeout",
        );
    }
    let store = match f.store {
        None => StoreConfig::Memory {
            max_sessions: 100_000,
        },
        Some(file::StoreFile {
            redis: Some(_),
            memory: Some(_),
        }) => {
            p.add(
                "session.store",
                "choose one of `redis` and `memory`, not both",
            );
            StoreConfig::Memory { max_sessions: 1 }
        }
        Some(file::StoreFile {
            redis: Some(r),
            memory: None,
        }) => {
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
                    RedisMode::Sentinel {
                        master_name: s.master_name,
                        nodes: s.nodes,
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
            StoreConfig::Redis {
                mode,
                key_prefix: r.key_prefix,
                timeout: duration(&r.timeout, "session.store.redis.timeout", p),
            }
        }
        Some(file::StoreFile {
            redis: None,
            memory: m,
        }) => {
            let max_sessions = m.map_or(100_000, |m| m.max_sessions);
            if max_sessions == 0 {
                p.add("session.store.memory.max_sessions", "must be at least 1");
            }
            StoreConfig::Memory { max_sessions }
        }
    };
    SessionConfig {
        store,
        at_rest_key,
        idle_timeout,
        absolute_timeout,
        refresh_before_expiry: humantime::parse_duration(&f.refresh_before_expiry).unwrap_or_else(
            |e| {
                p.add(
                    "session.refresh_before_expiry",
                    format!("`{}` is not a duration: {e}", f.refresh_before_expiry),
                );
                Duration::from_secs(30)
            },
        ),
        refresh_lock_wait: duration(&f.refresh_lock_wait, "session.refresh_lock_wait", p),
    }
}

/// A path without `//`, dot-segments, percent-escapes, query or fragment.
fn is_clean_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.contains(['%', '?', '#', '\\'])
        && !s[1..]
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}

/// Whether `prefix` covers `path` on whole segments.
pub(crate) fn segment_prefix(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || (path.starts_with(prefix)
            && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
}

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
    let port = url
        .port_or_known_default()
        .unwrap_or(if tls { 443 } else { 80 });
    // Resolved once here, not per request: Pingora's peer constructor would otherwise do
    // blocking DNS on the proxy's threads.
    match (host.as_str(), port)
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(addr)) => Some(UpstreamConfig { addr, tls, host }),
        Ok(None) | Err(_) => {
            p.add(key, format!("cannot resolve host `{host}`"));
            None
        }
    }
}

fn routes(f: Vec<file::RouteFile>, agent: &AgentConfig, p: &mut Problems) -> Vec<RouteConfig> {
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
        let host = r.matcher.host.as_ref().map(|h| h.to_ascii_lowercase());
        if let Some(h) = &host {
            if h.is_empty() || h.contains(['/', ' ', ':']) {
                p.add(
                    format!("{key}.match.host"),
                    format!("`{h}` is not a host name (no scheme or port)"),
                );
            }
        }
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
                    (Ok(n), Ok(v)) if reserved_header(&n) => {
                        p.add(hk, format!("`{n}` is set by bffgate and cannot be added"));
                        let _ = v;
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
            .map_or(Duration::from_secs(2), |d| {
                duration(d, &format!("{key}.timeouts.connect"), p)
            });
        let read_timeout = r
            .timeouts
            .read
            .as_deref()
            .map_or(Duration::from_secs(30), |d| {
                duration(d, &format!("{key}.timeouts.read"), p)
            });
        let health_check = r
            .health_check
            .as_ref()
            .map(|h| duration(&h.interval, &format!("{key}.health_check.interval"), p));
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
    use super::*;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| KEY.to_string())
    }

    fn base() -> String {
        format!(
            "listen: [{{addr: 127.0.0.1:8080}}]\ncookie: {{keys: [{{id: k1, secret: \"${{KEY}}\"}}]}}\nsession: {{at_rest_key: \"{KEY}\"}}\n"
        )
    }

    fn problems(text: &str) -> Vec<ConfigProblem> {
        match parse(Path::new("t.yaml"), text, &env) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems,
        }
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

    #[test]
    fn minimal_config_is_accepted_with_defaults() {
        let c = parse(Path::new("t.yaml"), &base(), &env).expect("valid");
        assert_eq!(c.cookie.name, "bff_session");
        assert!(c.cookie.secure);
        assert_eq!(c.cookie.same_site, SameSite::Strict);
        assert_eq!(c.agent.base_path, "/bff");
        assert!(matches!(
            c.session.store,
            StoreConfig::Memory {
                max_sessions: 100_000
            }
        ));
        assert_eq!(c.session.idle_timeout, Duration::from_secs(1800));
    }

    #[test]
    fn unknown_key_names_its_path() {
        let text = base().replace("cookie: {", "cookie: {colour: red, ");
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "cookie.colour");
        assert!(p[0].reason.contains("colour"), "{:?}", p[0]);
    }

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
    fn secrets_must_be_32_bytes_and_env_must_exist() {
        let text = base().replace("\"${KEY}\"", "\"c2hvcnQ=\"").replace(
            &format!("at_rest_key: \"{KEY}\""),
            "at_rest_key: \"${MISSING}\"",
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].key, "session.at_rest_key");
        let text = base().replace("\"${KEY}\"", "\"c2hvcnQ=\"");
        let p = problems(&text);
        assert_eq!(p[0].key, "cookie.keys[0].secret");
        assert!(p[0].reason.contains("32 bytes"));
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

    #[test]
    fn host_cookie_prefix_rules() {
        let text = base().replace(
            "cookie: {",
            "cookie: {name: __Host-s, secure: false, domain: a.test, ",
        );
        let keys: Vec<String> = problems(&text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, vec!["cookie.secure", "cookie.domain"]);
    }

    #[test]
    fn segment_prefix_is_whole_segments() {
        assert!(segment_prefix("/api", "/api"));
        assert!(segment_prefix("/api", "/api/x"));
        assert!(!segment_prefix("/api", "/apix"));
        assert!(segment_prefix("/", "/anything"));
    }
}
