//! The provider's side of DPoP: every token and userinfo request of a DPoP session carries
//! a proof, and a provider that asks for a nonce (`use_dpop_nonce` with a `DPoP-Nonce`
//! header) gets the request once more with it. The provider's latest nonce is remembered
//! for the next request, so the retry is paid once per nonce, not per call.

use super::OidcClient;
use crate::dpop::{asks_for_nonce, DpopKey, HEADER, NONCE_HEADER};
use openidconnect::{AsyncHttpClient, HttpClientError, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;

/// The HTTP client `openidconnect` requests go through: the provider client's, adding a
/// DPoP proof by `key` when there is one.
pub(super) struct WithProof<'a> {
    pub(super) client: &'a OidcClient,
    pub(super) key: Option<&'a DpopKey>,
}

impl<'c> AsyncHttpClient<'c> for WithProof<'_> {
    type Error = HttpClientError<reqwest::Error>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.client.send_with_proof(request, self.key))
    }
}

impl OidcClient {
    /// Sends an `openidconnect` request, with a DPoP proof by `key` when given.
    pub(super) async fn send_with_proof(
        &self,
        request: HttpRequest,
        key: Option<&DpopKey>,
    ) -> Result<HttpResponse, HttpClientError<reqwest::Error>> {
        let Some(key) = key else {
            return self.http.call(request).await;
        };
        let mut resp = self.http.call(self.with_proof(&request, key)).await?;
        if self.learn_nonce(resp.headers(), resp.status().as_u16(), resp.body()) {
            resp = self.http.call(self.with_proof(&request, key)).await?;
            self.learn_nonce(resp.headers(), resp.status().as_u16(), resp.body());
        }
        Ok(resp)
    }

    /// `request` with a fresh proof for its method and URL (and the provider's nonce).
    fn with_proof(&self, request: &HttpRequest, key: &DpopKey) -> HttpRequest {
        let mut r = request.clone();
        let url = r.uri().to_string();
        match key
            .proof(r.method().as_str(), &url, None, self.nonce().as_deref())
            .ok()
            .and_then(|p| http::HeaderValue::from_str(&p).ok())
        {
            Some(p) => {
                r.headers_mut().insert(HEADER, p);
            }
            // Without a proof the provider refuses the call, which reports itself.
            None => tracing::warn!("a DPoP proof could not be made"),
        }
        r
    }

    /// The proof header for a request made with reqwest directly (userinfo).
    pub(super) fn proof_for(
        &self,
        key: &DpopKey,
        method: &str,
        url: &str,
        access_token: Option<&str>,
    ) -> Option<String> {
        key.proof(method, url, access_token, self.nonce().as_deref())
            .ok()
    }

    fn nonce(&self) -> Option<String> {
        self.dpop_nonce.lock().ok().and_then(|n| n.clone())
    }

    /// Remembers a nonce the provider sent; true when the answer asks to try again with it
    /// (`400 use_dpop_nonce` at the token endpoint, `401` with it in `WWW-Authenticate` at
    /// a resource such as userinfo).
    pub(super) fn learn_nonce(&self, headers: &http::HeaderMap, status: u16, body: &[u8]) -> bool {
        let Some(nonce) = headers
            .get(NONCE_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|n| !n.is_empty() && n.len() <= 512)
        else {
            return false;
        };
        if let Ok(mut held) = self.dpop_nonce.lock() {
            *held = Some(nonce.to_string());
        }
        let challenge = headers
            .get(http::header::WWW_AUTHENTICATE)
            .is_some_and(|v| asks_for_nonce(v.as_bytes()));
        matches!(status, 400 | 401) && (challenge || asks_for_nonce(body))
    }
}
