//! Failures to proxy, mapped to the JSON errors the SPA expects: 502 when the upstream
//! cannot be reached, 504 when it is too slow, 400 when the request could not be read.

use crate::http::ApiError;
use crate::live::Route;
use crate::metrics;
use pingora::{Error, ErrorSource, ErrorType};

/// What a failed request turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Answer this error.
    Answer(ApiError),
    /// The client is gone: nothing can be answered.
    ClientClosed,
}

impl Failure {
    /// The access log's code for it.
    pub fn code(self) -> &'static str {
        match self {
            Failure::Answer(e) => e.code(),
            Failure::ClientClosed => "client_closed",
        }
    }

    /// The status Pingora records (0 when nothing is answered).
    pub fn status(self) -> u16 {
        match self {
            Failure::Answer(e) => e.status(),
            Failure::ClientClosed => 0,
        }
    }
}

/// Classifies a Pingora error by its type and source.
pub fn classify(e: &Error) -> Failure {
    use ErrorType::*;
    let err = match (e.etype(), e.esource()) {
        (HTTPStatus(s), _) => ApiError::HttpStatus(*s),
        (ReadTimedout | WriteTimedout, ErrorSource::Upstream) => ApiError::UpstreamTimeout,
        (_, ErrorSource::Upstream) => ApiError::UpstreamUnavailable,
        (
            ConnectTimedout | ConnectRefused | ConnectNoRoute | ConnectError | ConnectProxyFailure
            | TLSHandshakeFailure,
            _,
        ) => ApiError::UpstreamUnavailable,
        (ReadError | WriteError | ConnectionClosed, ErrorSource::Downstream) => {
            return Failure::ClientClosed
        }
        (_, ErrorSource::Downstream) => ApiError::BadRequest,
        _ => ApiError::Internal,
    };
    Failure::Answer(err)
}

/// Counts an upstream failure of `route`.
pub fn count(route: &Route, failure: Failure) {
    let kind = match failure {
        Failure::Answer(ApiError::UpstreamTimeout) => "timeout",
        Failure::Answer(ApiError::UpstreamUnavailable) => "unavailable",
        _ => return,
    };
    metrics::UPSTREAM_ERRORS
        .with_label_values(&[route.config.name.as_str(), kind])
        .inc();
}
