//! Reaching a Sentinel-managed master: the sentinels as their URLs say (TLS with
//! `rediss://`, their own `user:password@`), the master and replicas with the configured
//! ACL user, password and TLS.

use super::redis::bad_url;
use super::StoreError;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{IntoConnectionInfo, TlsCertificates, TlsMode};

/// The sentinel client: the sentinels as their URLs say (TLS with `rediss://`, their own
/// `user:password@`), the master with `username`/`password` and TLS when `tls`, trusting
/// `certs` (else the system's roots) on every TLS connection.
pub(super) fn sentinel_client(
    nodes: &[String],
    master_name: &str,
    username: Option<&str>,
    password: Option<&str>,
    tls: bool,
    certs: Option<TlsCertificates>,
) -> Result<SentinelClient, StoreError> {
    let mut addrs = Vec::with_capacity(nodes.len());
    let (mut sentinel_user, mut sentinel_password) = (None, None);
    for node in nodes {
        let info = node
            .as_str()
            .into_connection_info()
            .map_err(|e| bad_url(&e))?;
        let settings = info.redis_settings();
        sentinel_user = sentinel_user.or(settings.username().map(str::to_owned));
        sentinel_password = sentinel_password.or(settings.password().map(str::to_owned));
        addrs.push(info.addr().clone());
    }
    let sentinels_tls = nodes.iter().any(|n| n.starts_with("rediss://"));
    let mut builder = SentinelClientBuilder::new(addrs, master_name, SentinelServerType::Master)
        .map_err(|e| bad_url(&e))?;
    if let Some(u) = &sentinel_user {
        builder = builder.set_client_to_sentinel_username(u);
    }
    if let Some(p) = &sentinel_password {
        builder = builder.set_client_to_sentinel_password(p);
    }
    if let Some(u) = username {
        builder = builder.set_client_to_redis_username(u);
    }
    if let Some(p) = password {
        builder = builder.set_client_to_redis_password(p);
    }
    if tls {
        builder = builder.set_client_to_redis_tls_mode(TlsMode::Secure);
        if let Some(c) = &certs {
            builder = builder.set_client_to_redis_certificates(c.clone());
        }
    }
    if sentinels_tls {
        if let Some(c) = certs {
            builder = builder.set_client_to_sentinel_certificates(c);
        }
    }
    builder.build().map_err(|e| bad_url(&e))
}
