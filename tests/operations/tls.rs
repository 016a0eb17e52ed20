//! TLS termination with HTTP/2 (by ALPN) and HTTP/1.1, and HTTPS upstreams: trusted through
//! `server.upstream_ca_file`, refused (502) without it, unchecked with `tls_verify: false`.

use std::path::Path;
use std::time::Duration;

use crate::common::scrape::{metric, scrape_url};
use crate::common::{
    client, eventually, expect_echo, expect_error, free_port, pki, route, EchoServer, Gateway,
    GatewayConfig,
};

/// `yaml` with `server.upstream_ca_file`.
fn with_upstream_ca(yaml: &str, ca: &Path) -> String {
    yaml.replacen(
        "server:\n",
        &format!("server:\n  upstream_ca_file: \"{}\"\n", ca.display()),
        1,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_http2() {
    let dir = tempfile::tempdir().expect("pki dir");
    let pki = pki::generate(dir.path());
    let echo = EchoServer::start().await;
    let tls_port = free_port();
    let front = GatewayConfig::new(vec![
        route("tls", "/tls", &echo.url(), "none", ""),
        route("insecure", "/insecure", &echo.url(), "none", ""),
    ])
    .yaml();
    let t = Gateway::start(&pki::with_tls_listener(&front, tls_port, &pki)).await;
    let https = format!("https://localhost:{tls_port}");

    // HTTP/2 by ALPN (no prior knowledge), and HTTP/1.1 for a client that offers only that.
    let ca = reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).expect("CA cert");
    let h2 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca.clone())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("tls client");
    for i in 0..3 {
        let resp = h2
            .get(format!("{https}/tls/h2/{i}?q=1"))
            .send()
            .await
            .expect("h2 request");
        assert_eq!(
            resp.version(),
            reqwest::Version::HTTP_2,
            "ALPN did not pick h2"
        );
        let seen = expect_echo(resp).await;
        assert_eq!(seen.path, format!("/tls/h2/{i}?q=1"));
        assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    }
    let post = h2
        .post(format!("{https}/tls/h2/post"))
        .body("hello over h2")
        .send()
        .await
        .expect("h2 post");
    assert_eq!(post.version(), reqwest::Version::HTTP_2);
    let seen = expect_echo(post).await;
    assert_eq!(seen.body, "hello over h2");
    let h1 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .http1_only()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("tls h1 client");
    let resp = h1
        .get(format!("{https}/tls/h1"))
        .send()
        .await
        .expect("h1 request");
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(expect_echo(resp).await.path, "/tls/h1");

    // HTTPS upstream (the TLS listener above), trusted through server.upstream_ca_file.
    let via = |extra: &str| {
        vec![
            route("tls", "/tls", &https, "none", ""),
            route(
                "insecure",
                "/insecure",
                &https,
                "none",
                &format!("tls_verify: false{extra}"),
            ),
        ]
    };
    let trusting = Gateway::start(&with_upstream_ca(
        &GatewayConfig::new(via("")).yaml(),
        &pki.ca_file,
    ))
    .await;
    let resp = client()
        .get(trusting.url("/tls/through"))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.path, "/tls/through");
    assert_eq!(
        seen.header("x-forwarded-proto").as_deref(),
        Some("https"),
        "the hop to the upstream was not TLS"
    );

    // Without the CA: verification fails (502); with tls_verify: false it is not checked.
    let untrusting = Gateway::start(&GatewayConfig::new(via("")).yaml()).await;
    let resp = client()
        .get(untrusting.url("/tls/through"))
        .send()
        .await
        .unwrap();
    expect_error(resp, 502, "upstream_unavailable").await;
    // ...because the certificate did not verify, not because nothing listened.
    assert!(
        eventually(Duration::from_secs(2), || async {
            untrusting
                .log()
                .lines()
                .any(|l| l.contains("TLSHandshakeFailure") && l.contains("UnknownIssuer"))
        })
        .await,
        "no certificate verification failure logged:\n{}",
        untrusting.log()
    );
    let resp = client()
        .get(untrusting.url("/insecure/through"))
        .send()
        .await
        .unwrap();
    let seen = expect_echo(resp).await;
    assert_eq!(seen.path, "/insecure/through");
    assert_eq!(seen.header("x-forwarded-proto").as_deref(), Some("https"));
    let page = scrape_url(&untrusting.metrics_url()).await;
    assert_eq!(
        metric(
            &page,
            "bff_upstream_errors_total{kind=\"unavailable\",route=\"tls\"}"
        ),
        Some(1.0),
        "metrics:\n{page}"
    );
    drop(t);
}
