//! OpenID provider failures, and the translation of HTTP and `openidconnect` errors into
//! them. Messages never carry tokens, codes, secrets or URLs.

/// Why an exchange with the provider failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OidcError {
    /// The provider cannot be reached, timed out, or failed (5xx).
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider's discovery or configuration is not acceptable (e.g. another issuer).
    #[error("provider misconfigured: {0}")]
    Misconfigured(String),
    /// The provider refused the grant as `invalid_grant` (code used, refresh token revoked).
    #[error("the grant is no longer valid")]
    InvalidGrant,
    /// The provider refused, or what it returned failed validation.
    #[error("refused: {0}")]
    Rejected(String),
    /// A refreshed ID token names another user than the session's.
    #[error("the refreshed ID token names another user")]
    SubjectChanged,
}

/// A reqwest error's text without its URL (URLs may carry tokens in queries).
pub(super) fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(i) = text.find(" for url") {
        text.truncate(i);
    }
    let causes = causes(e);
    if causes.is_empty() {
        text
    } else {
        format!("{text}: {causes}")
    }
}

/// Why a request failed, from its underlying errors: a DNS failure, a refused connection,
/// a TLS failure and which certificate error (`invalid peer certificate: UnknownIssuer`),
/// a timeout. URLs are left out.
pub(crate) fn causes(e: &dyn std::error::Error) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        let text = match text.find(" for url") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        if !text.is_empty() && !out.iter().any(|o| o.contains(&text)) {
            out.push(text);
        }
        next = cause.source();
    }
    out.join(": ")
}

/// An error's own text (URL left out) and its causes.
fn without_cause_url(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    if let Some(i) = text.find(" for url") {
        text.truncate(i);
    }
    match causes(e) {
        c if c.is_empty() => text,
        c => format!("{text}: {c}"),
    }
}

/// A failed discovery: an unacceptable document is the provider's misconfiguration, a
/// failed request makes it unavailable.
pub(super) fn discovery_error<E: std::error::Error>(
    e: openidconnect::DiscoveryError<E>,
) -> OidcError {
    use openidconnect::DiscoveryError as D;
    match e {
        D::Validation(v) => OidcError::Misconfigured(format!("discovery refused: {v}")),
        D::Parse(_) => OidcError::Misconfigured("discovery document is not valid".into()),
        D::Response(status, _, _) => OidcError::Unavailable(format!("discovery answered {status}")),
        D::Request(e) => OidcError::Unavailable(format!(
            "the provider cannot be reached: {}",
            without_cause_url(&e)
        )),
        other => OidcError::Unavailable(format!("discovery failed: {other}")),
    }
}

/// A failed token request (code exchange or refresh). Only the error code of a refusal is
/// kept, never its description; `invalid_grant` becomes [`OidcError::InvalidGrant`].
pub(super) fn token_error<RE: std::error::Error, T: openidconnect::ErrorResponse>(
    e: openidconnect::RequestTokenError<RE, T>,
) -> OidcError {
    use openidconnect::RequestTokenError as R;
    match e {
        R::ServerResponse(r) => {
            // An error response that does not serialize still is a refusal: "error".
            let body = serde_json::to_value(&r).unwrap_or_default();
            let code = body
                .get("error")
                .and_then(|c| c.as_str())
                .unwrap_or("error");
            if code == "invalid_grant" {
                OidcError::InvalidGrant
            } else {
                OidcError::Rejected(format!("token endpoint refused: {code}"))
            }
        }
        R::Request(_) => OidcError::Unavailable("the token endpoint cannot be reached".into()),
        R::Parse(_, _) => OidcError::Unavailable("the token endpoint's answer is not valid".into()),
        R::Other(o) => OidcError::Unavailable(o),
    }
}
