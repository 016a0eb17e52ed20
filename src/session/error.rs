//! Session store failures.

/// Why a store operation failed. Messages never carry keys, ids or tokens.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time.
    #[error("session store timed out")]
    Timeout,
    /// The store could not be reached or refused the command.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// What was to be stored could not be serialized or encrypted; nothing was stored. The
    /// message names the step that failed, never the data.
    #[error("sealing for the session store failed: {0}")]
    Seal(&'static str),
}
