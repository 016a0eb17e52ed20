//! HTTP/2 over TLS: routing on `:path` and `:authority`, which Pingora turns into the
//! request's URI, and a `host` header beside `:authority`.

use std::net::SocketAddr;
use std::time::Duration;

use super::{config, API_HOST};
use crate::common::{expect_echo, expect_error, free_port, pki, EchoServer, Gateway};

/// An HTTP/2-only client that sends `:authority` for `names`, all resolved to `addr`. The
/// test certificate names localhost only, so it is not checked: the names are the point.
fn h2_client(names: &[&str], addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .danger_accept_invalid_certs(true)
        .http2_prior_knowledge()
        .no_proxy()
        .timeout(Duration::from_secs(10));
    for n in names {
        b = b.resolve(n, addr);
    }
    b.build().expect("h2 client")
}

struct Setup {
    _dir: tempfile::TempDir,
    _echo: EchoServer,
    _gw: Gateway,
    client: reqwest::Client,
    port: u16,
}

async fn setup(server: &str) -> Setup {
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = pki::generate(dir.path());
    let echo = EchoServer::start().await;
    let port = free_port();
    let gw = Gateway::start(&pki::with_tls_listener(&config(&echo, server), port, &pki)).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let client = h2_client(&[API_HOST, "other.example", "evil.example"], addr);
    Setup {
        _dir: dir,
        _echo: echo,
        _gw: gw,
        client,
        port,
    }
}

impl Setup {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.port)
    }

    async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        let resp = self
            .client
            .get(self.url(host, path))
            .send()
            .await
            .expect("h2 request");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        resp
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_path_routes_as_lenient_upstreams_read_it() {
    let s = setup("").await;
    // `..;` is not a dot-segment to a URL library, so these reach the gateway as written.
    expect_error(s.get(API_HOST, "/api;x=1/secret").await, 401, "no_session").await;
    for path in [
        "/pub/..;/api/secret",
        "/pub/.;x/api",
        "/pub/%2e%2e;/api",
        "/api%3Bx/secret",
    ] {
        expect_error(s.get(API_HOST, path).await, 400, "invalid_path").await;
    }
    let seen = expect_echo(s.get(API_HOST, "/pub;v=1/x?q=1").await).await;
    assert_eq!(seen.path, "/pub;v=1/x?q=1");
    // The HTTP/1.1 upstream gets :authority as Host.
    assert_eq!(
        seen.header_all("host"),
        vec![format!("{API_HOST}:{}", s.port)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_host_routes_use_authority_and_refuse_a_conflicting_host() {
    let s = setup("").await;
    expect_error(s.get(API_HOST, "/hosted/x").await, 401, "no_session").await;
    expect_echo(s.get("other.example", "/hosted/x").await).await;
    // `host` beside `:authority`: the same name passes; another is refused, never guessed.
    let same = s
        .client
        .get(s.url(API_HOST, "/hosted/x"))
        .header("host", format!("{API_HOST}:{}", s.port))
        .send()
        .await
        .expect("h2 request");
    expect_error(same, 401, "no_session").await;
    let conflicting = s
        .client
        .get(s.url("other.example", "/hosted/x"))
        .header("host", API_HOST)
        .send()
        .await
        .expect("h2 request");
    // Refused by Pingora's HTTP/2 layer before routing (an empty 400, not JSON).
    assert_eq!(
        conflicting.status(),
        400,
        "conflicting host: {conflicting:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_hosts_allow_list_answers_421_for_other_authorities() {
    let s = setup(&format!("hosts: [{API_HOST}]")).await;
    expect_echo(s.get(API_HOST, "/pub/x").await).await;
    expect_error(
        s.get("evil.example", "/pub/x").await,
        421,
        "misdirected_request",
    )
    .await;
    expect_error(
        s.get("other.example", "/bff/session").await,
        421,
        "misdirected_request",
    )
    .await;
    let health = s.get("evil.example", "/healthz").await;
    assert_eq!(health.status(), 200);
}
