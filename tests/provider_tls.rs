//! A provider behind a private CA: discovery over HTTPS works once `oidc.ca_file` names the
//! CA, and without it the log says why it fails (the certificate's issuer is unknown).

use std::time::{Duration, Instant};

use crate::common::agent::OidcBlock;
use crate::common::pki;
use crate::common::provider::{Provider, ProviderSettings};
use crate::common::{client, Gateway, GatewayConfig};

/// Waits (10 s) until `/readyz` answers `want`; the last answer's status.
async fn readiness(gw: &Gateway, want: u16) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = client()
            .get(gw.url("/readyz"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        if status == want || Instant::now() > deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_through_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki::generate(dir.path());
    let provider = Provider::start(ProviderSettings {
        extra: serde_json::json!({
            "tls": { "cert": pki.cert_file, "key": pki.key_file }
        }),
        ..Default::default()
    })
    .await;
    let issuer = provider.issuer();
    assert!(issuer.starts_with("https://127.0.0.1:"), "{issuer}");
    let block = OidcBlock::new(&issuer, "bffgate", "bffgate-test-secret");
    let base = GatewayConfig::new(vec![]).yaml();

    // Without the CA: not ready, and the log names the certificate problem.
    let untrusting = Gateway::start(&block.append_to(&base)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !untrusting.log().contains("UnknownIssuer") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(readiness(&untrusting, 503).await, 503);
    let log = untrusting.log();
    assert!(
        log.contains("the provider cannot be reached") && log.contains("UnknownIssuer"),
        "the log should say why: {log}"
    );

    // With `oidc.ca_file`: discovered, ready.
    let with_ca = block.append_to(&base).replace(
        "oidc:\n",
        &format!("oidc:\n  ca_file: \"{}\"\n", pki.ca_file.display()),
    );
    let trusting = Gateway::start(&with_ca).await;
    assert_eq!(readiness(&trusting, 200).await, 200, "{}", trusting.log());
    // The login starts: the authorization URL is the provider's, over HTTPS.
    let resp = client()
        .get(trusting.url("/bff/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    assert!(resp.headers()["location"]
        .to_str()
        .unwrap()
        .starts_with(&format!("{issuer}/")));
}
