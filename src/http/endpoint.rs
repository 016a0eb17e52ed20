//! The seam between the proxy and the OAuth agent: the proxy hands every request under the
//! agent's base path to an [`AgentEndpoints`] without knowing what it does with it.

use super::{ApiError, LocalResponse};
use crate::live::LiveConfig;
use async_trait::async_trait;
use pingora::proxy::Session as HttpSession;

/// How one agent request was answered.
#[derive(Debug)]
pub struct Handled {
    /// A bounded metrics label naming the endpoint (`agent` when none matched).
    pub label: &'static str,
    /// The answer, or the error to answer with.
    pub outcome: Result<LocalResponse, ApiError>,
}

/// Answers requests under `agent.base_path` in full (implemented by the OAuth agent).
#[async_trait]
pub trait AgentEndpoints: Send + Sync {
    /// Answers one request; `rest` is its path below the base path.
    ///
    /// # Errors
    /// Reading the request failed (the client is gone).
    async fn handle(
        &self,
        http: &mut HttpSession,
        live: &LiveConfig,
        rest: &str,
    ) -> pingora::Result<Handled>;

    /// `Ok` when the agent can serve logins (its provider is discovered).
    ///
    /// # Errors
    /// Why it cannot yet.
    fn ready(&self) -> Result<(), ApiError>;
}
