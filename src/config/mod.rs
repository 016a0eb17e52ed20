//! Configuration: the YAML file, its validation, and the internal [`Config`] the rest of
//! the process runs on (the types below).
//!
//! Loading is `read → expand ${ENV} → deserialize (unknown keys refused) → validate`. The
//! validation step collects every problem with its key path, so an operator fixes a file in
//! one pass. Nothing outside this module sees the file structs.
//!
//! Where things are:
//! - `load.rs`: the pipeline ([`load()`], [`parse`]) and the problem collector;
//! - [`file`](mod@file): the file's serde structs; `defaults.rs`: every default value;
//! - `values.rs`: parsers shared by the sections (addresses, durations, keys, URLs);
//! - one checker per section: `server.rs` (listen, metrics, server), `agent.rs`,
//!   `oidc.rs`, `cookie.rs`, `session.rs`, `routes.rs` (with `identity.rs`, `token.rs` and
//!   `rate.rs` for a route's identity, token and rate-limit policies), `otel.rs`, `admin.rs`;
//! - `keyring.rs`: key rings (`cookie.keys`, `session.at_rest_keys`);
//! - `resolve.rs`: reading secret and certificate files; `dns.rs`: `server.dns` (upstream
//!   names are not resolved here but by `service/dns.rs`, in the background);
//! - `error.rs`: [`ConfigError`] and [`ConfigProblem`].

mod admin;
mod agent;
mod cookie;
mod defaults;
mod dns;
mod error;
pub mod file;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod fuzz;
mod identity;
mod keyring;
mod load;
mod oidc;
mod otel;
mod rate;
mod resolve;
mod routes;
mod server;
mod session;
mod token;
mod values;

pub use defaults::ADMIN_CLI_URL;
pub use dns::DnsSettings;
pub use error::{ConfigError, ConfigProblem};
pub use load::{load, parse};
pub use rate::{parse_rate, Rate, RateLimit};

use http::{HeaderName, HeaderValue, Method};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use zeroize::Zeroize;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Browser-facing listeners.
    pub listen: Vec<SocketAddr>,
    /// TLS settings of listeners, by address (absent: plain HTTP).
    pub tls: Vec<(SocketAddr, TlsListener)>,
    /// Prometheus listener, if any.
    pub metrics: Option<SocketAddr>,
    /// Process settings for Pingora.
    pub server: ServerSettings,
    /// The OpenID provider, if the agent is enabled.
    pub oidc: Option<OidcConfig>,
    /// Agent endpoints and browser policy.
    pub agent: AgentConfig,
    /// The session cookie.
    pub cookie: CookieConfig,
    /// Session storage and lifetimes.
    pub session: SessionConfig,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// How the access log names a request's user.
    pub access_log_user: LogUser,
    /// API routes in file order.
    pub routes: Vec<RouteConfig>,
    /// OpenTelemetry tracing, if enabled.
    pub otel: Option<OtelConfig>,
    /// The admin API listener, if enabled.
    pub admin: Option<AdminConfig>,
}

/// The admin API: where it listens, the token it wants, who may call it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Its own listener (never a public one).
    pub addr: SocketAddr,
    /// The bearer token (read from its file or variable at load).
    pub token: String,
    /// Client networks allowed to call; empty: any.
    pub allow: Vec<ipnet::IpNet>,
}

impl fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminConfig")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("allow", &self.allow)
            .finish()
    }
}

/// How the access log names the user of a request with a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogUser {
    /// The first 16 hex digits of SHA-256 of `sub`: lines of one user can be told apart
    /// and grouped, without the identifier itself.
    Hash,
    /// The `sub` claim as is.
    Sub,
    /// Nobody.
    None,
}

/// Where and how request traces are exported (OTLP/HTTP, protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct OtelConfig {
    /// The collector's OTLP/HTTP traces URL.
    pub endpoint: url::Url,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Share of new traces recorded (0.0–1.0).
    pub sample_ratio: f64,
    /// Whether a client's `traceparent` is continued.
    pub accept_traceparent: bool,
}

