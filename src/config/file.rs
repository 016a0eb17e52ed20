//! The YAML file as written by operators: serde structs that mirror the file one to one.
//!
//! Nothing here is trusted yet. Every struct refuses unknown keys, durations are strings
//! such as `30s` or `12h`, and secrets are still references (`${ENV}` already expanded,
//! `file:/path` not yet read). [`super::parse`] turns this into the internal
//! [`super::Config`], collecting every problem it finds. Default values live in
//! `config/defaults.rs`.

use super::defaults;
use serde::Deserialize;
use std::collections::BTreeMap;

mod routes;
pub use routes::*;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where the proxy accepts browser traffic. At least one listener.
    pub listen: Vec<ListenFile>,
    /// The Prometheus listener. Omit to serve no metrics.
    #[serde(default)]
    pub metrics: Option<MetricsFile>,
    /// Process settings handed to Pingora.
    #[serde(default)]
    pub server: ServerFile,
    /// The OpenID provider and this client's registration. Omit to run the proxy alone
    /// (agent endpoints then answer 404).
    #[serde(default)]
    pub oidc: Option<OidcFile>,
    /// The OAuth agent's endpoints and the browser origins it trusts.
    #[serde(default)]
    pub agent: AgentFile,
    /// The session cookie.
    pub cookie: CookieFile,
    /// Where sessions live and for how long.
    pub session: SessionFile,
    /// Log one line per request at `info` on the `bffgate::access` target.
    #[serde(default)]
    pub access_log: bool,
    /// Who the access log names as the user of a request with a session: `hash` (default:
    /// the first 16 hex digits of SHA-256 of `sub`), `sub`, or `none`.
    #[serde(default = "defaults::access_log_user")]
    pub access_log_user: String,
    /// The API routes, matched by longest path prefix.
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// OpenTelemetry traces over OTLP/HTTP. Omit for none.
    #[serde(default)]
    pub otel: Option<OtelFile>,
    /// The admin API's own listener (session listing and revocation). Omit for none.
    pub admin: Option<AdminFile>,
}

/// The admin API listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminFile {
    /// `ip:port`; never one of the `listen` addresses. Keep it on a loopback or admin network.
    pub addr: String,
    /// The bearer token callers present: `${ENV}` or `file:/path` (at least 32 characters).
    pub token: String,
    /// Client CIDRs allowed to call (default: empty, any address that reaches the listener).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// One listening socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenFile {
    /// `ip:port`, e.g. `0.0.0.0:8080`.
    pub addr: String,
    /// Terminate TLS here (HTTP/2 is offered by ALPN).
    #[serde(default)]
    pub tls: Option<TlsFile>,
}

/// A TLS listener's certificate.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// PEM certificate chain, leaf first.
    pub cert: String,
    /// PEM private key.
    pub key: String,
}

/// The metrics listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsFile {
    /// `ip:port`; keep it on a loopback or admin network: it answers every path.
    pub addr: String,
}

/// The subset of Pingora's `ServerConf` that operators may set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Worker threads of the proxy service (default: the number of CPUs).
    pub threads: Option<usize>,
    /// Whether idle worker threads take queued tasks from busy ones (default false: each
    /// connection stays on the thread it was given).
    pub work_stealing: Option<bool>,
    /// Host names bffgate answers for; any other host gets 421 (default: empty, any host).
    pub hosts: Option<Vec<String>>,
    /// `strip_for_routing` (default) or `refuse`: how `;` path parameters are treated.
    pub path_params: Option<String>,
    /// Seconds to keep serving after SIGTERM before draining (default 5).
    pub grace_period_seconds: Option<u64>,
    /// Seconds to wait for in-flight requests after the grace period (default 10).
    pub graceful_shutdown_timeout_seconds: Option<u64>,
    /// Pid file (default `bffgate.pid` in `$RUNTIME_DIRECTORY`, which systemd sets, else `/tmp`).
    pub pid_file: Option<String>,
    /// Socket used to hand listeners to a new process on upgrade (default
    /// `bffgate_upgrade.sock` in `$RUNTIME_DIRECTORY`, else `/tmp`).
    pub upgrade_sock: Option<String>,
    /// PEM CA bundle trusted for HTTPS upstreams instead of the system's roots.
    pub upstream_ca_file: Option<String>,
    /// Proxies in front of bffgate (CIDRs or addresses) whose forwarding headers are
    /// believed (default: none).
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The header in which a trusted proxy names the client (default `x-forwarded-for`).
    pub client_ip_header: Option<String>,
    /// How upstream host names are looked up (default: the system's resolver settings).
    #[serde(default)]
    pub dns: DnsFile,
}

/// `server.dns`: the resolver for upstream host names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// `ip` or `ip:port` name servers (default: those of /etc/resolv.conf, plus /etc/hosts).
    pub nameservers: Option<Vec<String>>,
    /// Shortest time between two lookups of a name, whatever its TTL (default `5s`).
    pub refresh_min: Option<String>,
    /// Longest time between two lookups of a name, whatever its TTL (default `60s`).
    pub refresh_max: Option<String>,
}

