//! The `routes` entries as written: match, upstreams, session, token and rate-limit
//! policies, header changes, timeouts, health checks and identity.

use super::defaults;
use serde::Deserialize;
use std::collections::BTreeMap;

/// One API route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Unique name, used in metrics and logs.
    pub name: String,
    /// What requests the route takes.
    #[serde(rename = "match")]
    pub matcher: MatchFile,
    /// `http://host:port` or `https://host:port`; several are balanced round robin.
    pub upstreams: Vec<String>,
    /// A leading path part removed before forwarding.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// `required` (default), `optional` or `none`.
    #[serde(default = "defaults::route_auth")]
    pub auth: String,
    /// Header changes on the way upstream.
    #[serde(default)]
    pub headers: HeadersFile,
    /// Upstream timeouts.
    #[serde(default)]
    pub timeouts: TimeoutsFile,
    /// Verify HTTPS upstreams' certificates and host names (default true). `false` is for
    /// testing only and is logged as a warning.
    #[serde(default = "defaults::route_tls_verify")]
    pub tls_verify: bool,
    /// Active health checks of the upstreams (TCP connect); omit for passive checks only.
    #[serde(default)]
    pub health_check: Option<HealthCheckFile>,
    /// Who the user is, told to the upstream, and what the user must be.
    #[serde(default)]
    pub identity: IdentityFile,
    /// Which access token the upstream gets: `user` (default), `none`, `client`, or
    /// `{grant: exchange | client, resource, scopes}`.
    #[serde(default)]
    pub token: Option<TokenFile>,
    /// With `oidc.dpop`, whether this route's upstream gets `Authorization: DPoP` and a
    /// proof (default true); false sends the token as a bearer.
    #[serde(default = "defaults::route_dpop")]
    pub dpop: bool,
    /// Request-rate limits (off unless set).
    pub rate_limit: Option<RateLimitFile>,
}

/// A route's `token` as written: a name, or a grant with its audience.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum TokenFile {
    /// `user`, `none` or `client`.
    Name(String),
    /// A token obtained for this route.
    Grant(TokenGrantFile),
}

/// A route token obtained by a grant of its own.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenGrantFile {
    /// `exchange` (default: RFC 8693 token exchange of the user's access token) or `client`
    /// (client credentials, shared by every session).
    #[serde(default = "defaults::token_grant")]
    pub grant: String,
    /// The resource indicator (RFC 8707): an absolute URL naming the upstream API.
    #[serde(default)]
    pub resource: Option<String>,
    /// Scopes asked for.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Request-rate limits, shared by every instance on one store.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// Per session: `N/s`, `N/m` or `N/h`.
    pub per_session: Option<String>,
    /// Per client address: `N/s`, `N/m` or `N/h`.
    pub per_client_ip: Option<String>,
    /// Requests that may come at once after a quiet spell (default: the rate's `N`).
    pub burst: Option<u32>,
}

/// A route's identity policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFile {
    /// Request headers bffgate sets from the session's claims: header name → claim name
    /// (`sub`, or a claim in `oidc.session_claims`). The client's headers of these names are
    /// always removed.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Claims the session must carry: claim name → accepted values (one is enough; an
    /// array claim matches when it holds one of them). Otherwise `403 forbidden`.
    #[serde(default)]
    pub require: BTreeMap<String, Vec<String>>,
}

/// Active health checking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckFile {
    /// Time between checks (default `5s`).
    #[serde(default = "defaults::health_check_interval")]
    pub interval: String,
}

/// Route matching.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchFile {
    /// Path prefix, matched on whole segments (`/api` takes `/api` and `/api/x`, not `/apix`).
    pub path_prefix: String,
    /// Exact `Host` (port ignored); omit for any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Allowed methods; omit for all.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
}

/// Request header changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadersFile {
    /// Header names removed from the request.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Headers set on the request (replacing any the client sent).
    #[serde(default)]
    pub add: BTreeMap<String, String>,
}

/// Upstream timeouts.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsFile {
    /// TCP (and TLS) connect (default `2s`).
    pub connect: Option<String>,
    /// Longest wait for upstream bytes (default `30s`).
    pub read: Option<String>,
}