/// A TLS listener's certificate files (checked readable at load).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListener {
    /// PEM certificate chain path.
    pub cert: String,
    /// PEM private key path.
    pub key: String,
}

/// Process settings handed to Pingora's `ServerConf`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Proxy worker threads.
    pub threads: usize,
    /// Whether Pingora's worker threads steal each other's tasks.
    pub work_stealing: bool,
    /// Host names (lowercase, no port) bffgate answers for; empty: any.
    pub hosts: Vec<String>,
    /// How `;` path parameters are treated.
    pub path_params: crate::path::PathParams,
    /// Seconds of grace after SIGTERM.
    pub grace_period_seconds: u64,
    /// Seconds to wait for in-flight work after the grace period.
    pub graceful_shutdown_timeout_seconds: u64,
    /// Pid file path.
    pub pid_file: String,
    /// Listener hand-over socket for graceful upgrade.
    pub upgrade_sock: String,
    /// CA bundle for HTTPS upstreams.
    pub upstream_ca_file: Option<String>,
    /// Which peers may tell bffgate the client's address.
    pub forwarding: Forwarding,
    /// How upstream host names are looked up (`server.dns`).
    pub dns: DnsSettings,
}

/// Which peers may tell bffgate the client's address, and in which header.
#[derive(Debug, Clone)]
pub struct Forwarding {
    /// Proxies in front of bffgate (`server.trusted_proxies`); empty: trust no one.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Where a trusted proxy puts the client address (`server.client_ip_header`).
    pub client_ip_header: HeaderName,
}

/// Agent endpoints and the browser policy shared with API routes.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Path prefix of the agent endpoints, without a trailing slash.
    pub base_path: String,
    /// Serialized origins (`scheme://host[:port]`, lowercase) trusted for credentialed calls.
    pub allowed_origins: Vec<String>,
    /// Header required on unsafe methods.
    pub csrf_header: HeaderName,
    /// Per-client-address limit over every agent endpoint.
    pub rate_limit: RateLimit,
}

/// How bffgate authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret.
    Basic,
    /// Id and secret in the form body.
    Post,
    /// A JWT signed with bffgate's own key (RFC 7523), no secret.
    PrivateKeyJwt,
}

/// When the authorization request is pushed to the provider first (RFC 9126).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushedAuthorization {
    /// When the provider's discovery names a PAR endpoint.
    Auto,
    /// Always; a provider without a PAR endpoint keeps bffgate not ready.
    Required,
    /// Never: the parameters travel in the browser's authorization URL.
    Off,
}

/// A secret string (client secret). Never printed.
#[derive(Clone)]
pub struct SecretString(pub(crate) String);

impl SecretString {
    /// The secret itself, for handing to the client library.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

/// Equal secrets (configuration reload compares configurations), compared in constant time.
impl PartialEq for SecretString {
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretString {}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The OpenID provider and this client's registration.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Issuer, exactly as the provider names itself.
    pub issuer: String,
    /// Extra CAs (PEM bundle path) trusted for the provider's certificate.
    pub ca_file: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: SecretString,
    /// Token endpoint authentication.
    pub client_auth: ClientAuth,
    /// Scopes requested.
    pub scopes: Vec<String>,
    /// Callback URL.
    pub redirect_uri: url::Url,
    /// Default landing page after login.
    pub post_login_redirect: url::Url,
    /// Landing page after logout at the provider.
    pub post_logout_redirect: Option<url::Url>,
    /// Accepted ID-token algorithms (JOSE names).
    pub id_token_algs: Vec<String>,
    /// Claims shown by `/bff/session`.
    pub session_claims: Vec<String>,
    /// Lifetime of a login transaction.
    pub login_timeout: Duration,
    /// Logins one client address may start per `login_timeout`.
    pub logins_per_client: u32,
    /// Tolerated clock skew.
    pub clock_skew: Duration,
    /// Extra authorization request parameters.
    pub auth_params: Vec<(String, String)>,
    /// The `private_key_jwt` signing key (set exactly when `client_auth` is that mode).
    pub signing_key: Option<std::sync::Arc<crate::jose::SigningKey>>,
    /// Pushed authorization requests.
    pub pushed_authorization: PushedAuthorization,
    /// Whether sessions' tokens are DPoP-bound.
    pub dpop: bool,
}

/// `SameSite` attribute of the session cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Sent only on same-site requests (the default).
    Strict,
    /// Also sent on top-level cross-site navigations.
    Lax,
    /// Sent on every request; requires `Secure`.
    None,
}

