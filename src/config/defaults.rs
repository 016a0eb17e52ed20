//! Every default value of the configuration file, in one place.
//!
//! A key left out of the file takes the value named here. The section checkers and the
//! serde `default = "…"` functions at the end of this file (named by [`super::file`]) both
//! read these constants, so a default is changed here and only here. `README.md` (the key table) and `conf/bff.yaml`
//! document the same values: keep them in step.
//!
//! Durations are written as the file spells them (`30s`, `12h`) where the file field is a
//! string, so a default goes through the same parser as an operator's value.

use std::time::Duration;

// ---- server -------------------------------------------------------------------------

/// `server.threads`: one proxy worker per CPU; 1 when the CPU count is unknown.
pub(super) fn server_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `server.grace_period_seconds`: keep serving this long after SIGTERM.
pub(super) const GRACE_PERIOD_SECONDS: u64 = 5;

/// `server.graceful_shutdown_timeout_seconds`: wait this long for in-flight requests.
pub(super) const GRACEFUL_SHUTDOWN_TIMEOUT_SECONDS: u64 = 10;

/// The environment variable naming the folder for the pid file and the upgrade socket
/// (systemd's `RuntimeDirectory=` sets it, e.g. `/run/bffgate`).
pub(super) const RUNTIME_DIRECTORY_VAR: &str = "RUNTIME_DIRECTORY";

/// That folder when the variable is not set.
pub(super) const RUNTIME_DIRECTORY: &str = "/tmp";

/// `server.pid_file`: this name in the runtime directory.
pub(super) const PID_FILE_NAME: &str = "bffgate.pid";

/// `server.upgrade_sock`: this name in the runtime directory.
pub(super) const UPGRADE_SOCK_NAME: &str = "bffgate_upgrade.sock";

/// `server.dns.refresh_min`: a name is looked up again no sooner than this, however short
/// its TTL (and this long after a failed lookup).
pub(super) const DNS_REFRESH_MIN: &str = "5s";

/// `server.dns.refresh_max`: a name is looked up again no later than this, however long
/// its TTL, so moved Pods are followed within a minute.
pub(super) const DNS_REFRESH_MAX: &str = "60s";

/// `server.dns.nameservers`: the port of a name server written without one.
pub(super) const DNS_PORT: u16 = 53;

/// `server.client_ip_header`: where a trusted proxy names the client.
pub(super) const CLIENT_IP_HEADER: &str = "x-forwarded-for";

/// `server.path_params`: route on the path without `;` parameters, as lenient upstreams read it.
pub(super) const PATH_PARAMS: &str = "strip_for_routing";

/// `server.hosts`: empty, so any host is answered.
pub(super) const HOSTS: [&str; 0] = [];

// ---- agent --------------------------------------------------------------------------

/// `agent.base_path`: prefix of the agent endpoints.
pub(super) const AGENT_BASE_PATH: &str = "/bff";

/// `agent.csrf_header`: the header an SPA sends on unsafe methods.
pub(super) const CSRF_HEADER: &str = "x-bffgate-csrf";

// ---- oidc ---------------------------------------------------------------------------

/// `oidc.client_auth`: HTTP Basic at the token endpoint.
pub(super) const CLIENT_AUTH: &str = "client_secret_basic";

/// `oidc.scopes`.
pub(super) const SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// `oidc.id_token_algs`.
pub(super) const ID_TOKEN_ALGS: [&str; 3] = ["RS256", "ES256", "PS256"];

/// `oidc.session_claims`: what `GET /bff/session` shows.
pub(super) const SESSION_CLAIMS: [&str; 4] = ["sub", "name", "email", "preferred_username"];

/// `oidc.login_timeout`: lifetime of a started login.
pub(super) const LOGIN_TIMEOUT: &str = "10m";

/// `oidc.logins_per_client`: logins one client address may start per `login_timeout`
/// (per instance). Generous for a NAT'd office; a flood from one address stops here.
pub(super) const LOGINS_PER_CLIENT: u32 = 60;

/// `oidc.clock_skew`: tolerance on token times.
pub(super) const CLOCK_SKEW: &str = "60s";

