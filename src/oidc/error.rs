//! OpenID provider failures. Messages never carry tokens, codes or secrets.

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
}
