//! [`ApiError`]: every error a client can cause, with its status, code and message.
//!
//! It is the only way bffgate makes an error answer. The README's error table lists the
//! same rows ([`ApiError::CATALOGUE`]); a test keeps the two equal.

/// An error answered to the client as `{"code": "...", "message": "..."}`.
///
/// Messages are fixed text chosen here: they never carry tokens, cookies, codes, secrets
/// or anything the request sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the path is not UTF-8, has dot-segments, or encodings that would change the route.
    InvalidPath(&'static str),
    /// 400: the request could not be read.
    BadRequest,
    /// 400: `return_to` is neither a path nor a URL on an allowed origin.
    InvalidReturnTo,
    /// 400: a required parameter is missing.
    InvalidRequest(&'static str),
    /// 400: the callback's `state` is unknown, used, or from another browser.
    InvalidState(&'static str),
    /// 400: the authorization response names another issuer (RFC 9207).
    IssuerMismatch,
    /// 400: the login took longer than `oidc.login_timeout`.
    LoginExpired,
    /// 400: the provider refused the code, or the ID token failed validation.
    LoginFailed,
    /// 400: a back-channel logout token failed validation or was replayed.
    InvalidLogoutToken(&'static str),
    /// 401: no session cookie.
    NoSession,
    /// 401: the session cookie does not open; the cookie is cleared.
    InvalidSession,
    /// 401: the session has ended; the cookie is cleared.
    SessionExpired,
    /// 401: the provider no longer accepts the session's access token.
    TokenRejected,
    /// 403: an unsafe request without a trusted `Origin` and the CSRF header.
    CsrfViolation(&'static str),
    /// 403: a CORS preflight from an origin not in `allowed_origins`.
    CorsOriginNotAllowed,
    /// 403: the session lacks a claim the route requires.
    Forbidden,
    /// 404: no route, or no such agent endpoint.
    RouteNotFound(&'static str),
    /// 404: an agent endpoint, but no provider is configured.
    AgentDisabled,
    /// 405: the path exists with other methods.
    MethodNotAllowed(&'static str),
    /// 409: `POST /refresh` on a session without a refresh token.
    NoRefreshToken,
    /// 413: a request body over the endpoint's limit.
    BodyTooLarge,
    /// 500: bffgate failed in a way the client did not cause.
    Internal,
    /// 502: no upstream of the route could be reached.
    UpstreamUnavailable,
    /// 502: the OpenID provider cannot be reached.
    ProviderUnavailable,
    /// 502: the provider's configuration is not acceptable.
    ProviderMisconfigured,
    /// 503: the session store did not answer.
    StoreUnavailable,
    /// 503: the access token expired and could not be refreshed; the session is kept.
    RefreshUnavailable,
    /// 503: the route's own token (exchange or client credentials) could not be had.
    RouteTokenUnavailable,
    /// 503 (`/readyz`): the provider has not been discovered yet.
    ProviderNotReady,
    /// 504: the upstream did not answer in time.
    UpstreamTimeout,
    /// A Pingora phase failed with this HTTP status.
    HttpStatus(u16),
    /// 429: this client started more logins than `oidc.logins_per_client` allows.
    TooManyLogins,
    /// 400: the `Host` header (or target authority) is not a host name.
    InvalidHost,
    /// 421: the request names a host not in `server.hosts`.
    MisdirectedRequest,
    /// 503 (`/readyz`): the provider answered discovery but cannot serve this
    /// configuration (e.g. PAR required and not offered); the text says why.
    ProviderUnsuitable(&'static str),
    /// 401 (admin listener): no bearer token, or not the admin token.
    AdminUnauthorized,
    /// 403 (admin listener): the caller's address is not in `admin.allow`.
    AdminForbidden,
    /// 429: a rate limit of the route (or of the agent endpoints) is spent; the client may
    /// try again after this many seconds (at least 1).
    RateLimited(u32),
}

impl ApiError {
    /// One of each kind, in the README table's order: the error catalogue.
    pub const CATALOGUE: [ApiError; 38] = [
        ApiError::InvalidPath(""),
        ApiError::BadRequest,
        ApiError::InvalidReturnTo,
        ApiError::InvalidRequest(""),
        ApiError::InvalidState(""),
        ApiError::IssuerMismatch,
        ApiError::LoginExpired,
        ApiError::LoginFailed,
        ApiError::InvalidLogoutToken(""),
        ApiError::NoSession,
        ApiError::InvalidSession,
        ApiError::SessionExpired,
        ApiError::TokenRejected,
        ApiError::CsrfViolation(""),
        ApiError::CorsOriginNotAllowed,
        ApiError::RouteNotFound(""),
        ApiError::AgentDisabled,
        ApiError::MethodNotAllowed(""),
        ApiError::NoRefreshToken,
        ApiError::BodyTooLarge,
        ApiError::Internal,
        ApiError::UpstreamUnavailable,
        ApiError::ProviderUnavailable,
        ApiError::ProviderMisconfigured,
        ApiError::StoreUnavailable,
        ApiError::RefreshUnavailable,
        ApiError::ProviderNotReady,
        ApiError::UpstreamTimeout,
        ApiError::HttpStatus(0),
        ApiError::TooManyLogins,
        ApiError::InvalidHost,
        ApiError::MisdirectedRequest,
        ApiError::Forbidden,
        ApiError::ProviderUnsuitable(""),
        ApiError::AdminUnauthorized,
        ApiError::AdminForbidden,
        ApiError::RouteTokenUnavailable,
        ApiError::RateLimited(1),
    ];

    /// The HTTP status.
    pub fn status(self) -> u16 {
        use ApiError::*;
        match self {
            InvalidPath(_)
            | BadRequest
            | InvalidReturnTo
            | InvalidRequest(_)
            | InvalidState(_)
            | IssuerMismatch
            | LoginExpired
            | LoginFailed
            | InvalidLogoutToken(_)
            | InvalidHost => 400,
            NoSession | InvalidSession | SessionExpired | TokenRejected | AdminUnauthorized => 401,
            CsrfViolation(_) | CorsOriginNotAllowed | Forbidden | AdminForbidden => 403,
            RouteNotFound(_) | AgentDisabled => 404,
            MethodNotAllowed(_) => 405,
            NoRefreshToken => 409,
            MisdirectedRequest => 421,
            BodyTooLarge => 413,
            TooManyLogins | RateLimited(_) => 429,
            Internal => 500,
            UpstreamUnavailable | ProviderUnavailable | ProviderMisconfigured => 502,
            StoreUnavailable
            | RefreshUnavailable
            | RouteTokenUnavailable
            | ProviderNotReady
            | ProviderUnsuitable(_) => 503,
            UpstreamTimeout => 504,
            HttpStatus(s) => s,
        }
    }

    /// The machine-readable code (also the access log's `code`).
    pub fn code(self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidPath(_) => "invalid_path",
            BadRequest => "bad_request",
            InvalidReturnTo => "invalid_return_to",
            InvalidRequest(_) => "invalid_request",
            InvalidState(_) => "invalid_state",
            IssuerMismatch => "issuer_mismatch",
            LoginExpired => "login_expired",
            LoginFailed => "login_failed",
            InvalidLogoutToken(_) => "invalid_logout_token",
            NoSession => "no_session",
            InvalidSession => "invalid_session",
            SessionExpired | TokenRejected => "session_expired",
            CsrfViolation(_) => "csrf_violation",
            CorsOriginNotAllowed => "cors_origin_not_allowed",
            Forbidden => "forbidden",
            RouteNotFound(_) => "route_not_found",
            AgentDisabled => "agent_disabled",
            MethodNotAllowed(_) => "method_not_allowed",
            NoRefreshToken => "no_refresh_token",
            BodyTooLarge => "body_too_large",
            Internal => "internal_error",
            UpstreamUnavailable => "upstream_unavailable",
            ProviderUnavailable | ProviderNotReady => "provider_unavailable",
            ProviderMisconfigured => "provider_misconfigured",
            StoreUnavailable => "session_store_unavailable",
            RefreshUnavailable => "refresh_unavailable",
            RouteTokenUnavailable => "token_unavailable",
            UpstreamTimeout => "upstream_timeout",
            HttpStatus(_) => "http_error",
            TooManyLogins => "too_many_logins",
            InvalidHost => "invalid_host",
            MisdirectedRequest => "misdirected_request",
            ProviderUnsuitable(_) => "provider_unsuitable",
            AdminUnauthorized => "admin_unauthorized",
            AdminForbidden => "admin_forbidden",
            RateLimited(_) => "rate_limited",
        }
    }

    /// The human-readable message.
    pub fn message(self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidPath(why)
            | InvalidRequest(why)
            | InvalidState(why)
            | InvalidLogoutToken(why)
            | CsrfViolation(why)
            | RouteNotFound(why)
            | MethodNotAllowed(why)
            | ProviderUnsuitable(why) => why,
            BadRequest => "the request could not be read",
            InvalidReturnTo => "return_to must be a path or a URL on an allowed origin",
            IssuerMismatch => "the authorization response names another issuer",
            LoginExpired => "the login took too long; start again",
            LoginFailed => "the identity provider's answer was refused",
            NoSession => "no session: log in first",
            InvalidSession => "the session cookie is not valid",
            SessionExpired => "the session has ended: log in again",
            TokenRejected => "the provider no longer accepts this session's token",
            CorsOriginNotAllowed => "this origin may not call bffgate",
            Forbidden => "this session does not have what this route requires",
            AgentDisabled => "no OpenID provider is configured",
            NoRefreshToken => "this session has no refresh token",
            BodyTooLarge => "the request body is too large",
            Internal => "bffgate failed to handle the request",
            UpstreamUnavailable => "the upstream could not be reached",
            ProviderUnavailable => "the identity provider cannot be reached; try again",
            ProviderMisconfigured => "the identity provider's configuration is not acceptable",
            StoreUnavailable => "sessions cannot be read right now; try again",
            RefreshUnavailable => "the access token could not be refreshed; try again",
            RouteTokenUnavailable => {
                "no token for this route could be had from the provider; try again"
            }
            ProviderNotReady => "the OpenID provider has not been discovered yet",
            UpstreamTimeout => "the upstream did not answer in time",
            HttpStatus(_) => "the request failed",
            InvalidHost => "the Host header is not a host name",
            MisdirectedRequest => "bffgate does not answer for this host",
            TooManyLogins => "too many logins were started from this address; try again later",
            AdminUnauthorized => "the admin API needs its bearer token",
            AdminForbidden => "this address may not call the admin API",
            RateLimited(_) => "too many requests; try again after Retry-After seconds",
        }
    }

    /// The `Retry-After` (seconds) the answer carries: a refresh that failed is not tried
    /// again for that long (the refresher's failure hold); a spent rate limit has budget
    /// again after that long.
    pub fn retry_after(self) -> Option<u64> {
        match self {
            ApiError::RefreshUnavailable | ApiError::RouteTokenUnavailable => Some(1),
            ApiError::RateLimited(secs) => Some(u64::from(secs.max(1))),
            _ => None,
        }
    }

    /// Whether the answer also removes the session cookie (it names no live session).
    pub fn clears_session_cookie(self) -> bool {
        matches!(self, ApiError::InvalidSession | ApiError::SessionExpired)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status(), self.code(), self.message())
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The position of a kind in [`ApiError::CATALOGUE`]. The match has no wildcard: a new
    /// kind does not compile until it is placed here, and so in the catalogue.
    fn position(e: ApiError) -> usize {
        use ApiError::*;
        match e {
            InvalidPath(_) => 0,
            BadRequest => 1,
            InvalidReturnTo => 2,
            InvalidRequest(_) => 3,
            InvalidState(_) => 4,
            IssuerMismatch => 5,
            LoginExpired => 6,
            LoginFailed => 7,
            InvalidLogoutToken(_) => 8,
            NoSession => 9,
            InvalidSession => 10,
            SessionExpired => 11,
            TokenRejected => 12,
            CsrfViolation(_) => 13,
            CorsOriginNotAllowed => 14,
            RouteNotFound(_) => 15,
            AgentDisabled => 16,
            MethodNotAllowed(_) => 17,
            NoRefreshToken => 18,
            BodyTooLarge => 19,
            Internal => 20,
            UpstreamUnavailable => 21,
            ProviderUnavailable => 22,
            ProviderMisconfigured => 23,
            StoreUnavailable => 24,
            RefreshUnavailable => 25,
            ProviderNotReady => 26,
            UpstreamTimeout => 27,
            HttpStatus(_) => 28,
            TooManyLogins => 29,
            InvalidHost => 30,
            MisdirectedRequest => 31,
            Forbidden => 32,
            ProviderUnsuitable(_) => 33,
            AdminUnauthorized => 34,
            AdminForbidden => 35,
            RouteTokenUnavailable => 36,
            RateLimited(_) => 37,
        }
    }

    #[test]
    fn catalogue_holds_every_kind_once() {
        for (i, e) in ApiError::CATALOGUE.iter().enumerate() {
            assert_eq!(position(*e), i, "{e:?} is out of place in the catalogue");
        }
    }

    /// The README's error table has one row per kind (status and code), and no other.
    #[test]
    fn readme_error_table_matches_the_catalogue() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n## Errors\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("README has an `## Errors` section");
        let mut documented: Vec<(String, String)> = section
            .lines()
            .filter(|l| {
                l.starts_with("| ") && !l.starts_with("| status") && !l.starts_with("| ---")
            })
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (cells[1].to_string(), cells[2].trim_matches('`').to_string())
            })
            .collect();
        documented.sort();
        let mut catalogue: Vec<(String, String)> = ApiError::CATALOGUE
            .iter()
            .map(|e| {
                let status = match e {
                    ApiError::HttpStatus(_) => "any".to_string(),
                    e => e.status().to_string(),
                };
                (status, e.code().to_string())
            })
            .collect();
        catalogue.sort();
        catalogue.dedup();
        assert_eq!(
            documented, catalogue,
            "README `## Errors` table vs ApiError"
        );
    }
}