/// `oidc.pushed_authorization`: PAR when the provider's discovery offers it.
pub(super) const PUSHED_AUTHORIZATION: &str = "auto";

// ---- cookie -------------------------------------------------------------------------

/// `cookie.name` when the cookie cannot carry the `__Host-` prefix.
pub(super) const COOKIE_NAME: &str = "bff_session";

/// `cookie.name` when it can (`secure`, path `/`, no domain; RFC 6265bis): no sibling
/// subdomain and no plain-HTTP response can set or shadow it.
pub(super) const COOKIE_NAME_HOST: &str = "__Host-bff_session";

/// `cookie.path`.
pub(super) const COOKIE_PATH: &str = "/";

/// `cookie.same_site`.
pub(super) const COOKIE_SAME_SITE: &str = "strict";

/// `cookie.secure`.
pub(super) const COOKIE_SECURE: bool = true;

// ---- session ------------------------------------------------------------------------

/// `session.idle_timeout`: sliding inactivity limit.
pub(super) const IDLE_TIMEOUT: &str = "30m";

/// `session.absolute_timeout`: hard limit from login.
pub(super) const ABSOLUTE_TIMEOUT: &str = "12h";

/// The id `session.at_rest_key` (a one-key ring) is known by in stored records and metrics.
pub(super) const AT_REST_KEY_ID: &str = "default";

/// `session.key_census_interval`: how often the store is counted by at-rest key.
pub(super) const KEY_CENSUS_INTERVAL: &str = "30s";

/// `session.store.redis.cache.window`: how long a session read from Redis is trusted.
pub(super) const CACHE_WINDOW: &str = "100ms";

/// The longest `session.store.redis.cache.window` accepted.
pub(super) const CACHE_WINDOW_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// `session.store.redis.cache.max_entries`.
pub(super) const CACHE_MAX_ENTRIES: u64 = 100_000;

/// `session.store.redis.cache.max_bytes`.
pub(super) const CACHE_MAX_BYTES: &str = "64MiB";

/// `session.refresh_before_expiry`.
pub(super) const REFRESH_BEFORE_EXPIRY: &str = "30s";

/// `session.refresh_lock_wait`.
pub(super) const REFRESH_LOCK_WAIT: &str = "5s";

/// `session.store.memory.max_sessions`, also the bound when `session.store` is omitted.
pub(super) const MAX_SESSIONS: u64 = 100_000;

/// `session.store.redis.key_prefix`.
pub(super) const REDIS_KEY_PREFIX: &str = "bffgate:";

/// `session.store.redis.timeout`: longest wait for one store operation.
pub(super) const REDIS_TIMEOUT: &str = "1s";

// ---- routes -------------------------------------------------------------------------

/// `routes[].auth`.
pub(super) const ROUTE_AUTH: &str = "required";
/// `routes[].dpop`: with `oidc.dpop`, proofs go upstream too.
pub(super) const ROUTE_DPOP: bool = true;
/// `routes[].token.grant`: exchange the user's access token (RFC 8693).
pub(super) const TOKEN_GRANT: &str = "exchange";

/// `routes[].tls_verify`.
pub(super) const ROUTE_TLS_VERIFY: bool = true;

/// `routes[].timeouts.connect`.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// `routes[].timeouts.read`.
pub(super) const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `routes[].health_check.interval`.
pub(super) const HEALTH_CHECK_INTERVAL: &str = "5s";

// ---- serde glue ---------------------------------------------------------------------
// `#[serde(default = "…")]` in `file.rs` needs a function; each returns its constant.

pub(super) fn client_auth() -> String {
    CLIENT_AUTH.into()
}

pub(super) fn pushed_authorization() -> String {
    PUSHED_AUTHORIZATION.into()
}

pub(super) fn scopes() -> Vec<String> {
    SCOPES.map(String::from).to_vec()
}

pub(super) fn id_token_algs() -> Vec<String> {
    ID_TOKEN_ALGS.map(String::from).to_vec()
}

pub(super) fn session_claims() -> Vec<String> {
    SESSION_CLAIMS.map(String::from).to_vec()
}

pub(super) fn login_timeout() -> String {
    LOGIN_TIMEOUT.into()
}

pub(super) fn clock_skew() -> String {
    CLOCK_SKEW.into()
}