/// The OAuth agent and the browser-facing policy shared with API routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentFile {
    /// Path prefix of the agent endpoints (default `/bff`).
    pub base_path: String,
    /// Origins (`scheme://host[:port]`) allowed to call with credentials; unsafe methods
    /// from any other `Origin` are refused.
    pub allowed_origins: Vec<String>,
    /// Header an SPA must send on unsafe methods (default `x-bffgate-csrf`).
    pub csrf_header: String,
    /// A request-rate limit per client address over all agent endpoints (off unless set).
    pub rate_limit: Option<RateLimitFile>,
}

impl Default for AgentFile {
    fn default() -> Self {
        AgentFile {
            base_path: defaults::AGENT_BASE_PATH.into(),
            allowed_origins: Vec::new(),
            csrf_header: defaults::CSRF_HEADER.into(),
            rate_limit: None,
        }
    }
}

/// The OpenID provider and bffgate's client registration there.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcFile {
    /// Issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`
    /// and must name exactly this issuer.
    pub issuer: String,
    /// PEM bundle of extra CAs the provider's certificate may chain to (an in-house CA);
    /// the system's trust store and the built-in public roots are always trusted.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client secret (`${ENV}` or `file:/path`); needed by the secret-based `client_auth`
    /// modes, not by `private_key_jwt`.
    #[serde(default)]
    pub client_secret: String,
    /// `client_secret_basic` (default), `client_secret_post` or `private_key_jwt`.
    #[serde(default = "defaults::client_auth")]
    pub client_auth: String,
    /// Scopes requested (default openid, profile, email, offline_access).
    #[serde(default = "defaults::scopes")]
    pub scopes: Vec<String>,
    /// This bffgate's callback URL, as registered: `https://api.example.com/bff/callback`.
    pub redirect_uri: String,
    /// Where the browser lands after login when no `return_to` was given.
    pub post_login_redirect: String,
    /// Where the provider sends the browser after logout; omit to send none.
    #[serde(default)]
    pub post_logout_redirect: Option<String>,
    /// ID-token signature algorithms accepted (default RS256, ES256, PS256). `none` is
    /// never accepted.
    #[serde(default = "defaults::id_token_algs")]
    pub id_token_algs: Vec<String>,
    /// ID-token claims `/bff/session` shows (default sub, name, email, preferred_username).
    #[serde(default = "defaults::session_claims")]
    pub session_claims: Vec<String>,
    /// How long a started login may take (default `10m`).
    #[serde(default = "defaults::login_timeout")]
    pub login_timeout: String,
    /// Logins one client address may start per `login_timeout` (default 60).
    pub logins_per_client: Option<u32>,
    /// Clock skew tolerated on token times (default `60s`).
    #[serde(default = "defaults::clock_skew")]
    pub clock_skew: String,
    /// Extra authorization request parameters (e.g. `prompt: consent`, `audience: …`).
    #[serde(default)]
    pub auth_params: BTreeMap<String, String>,
    /// `private_key_jwt`: the PEM private key (`file:/path.pem`) client assertions are
    /// signed with.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// `private_key_jwt`: RS256 or PS256 for an RSA key, ES256 for an EC P-256 key
    /// (default: RS256 or ES256, from the key).
    #[serde(default)]
    pub signing_alg: Option<String>,
    /// `private_key_jwt`: the key's `kid` (default: its RFC 7638 thumbprint).
    #[serde(default)]
    pub signing_kid: Option<String>,
    /// Pushed authorization requests (RFC 9126): `auto` (default; when discovery names a
    /// PAR endpoint), `required` or `off`.
    #[serde(default = "defaults::pushed_authorization")]
    pub pushed_authorization: String,
    /// DPoP (RFC 9449): every session gets its own key, its tokens are bound to it, and
    /// every call presenting them carries a fresh proof (default false).
    #[serde(default)]
    pub dpop: bool,
}

/// The session cookie.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CookieFile {
    /// Cookie name (default `__Host-bff_session` when `secure`, path `/` and no domain
    /// allow the prefix, else `bff_session`); a `__Host-` prefix requires `secure`, path `/`
    /// and no domain.
    pub name: Option<String>,
    /// `Domain` attribute; omit for a host-only cookie.
    #[serde(default)]
    pub domain: Option<String>,
    /// `Path` attribute (default `/`).
    #[serde(default = "defaults::cookie_path")]
    pub path: String,
    /// `strict` (default), `lax` or `none`.
    #[serde(default = "defaults::cookie_same_site")]
    pub same_site: String,
    /// `Secure` attribute (default true). Turning it off is for plain-HTTP development
    /// only and is logged as a warning at start.
    #[serde(default = "defaults::cookie_secure")]
    pub secure: bool,
    /// Sealing keys; the first seals, the others still open older cookies.
    pub keys: Vec<KeyFile>,
}

/// One key of a key ring.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Short identifier carried in what the key seals (1–32 of `A-Za-z0-9_-`).
    pub id: String,
    /// 32 bytes, base64-encoded; `${ENV}` or `file:/path`.
    pub secret: String,
}

