//! Local responses: the one way bffgate answers a request itself.
//!
//! Every response is framed (`Content-Length`, also for empty bodies), so keep-alive
//! connections stay usable, and is marked `no-store`: these answers are per user.

use super::ApiError;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session as HttpSession;
use pingora::Result;

/// A complete response bffgate writes itself.
#[derive(Debug)]
pub struct LocalResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (appended, so several `Set-Cookie` lines are fine).
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Bytes,
    /// Body media type, if there is a body.
    pub content_type: Option<&'static str>,
    /// The error this response answers, if it is one (for the access log).
    pub error: Option<ApiError>,
}

impl LocalResponse {
    /// A response without a body (`Content-Length: 0`).
    pub fn empty(status: u16) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            content_type: None,
            error: None,
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        LocalResponse {
            status,
            headers: Vec::new(),
            // `Value`'s `Display` is its JSON text and cannot fail.
            body: Bytes::from(value.to_string()),
            content_type: Some("application/json"),
            error: None,
        }
    }

    /// A `302` to `to`.
    pub fn redirect(to: &str) -> Self {
        Self::empty(302).with_header("location", to.to_string())
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Writes the response and finishes it.
    ///
    /// # Errors
    /// Writing to the client failed.
    pub async fn send(self, session: &mut HttpSession) -> Result<()> {
        let mut resp = ResponseHeader::build(self.status, Some(4 + self.headers.len()))?;
        if let Some(ct) = self.content_type {
            resp.insert_header(http::header::CONTENT_TYPE, ct)?;
        }
        resp.insert_header(http::header::CONTENT_LENGTH, self.body.len().to_string())?;
        resp.insert_header(http::header::CACHE_CONTROL, "no-store")?;
        for (name, value) in self.headers {
            resp.append_header(name, value)?;
        }
        let head_only = session.req_header().method == http::Method::HEAD;
        session
            .write_response_header(Box::new(resp), head_only || self.body.is_empty())
            .await?;
        if !head_only && !self.body.is_empty() {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

impl From<ApiError> for LocalResponse {
    /// The JSON error body `{"code", "message"}` with the error's status.
    fn from(e: ApiError) -> Self {
        let mut resp = Self::json(
            e.status(),
            &serde_json::json!({ "code": e.code(), "message": e.message() }),
        );
        resp.error = Some(e);
        match e.retry_after() {
            Some(secs) => resp.with_header("retry-after", secs.to_string()),
            None => resp,
        }
    }
}
