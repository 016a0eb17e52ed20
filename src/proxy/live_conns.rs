//! Tracking long-lived responses (WebSocket upgrades, event streams) of a session, so the
//! revocation service can end them when the session ends.
//!
//! Ordinary requests pay one `Option` check per phase: the upstream socket is remembered
//! only for requests with a session, and registered (two system calls to record its
//! addresses) only when the response is `101 Switching Protocols` or `text/event-stream`.
//! Upstreams speak HTTP/1.1, so the socket carries this one request alone; it is released
//! from the registry at the end of the response body, before Pingora may pool it for
//! another request, and again (a no-op then) in `logging` for responses that failed.

use super::RequestCtx;
use crate::live::LiveConnections;
use crate::session::SessionStore;
use pingora::http::ResponseHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::ALPN;
use std::os::unix::io::RawFd;

/// Remembers the upstream socket of a request that has a session.
pub(super) fn connected(ctx: &mut RequestCtx, peer: &HttpPeer, fd: RawFd) {
    if ctx.live_session.is_some() && peer.options.alpn == ALPN::H1 {
        ctx.upstream_fd = Some(fd);
    }
}

/// Whether a response stays open for as long as the upstream keeps it.
fn long_lived(resp: &ResponseHeader) -> bool {
    resp.status.as_u16() == 101
        || resp
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .get(..17)
                    .is_some_and(|t| t.eq_ignore_ascii_case("text/event-stream"))
            })
}

/// Registers the connection when its response is long-lived.
pub(super) fn on_response(
    conns: &LiveConnections,
    store: &SessionStore,
    resp: &ResponseHeader,
    ctx: &mut RequestCtx,
) {
    let (Some(fd), Some(session)) = (ctx.upstream_fd, ctx.live_session.as_ref()) else {
        return;
    };
    if ctx.live_registration.is_some() || !long_lived(resp) {
        return;
    }
    ctx.live_registration = conns.register(store.key_hash(&session.id), fd, session.expires_at);
}

/// Releases the connection's registration (its response ended).
pub(super) fn release(conns: &LiveConnections, ctx: &mut RequestCtx) {
    if let Some(reg) = ctx.live_registration.take() {
        conns.unregister(&reg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_and_event_streams_are_long_lived() {
        let mut resp = ResponseHeader::build(101, None).expect("response");
        assert!(long_lived(&resp));
        resp.set_status(200).expect("status");
        assert!(!long_lived(&resp));
        resp.insert_header("content-type", "Text/Event-Stream; charset=utf-8")
            .expect("header");
        assert!(long_lived(&resp));
        resp.insert_header("content-type", "text/html")
            .expect("header");
        assert!(!long_lived(&resp));
    }
}