/// Session storage and lifetime.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    /// Omit for the embedded in-memory store.
    #[serde(default)]
    pub store: Option<StoreFile>,
    /// One key, 32 bytes, base64-encoded, encrypting stored sessions: a one-key ring
    /// whose id is `default`. Not together with `at_rest_keys`.
    #[serde(default)]
    pub at_rest_key: Option<String>,
    /// The at-rest key ring: the first key seals, the others still open older records.
    #[serde(default)]
    pub at_rest_keys: Option<Vec<KeyFile>>,
    /// How often the store is counted by at-rest key (default `30s`).
    #[serde(default = "defaults::key_census_interval")]
    pub key_census_interval: String,
    /// A session unused for this long ends (default `30m`).
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: String,
    /// A session ends this long after login, used or not (default `12h`).
    #[serde(default = "defaults::absolute_timeout")]
    pub absolute_timeout: String,
    /// Refresh an access token this long before it expires (default `30s`).
    #[serde(default = "defaults::refresh_before_expiry")]
    pub refresh_before_expiry: String,
    /// How long a request waits for a refresh another request or instance is doing before
    /// it gives up (default `5s`).
    #[serde(default = "defaults::refresh_lock_wait")]
    pub refresh_lock_wait: String,
}

/// The session store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// A Redis server.
    #[serde(default)]
    pub redis: Option<RedisFile>,
    /// The embedded store, with its bound.
    #[serde(default)]
    pub memory: Option<MemoryFile>,
}

/// Redis connection settings: exactly one of `url`, `cluster` and `sentinel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisFile {
    /// A single server: `redis://[user:password@]host:port[/db]`, `rediss://…` or `unix:///path`.
    #[serde(default)]
    pub url: Option<String>,
    /// A Redis Cluster: seed node URLs.
    #[serde(default)]
    pub cluster: Option<Vec<String>>,
    /// A Sentinel-managed master.
    #[serde(default)]
    pub sentinel: Option<SentinelFile>,
    /// Key prefix (default `bffgate:`).
    #[serde(default = "defaults::redis_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for one store operation (default `1s`).
    #[serde(default = "defaults::redis_timeout")]
    pub timeout: String,
    /// A PEM file of CA certificates trusted for TLS (`rediss://`, TLS sentinels and data
    /// nodes) instead of the system's roots.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// The in-process session cache (default: on, `100ms` window).
    #[serde(default)]
    pub cache: Option<CacheFile>,
}

/// `session.store.redis.cache` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheFile {
    /// Longest a session read from Redis is served from the cache, at most `5s`; `0`: no
    /// cache (default `100ms`). A bare number is taken as written (`0` is `0s`).
    #[serde(
        default = "defaults::cache_window",
        deserialize_with = "text_or_number"
    )]
    pub window: String,
    /// Most sessions held (default 100000).
    #[serde(default = "defaults::cache_max_entries")]
    pub max_entries: u64,
    /// Most bytes held: a number with an optional `KiB`, `MiB` or `GiB` (default `64MiB`).
    #[serde(default = "defaults::cache_max_bytes")]
    pub max_bytes: String,
}

/// A scalar as text: a string, or a number as YAML wrote it (`window: 0`).
fn text_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Text(String),
        Int(u64),
    }
    Ok(match Scalar::deserialize(d)? {
        Scalar::Text(s) => s,
        Scalar::Int(n) => n.to_string(),
    })
}

/// Sentinel settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelFile {
    /// The master's name as the sentinels know it.
    pub master_name: String,
    /// Sentinel URLs, e.g. `redis://10.0.0.1:26379`; `rediss://` for TLS and
    /// `user:password@` for the sentinels' own authentication.
    pub nodes: Vec<String>,
    /// The ACL user on the master and replicas.
    #[serde(default)]
    pub username: Option<String>,
    /// The password on the master and replicas (a literal, `${ENV}` or `file:/path`).
    #[serde(default)]
    pub password: Option<String>,
    /// Whether the master and replicas speak TLS (default false).
    #[serde(default)]
    pub tls: bool,
}

/// In-memory store settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryFile {
    /// The most sessions kept; the least recently used go first (default 100000).
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: u64,
}

/// The `otel` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtelFile {
    /// OTLP/HTTP traces endpoint, e.g. `http://otel-collector:4318/v1/traces`.
    pub endpoint: String,
    /// `service.name` of the spans (default `bffgate`).
    #[serde(default = "defaults::otel_service_name")]
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0 (default 1.0). A request that continues a
    /// client's trace follows that trace's sampling decision.
    #[serde(default = "defaults::otel_sample_ratio")]
    pub sample_ratio: f64,
    /// Continue the trace a client names in `traceparent` (default false: every request
    /// starts a new trace, and a client cannot choose trace ids). Turn on when the clients
    /// that reach bffgate are your own (a load balancer or gateway that starts traces).
    #[serde(default)]
    pub accept_traceparent: bool,
}
