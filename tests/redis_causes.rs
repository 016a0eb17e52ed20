//! A Redis that cannot be used is logged with why: the cause class (refused, TLS with the
//! certificate error, authentication) in the gateway's own log, without the password.

use std::time::Duration;

use crate::common::redis::redis_cli;
use crate::common::redis_tls::TlsRedis;
use crate::common::{client, closed_port, eventually, route, Gateway, GatewayConfig, RedisProcess};

/// Starts a gateway on `cfg` (a YAML config) and waits until its log says why Redis
/// cannot be used (a `/readyz` probe makes it try). Returns that log.
async fn failure_log(cfg: &str) -> String {
    let gw = Gateway::start(cfg).await;
    let http = client();
    let logged = eventually(Duration::from_secs(10), || {
        let probe = http.get(gw.url("/readyz")).send();
        let gw = &gw;
        async move {
            let status = probe.await.map(|r| r.status().as_u16()).unwrap_or(0);
            status == 503 && gw.log().contains("session store: Redis connection failed")
        }
    })
    .await;
    let log = gw.log();
    assert!(logged, "no connection failure logged:\n{log}");
    log
}

fn config(url: &str) -> GatewayConfig {
    GatewayConfig::new(vec![route("r", "/r", "http://127.0.0.1:9", "none", "")]).redis(url.into())
}

/// The log line of the failure.
fn failure_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("session store: Redis connection failed"))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_port_is_logged_as_refused() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let log = failure_log(&config(&url).yaml()).await;
    let line = failure_line(&log);
    assert!(line.contains("refused: "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_logged_as_tls_with_the_certificate_error() {
    let redis = TlsRedis::start();
    let other = tempfile::tempdir().unwrap();
    let other_ca = crate::common::pki::generate(other.path()).ca_file;
    let yaml = config(&redis.url()).yaml();
    let url_line = format!("      url: {}\n", redis.url());
    assert!(yaml.contains(&url_line), "{yaml}");
    let yaml = yaml.replacen(
        &url_line,
        &format!("{url_line}      ca_file: \"{}\"\n", other_ca.display()),
        1,
    );
    let log = failure_log(&yaml).await;
    let line = failure_line(&log);
    // The other CA has the same name as the server's issuer, so rustls finds an issuer
    // whose signature does not match (`BadSignature`); the certificate error is named
    // whichever it is.
    assert!(line.contains("TLS: invalid peer certificate: "), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_logged_as_authentication_without_the_password() {
    let redis = RedisProcess::start();
    let set = redis_cli(
        redis.port(),
        &["CONFIG", "SET", "requirepass", "right-pass"],
    );
    assert_eq!(set.as_deref().map(str::trim), Some("OK"));
    let url = format!("redis://:wrong-pass-77@127.0.0.1:{}", redis.port());
    let log = failure_log(&config(&url).yaml()).await;
    let line = failure_line(&log);
    assert!(line.contains("authentication: "), "{line}");
    assert!(
        !log.contains("wrong-pass-77"),
        "the password is in the log:\n{log}"
    );
}