/// `cookie.name`: `__Host-` prefixed whenever the cookie's attributes allow it.
pub(super) fn cookie_name(secure: bool, path: &str, domain: Option<&str>) -> String {
    if secure && path == "/" && domain.is_none() {
        COOKIE_NAME_HOST.into()
    } else {
        COOKIE_NAME.into()
    }
}

pub(super) fn cookie_path() -> String {
    COOKIE_PATH.into()
}

pub(super) fn cookie_same_site() -> String {
    COOKIE_SAME_SITE.into()
}

pub(super) fn cookie_secure() -> bool {
    COOKIE_SECURE
}

pub(super) fn idle_timeout() -> String {
    IDLE_TIMEOUT.into()
}

pub(super) fn cache_window() -> String {
    CACHE_WINDOW.into()
}

pub(super) fn cache_max_entries() -> u64 {
    CACHE_MAX_ENTRIES
}

pub(super) fn cache_max_bytes() -> String {
    CACHE_MAX_BYTES.into()
}

pub(super) fn key_census_interval() -> String {
    KEY_CENSUS_INTERVAL.into()
}

pub(super) fn absolute_timeout() -> String {
    ABSOLUTE_TIMEOUT.into()
}

pub(super) fn refresh_before_expiry() -> String {
    REFRESH_BEFORE_EXPIRY.into()
}

pub(super) fn refresh_lock_wait() -> String {
    REFRESH_LOCK_WAIT.into()
}

pub(super) fn max_sessions() -> u64 {
    MAX_SESSIONS
}

pub(super) fn redis_key_prefix() -> String {
    REDIS_KEY_PREFIX.into()
}

pub(super) fn redis_timeout() -> String {
    REDIS_TIMEOUT.into()
}

pub(super) fn route_auth() -> String {
    ROUTE_AUTH.into()
}

pub(super) fn route_dpop() -> bool {
    ROUTE_DPOP
}

pub(super) fn token_grant() -> String {
    TOKEN_GRANT.into()
}

pub(super) fn route_tls_verify() -> bool {
    ROUTE_TLS_VERIFY
}

pub(super) fn health_check_interval() -> String {
    HEALTH_CHECK_INTERVAL.into()
}

/// `access_log_user`: requests are logged with a hash of the user's `sub`.
pub(super) const ACCESS_LOG_USER: &str = "hash";

/// Serde default of `access_log_user`.
pub(super) fn access_log_user() -> String {
    ACCESS_LOG_USER.to_string()
}

// ---------------------------------------------------------------------------------------
// otel

/// `otel.service_name`: the `service.name` resource of exported spans.
pub(super) const OTEL_SERVICE_NAME: &str = "bffgate";

/// `otel.sample_ratio`: every request is traced when tracing is on.
pub(super) const OTEL_SAMPLE_RATIO: f64 = 1.0;

/// Serde default of `otel.service_name`.
pub(super) fn otel_service_name() -> String {
    OTEL_SERVICE_NAME.to_string()
}

/// Serde default of `otel.sample_ratio`.
pub(super) fn otel_sample_ratio() -> f64 {
    OTEL_SAMPLE_RATIO
}

// ---------------------------------------------------------------------------------------
// admin

/// `admin.token`: the shortest token accepted (`bffgate --gen-key` prints 44 characters).
pub(super) const ADMIN_TOKEN_MIN_CHARS: usize = 32;

/// Where `bffgate admin` sends its calls when neither `--url` nor a config's `admin.addr`
/// says (the admin section has no default address: it is off unless configured).
pub const ADMIN_CLI_URL: &str = "http://127.0.0.1:9191";

/// `rate_limit.burst` when omitted: one period's worth of the rate (`50/s` → 50). Rate
/// limits themselves are off unless configured.
pub(super) fn rate_burst(count: u32) -> u32 {
    count
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, env};
    use super::super::{parse, SameSite, StoreConfig};
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn minimal_config_is_accepted_with_defaults() {
        let c = parse(Path::new("t.yaml"), &base(), &env).expect("valid");
        assert_eq!(c.cookie.name, "__Host-bff_session");
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
        assert_eq!(c.agent.rate_limit, Default::default());
    }
}