impl SameSite {
    /// The attribute value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// 32 bytes of key material. Its `Debug` never prints the bytes, and it is wiped on drop.
#[derive(Clone)]
pub struct SecretKey(pub(crate) [u8; 32]);

impl SecretKey {
    /// Wraps raw key bytes (tests and tools build keys this way).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SecretKey(bytes)
    }

    /// The raw bytes, for handing to a cipher.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// One key of a key ring (`cookie.keys`, `session.at_rest_keys`): the first key of a
/// ring seals, the others still open what they sealed.
#[derive(Debug, Clone)]
pub struct RingKey {
    /// Identifier carried in what the key seals.
    pub id: String,
    /// Key material.
    pub secret: SecretKey,
}

/// One key of the cookie key ring.
pub type CookieKey = RingKey;

/// The session cookie's name, attributes and key ring.
#[derive(Debug, Clone)]
pub struct CookieConfig {
    /// Cookie name.
    pub name: String,
    /// `Domain` attribute.
    pub domain: Option<String>,
    /// `Path` attribute.
    pub path: String,
    /// `SameSite` attribute.
    pub same_site: SameSite,
    /// `Secure` attribute.
    pub secure: bool,
    /// Key ring; the first key seals.
    pub keys: Vec<CookieKey>,
}

/// Which store holds sessions.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// The embedded, bounded in-memory store.
    Memory {
        /// Most sessions kept.
        max_sessions: u64,
    },
    /// Redis.
    Redis {
        /// How to reach it (URLs may hold a password: never log them).
        mode: RedisMode,
        /// Key prefix.
        key_prefix: String,
        /// Longest wait for one operation.
        timeout: Duration,
        /// PEM certificates trusted for TLS (`rediss://`, and TLS sentinels and data
        /// nodes) instead of the system's roots.
        ca_pem: Option<String>,
        /// The in-process cache of decoded sessions.
        cache: SessionCacheConfig,
    },
}

/// The in-process session cache of a shared store (`session.store.redis.cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionCacheConfig {
    /// Longest a session read from the store is served from the cache; zero: no cache.
    pub window: Duration,
    /// Most sessions held.
    pub max_entries: u64,
    /// Most bytes held (approximate: what the cached sessions and their entries take).
    pub max_bytes: u64,
}

/// Which Redis deployment holds sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisMode {
    /// One server (`redis://`, `rediss://` or `unix://`).
    Single(String),
    /// A Redis Cluster, by seed node URLs.
    Cluster(Vec<String>),
    /// The master a set of sentinels names.
    Sentinel {
        /// The monitored master's name.
        master_name: String,
        /// Sentinel URLs (`redis://host:26379`, `rediss://user:password@host:26379`).
        nodes: Vec<String>,
        /// The ACL user on the master and replicas (not the sentinels).
        username: Option<String>,
        /// The password on the master and replicas.
        password: Option<SecretString>,
        /// Whether the master and replicas speak TLS.
        tls: bool,
    },
}

/// Session storage and lifetimes.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The store.
    pub store: StoreConfig,
    /// Key ring encrypting stored sessions and coordination records; the first seals.
    pub at_rest_keys: Vec<RingKey>,
    /// How often the store is counted by at-rest key (`bff_session_records_by_key`).
    pub key_census_interval: Duration,
    /// Sliding inactivity limit.
    pub idle_timeout: Duration,
    /// Hard limit from login.
    pub absolute_timeout: Duration,
    /// Refresh access tokens this long before they expire.
    pub refresh_before_expiry: Duration,
    /// Longest wait for a refresh done by someone else.
    pub refresh_lock_wait: Duration,
}

