//! Phase-level tests of `request_filter`: a real Pingora HTTP/1 session over an in-memory
//! duplex stream, the memory store, no provider. What they pin down: every local answer
//! is framed JSON with its code, and the code reaches the context the access log reads.

use super::*;
use crate::guard::Guard;
use crate::live::testing::{self, ORIGIN};
use crate::live::LiveConfig;
use crate::session::{SessionStore, Tokens, UserSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ROUTES: &str = "routes:\n\
  - {name: api, match: {path_prefix: /api}, upstreams: [\"http://127.0.0.1:9\"], auth: required}\n\
  - {name: public, match: {path_prefix: /public}, upstreams: [\"http://127.0.0.1:9\"], auth: none}\n\
  - {name: reads, match: {path_prefix: /reads, methods: [GET]}, upstreams: [\"http://127.0.0.1:9\"], auth: optional}\n";

struct Harness {
    proxy: EdgeProxy,
    store: SessionStore,
    live: Arc<LiveConfig>,
}

fn harness() -> Harness {
    let config = testing::config_with_rotation(ROUTES);
    let store = SessionStore::from_config(&config.session).expect("memory store");
    let live = LiveConfig::handle(&config);
    let guard = Arc::new(Guard::new(store.clone(), None));
    Harness {
        live: live.load_full(),
        proxy: EdgeProxy::new(live, guard, None, Arc::new(AtomicBool::new(false))),
        store,
    }
}

/// What one request through `request_filter` did.
struct Outcome {
    forwarded: bool,
    ctx: RequestCtx,
    response: String,
}

impl Outcome {
    fn status(&self) -> u16 {
        self.response
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn body(&self) -> serde_json::Value {
        let body = self.response.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
    }

    fn has_header(&self, line_start: &str) -> bool {
        self.response.lines().any(|l| {
            l.to_ascii_lowercase()
                .starts_with(&line_start.to_ascii_lowercase())
        })
    }
}

async fn run(proxy: &EdgeProxy, head: &str) -> Outcome {
    let (mut client, server) = tokio::io::duplex(1 << 16);
    client.write_all(head.as_bytes()).await.expect("write");
    let mut session = HttpSession::new_h1(Box::new(server));
    assert!(
        session.read_request().await.expect("read"),
        "request parsed"
    );
    let mut ctx = proxy.new_ctx();
    let forwarded = !proxy
        .request_filter(&mut session, &mut ctx)
        .await
        .expect("request_filter");
    drop(session);
    let mut response = String::new();
    client
        .read_to_string(&mut response)
        .await
        .expect("read response");
    Outcome {
        forwarded,
        ctx,
        response,
    }
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: api.example\r\n{extra}\r\n")
}

/// Asserts a local JSON error answer whose code also reached the access log's context.
fn assert_error(o: &Outcome, status: u16, code: &str) {
    assert!(!o.forwarded, "{code}: answered locally");
    assert_eq!(o.status(), status, "{}", o.response);
    assert_eq!(o.body()["code"], code, "{}", o.response);
    assert!(o.body()["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert_eq!(o.ctx.error_code, Some(code), "the access log's code");
    assert!(o.has_header("content-length:"), "framed");
    assert!(o.has_header("cache-control: no-store"));
}

#[tokio::test]
async fn health_probes_answer_without_a_route() {
    let h = harness();
    let alive = run(&h.proxy, &get("/healthz", "")).await;
    assert_eq!((alive.status(), alive.ctx.error_code), (200, None));
    assert_eq!(alive.body()["status"], "ok");
    let ready = run(&h.proxy, &get("/readyz", "")).await;
    assert_eq!(ready.body()["status"], "ready");
    assert_eq!(ready.ctx.label(), "health");
}

#[tokio::test]
async fn every_refusal_is_json_with_its_code_in_the_log() {
    let h = harness();
    let p = &h.proxy;
    assert_error(&run(p, &get("/api/orders", "")).await, 401, "no_session");
    assert_error(&run(p, &get("/nowhere", "")).await, 404, "route_not_found");
    assert_error(&run(p, &get("/bff/login", "")).await, 404, "agent_disabled");
    assert_error(
        &run(p, &get("/api/../public", "")).await,
        400,
        "invalid_path",
    );
    assert_error(&run(p, &get("/%61pi/x", "")).await, 400, "invalid_path");
    let post = "POST /reads HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_error(&run(p, post).await, 405, "method_not_allowed");
    let unsafe_post = "POST /api/x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n";
    assert_error(&run(p, unsafe_post).await, 403, "csrf_violation");
    let foreign = "OPTIONS /api/x HTTP/1.1\r\nHost: a\r\nOrigin: https://evil.example\r\n\
                   Access-Control-Request-Method: POST\r\n\r\n";
    assert_error(&run(p, foreign).await, 403, "cors_origin_not_allowed");
    let garbage = format!("Cookie: {}=bm90LWEtY29va2ll\r\n", h.live.cookie.name());
    let o = run(p, &get("/api/x", &garbage)).await;
    assert_error(&o, 401, "invalid_session");
    assert!(o.has_header(&format!("set-cookie: {}=;", h.live.cookie.name())));
}

#[tokio::test]
async fn routes_without_a_session_policy_or_with_a_session_are_forwarded() {
    let h = harness();
    let open = run(&h.proxy, &get("/public/x", "")).await;
    assert!(open.forwarded && open.response.is_empty());
    assert_eq!(open.ctx.label(), "public");
    let anonymous = run(&h.proxy, &get("/reads/x", "")).await;
    assert!(anonymous.forwarded);
    assert_eq!(anonymous.ctx.token, None);

    let tokens = Tokens {
        access_token: "at-1".into(),
        refresh_token: None,
        id_token: None,
        access_expires_at: None,
        refresh_expires_at: None,
    };
    let s = UserSession::new(
        "u".into(),
        None,
        serde_json::json!({}),
        tokens,
        &h.live.session,
    );
    h.store.create(&s).await.expect("stored");
    let cookie = format!(
        "Cookie: {}={}\r\n",
        h.live.cookie.name(),
        h.live.cookie.cipher().seal(&s.id)
    );
    let o = run(&h.proxy, &get("/api/x", &cookie)).await;
    assert!(o.forwarded);
    assert_eq!(o.ctx.token.as_deref(), Some("at-1"));
    h.store.delete(&s.id).await.expect("deleted");
    let o = run(&h.proxy, &get("/api/x", &cookie)).await;
    assert_error(&o, 401, "session_expired");
    assert!(o.has_header(&format!("set-cookie: {}=;", h.live.cookie.name())));
}

#[tokio::test]
async fn a_trusted_preflight_is_answered_with_cors() {
    let h = harness();
    let head = format!(
        "OPTIONS /api/x HTTP/1.1\r\nHost: a\r\nOrigin: {ORIGIN}\r\n\
         Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-bffgate-csrf\r\n\r\n"
    );
    let o = run(&h.proxy, &head).await;
    assert_eq!(o.status(), 204);
    assert!(o.has_header(&format!("access-control-allow-origin: {ORIGIN}")));
    assert!(o.has_header("access-control-allow-headers: x-bffgate-csrf"));
    assert_eq!(o.ctx.error_code, None);
}