/// How a route treats the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A valid session is needed; its access token is forwarded.
    Required,
    /// A session is used when present; anonymous requests pass without a token.
    Optional,
    /// No session is read; the request passes as is (minus our cookie).
    None,
}

impl AuthMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Optional => "optional",
            AuthMode::None => "none",
        }
    }
}

/// One upstream server of a route. A host name is resolved in the background
/// (`service/dns.rs`), never at load time; an IP literal is its own address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Host name or IP literal (no brackets), also used for SNI and certificate checks.
    pub host: String,
    /// Port.
    pub port: u16,
    /// The address when `host` is an IP literal.
    pub ip: Option<std::net::IpAddr>,
    /// Whether to speak TLS to it.
    pub tls: bool,
}

impl UpstreamConfig {
    /// `host:port` as configured (IPv6 in brackets): how logs, metrics and `/readyz` name it.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One API route.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Unique name.
    pub name: String,
    /// Segment-aligned path prefix (no trailing slash unless it is `/`).
    pub path_prefix: String,
    /// Exact host (lowercase, no port), or any.
    pub host: Option<String>,
    /// Allowed methods, or all.
    pub methods: Option<Vec<Method>>,
    /// Upstream servers.
    pub upstreams: Vec<UpstreamConfig>,
    /// Path part removed before forwarding.
    pub strip_prefix: Option<String>,
    /// Session policy.
    pub auth: AuthMode,
    /// Request headers removed.
    pub headers_remove: Vec<HeaderName>,
    /// Request headers set.
    pub headers_add: Vec<(HeaderName, HeaderValue)>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Upstream read timeout.
    pub read_timeout: Duration,
    /// Whether HTTPS upstreams' certificates are verified.
    pub tls_verify: bool,
    /// Active health-check interval, if enabled.
    pub health_check: Option<Duration>,
    /// Identity headers and claim requirements.
    pub identity: RouteIdentity,
    /// Which access token the upstream gets.
    pub token: TokenPolicy,
    /// With `oidc.dpop`: the user's token goes upstream as `DPoP` with a proof (else as a
    /// bearer).
    pub dpop: bool,
    /// Request-rate limits.
    pub rate_limit: RateLimit,
}

/// Which access token a route forwards upstream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TokenPolicy {
    /// The session's own access token (refreshed when due).
    #[default]
    User,
    /// No `Authorization` header at all.
    None,
    /// A token of this route's own, obtained by `grant` and cached (per session for an
    /// exchange, per process for client credentials).
    Grant(RouteGrant),
}

/// How a route's own token is obtained, and for what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteGrant {
    /// Token exchange of the user's token, or client credentials.
    pub kind: GrantKind,
    /// RFC 8707 resource indicator.
    pub resource: Option<String>,
    /// Scopes asked for (space-joined on the wire).
    pub scopes: Vec<String>,
}

impl RouteGrant {
    /// The name a cached token of this grant is kept under: equal grants share a token.
    pub fn cache_key(&self) -> String {
        format!(
            "{}|{}|{}",
            self.kind.as_str(),
            self.resource.as_deref().unwrap_or(""),
            self.scopes.join(" ")
        )
    }
}

/// The grant a route token comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantKind {
    /// RFC 8693 token exchange, the user's access token as `subject_token`.
    Exchange,
    /// The client-credentials grant: the client's own token, for every session.
    Client,
}

impl GrantKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Exchange => "exchange",
            GrantKind::Client => "client",
        }
    }
}

/// What a route tells the upstream about the user, and what it requires of them.
#[derive(Debug, Clone, Default)]
pub struct RouteIdentity {
    /// Headers set from claims: (header, claim name).
    pub headers: Vec<(HeaderName, String)>,
    /// Claims required: (claim name, accepted values).
    pub require: Vec<(String, Vec<String>)>,
}
