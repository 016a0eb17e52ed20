//! Configuration hot reload: on `SIGHUP`, and when the config file's content changes.
//!
//! A reload is load → validate → compile → one atomic swap of the [`LiveConfig`]. An invalid
//! file changes nothing: the reason is logged and counted. Requests in flight keep the live
//! configuration they started with. Routes, upstreams, headers, timeouts, rate limits
//! (`routes[].rate_limit`, `agent.rate_limit`: what was spent carries over, capped at the
//! new burst and refilling at the new rate), route token policies, CSRF and CORS origins,
//! the cookie key ring (`cookie.keys`), the at-rest key ring (`session.at_rest_keys` or
//! `session.at_rest_key`), `oidc.client_secret`, session lifetimes, the refresh timings,
//! `server.hosts`, `server.path_params` and the admin API's token and networks reload,
//! `file:` secrets re-read (`${ENV}` is the process's environment, fixed at start);
//! listeners, the metrics and admin listeners, the other server settings (`server.dns`
//! among them), the store
//! (`session.store`), `session.key_census_interval` and the rest of the provider (issuer,
//! client id, redirect URI, client authentication, PAR, DPoP, the `private_key_jwt` signing
//! key) need a restart, and a change to them is reported as such. A reload never resolves
//! upstream names: a name it adds is looked up by the background resolver
//! (`service/dns.rs`), and one that does not resolve yet is accepted.

use crate::admin::{AccessHandle, AdminAccess};
use crate::config::{self, Config};
use crate::guard::Guard;
use crate::live::{LiveConfig, LiveHandle};
use crate::metrics;
use crate::oidc::OidcClient;
use crate::session::{now_secs, Lifetimes, SessionStore};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the file is looked at. A change is applied once two looks agree, so an editor's
/// half-written file is not loaded: a write is live within about two intervals.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is live.
    Applied,
    /// The file was refused; the running configuration stays.
    Refused,
}

/// Watches the config file and swaps the live configuration.
pub struct ConfigReloader {
    path: PathBuf,
    listen_override: Vec<SocketAddr>,
    live: LiveHandle,
    store: SessionStore,
    guard: Option<Arc<Guard>>,
    admin: Option<AccessHandle>,
    oidc: Option<Arc<OidcClient>>,
    running: Mutex<Config>,
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

impl ConfigReloader {
    /// A reloader for the config `running` was loaded from; `listen_override` (from the
    /// command line or environment) is applied to every reload, as at start.
    pub fn new(
        running: Config,
        listen_override: Vec<SocketAddr>,
        live: LiveHandle,
        store: SessionStore,
    ) -> Self {
        ConfigReloader {
            path: running.source.clone(),
            listen_override,
            live,
            store,
            guard: None,
            admin: None,
            oidc: None,
            running: Mutex::new(running),
        }
    }

    /// Also applies the refresh timings (`session.refresh_before_expiry`,
    /// `session.refresh_lock_wait`) to `guard`'s refresher on every reload.
    pub fn with_guard(mut self, guard: Arc<Guard>) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Also applies `admin.token` and `admin.allow` to the admin listener (when it runs)
    /// on every reload.
    pub fn with_admin(mut self, access: Option<AccessHandle>) -> Self {
        self.admin = access;
        self
    }

    /// Also applies `oidc.client_secret` to `client` on every reload.
    pub fn with_oidc(mut self, client: Arc<OidcClient>) -> Self {
        self.oidc = Some(client);
        self
    }

    /// Loads the file and, if it is valid, makes it live.
    pub fn reload(&self, why: &str) -> ReloadOutcome {
        let mut new = match config::load(&self.path) {
            Ok(c) => c,
            Err(e) => {
                metrics::CONFIG_RELOADS.with_label_values(&["error"]).inc();
                // One line however many problems: `FILE: KEY: REASON; FILE: KEY: REASON`.
                let problems = e.to_string().replace('\n', "; ");
                tracing::error!(
                    trigger = why,
                    "configuration reload refused; the running configuration stays: {problems}"
                );
                return ReloadOutcome::Refused;
            }
        };
        if !self.listen_override.is_empty() {
            new.listen = self.listen_override.clone();
        }
        if let Ok(old) = self.running.lock() {
            for what in restart_needed(&old, &new) {
                tracing::warn!(trigger = why, "{what} changed: that takes a restart (or a graceful upgrade); the rest is reloaded");
            }
        }
        for route in new.routes.iter().filter(|r| !r.tls_verify) {
            tracing::warn!(route = %route.name, "tls_verify is false: upstream certificates are not checked");
        }
        self.live.store(Arc::new(LiveConfig::new(&new)));
        self.store.set_at_rest_keys(&new.session.at_rest_keys);
        self.store.set_lifetimes(Lifetimes {
            idle: new.session.idle_timeout,
            absolute: new.session.absolute_timeout,
        });
        if let (Some(client), Some(oidc)) = (&self.oidc, &new.oidc) {
            if client.set_client_secret(&oidc.client_secret) {
                tracing::info!(
                    trigger = why,
                    "oidc.client_secret changed: in use from now on"
                );
            }
        }
        if let Some(guard) = &self.guard {
            guard.set_refresh_timings(
                new.session.refresh_before_expiry,
                new.session.refresh_lock_wait,
            );
        }
        if let (Some(access), Some(admin)) = (&self.admin, &new.admin) {
            access.store(Arc::new(AdminAccess::new(admin)));
        }
        metrics::CONFIG_RELOADS.with_label_values(&["ok"]).inc();
        metrics::CONFIG_LAST_RELOAD.set(now_secs() as f64);
        tracing::info!(
            trigger = why,
            routes = new.routes.len(),
            "configuration reloaded"
        );
        if let Ok(mut running) = self.running.lock() {
            *running = new;
        }
        ReloadOutcome::Applied
    }
}

/// The parts of a configuration that only a restart applies, where they differ.
fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if old.listen != new.listen || old.tls != new.tls {
        out.push("listen");
    }
    if old.metrics != new.metrics {
        out.push("metrics.addr");
    }
    // The token and networks reload; the listener (or whether there is one) does not.
    if old.admin.as_ref().map(|a| a.addr) != new.admin.as_ref().map(|a| a.addr) {
        out.push("admin.addr");
    }
    // `server.hosts` and `server.path_params` live in the LiveConfig and reload.
    let process = |c: &Config| {
        let mut s = c.server.clone();
        s.hosts.clear();
        s.path_params = crate::path::PathParams::default();
        format!("{s:?}")
    };
    if process(old) != process(new) {
        out.push("server");
    }
    if format!("{:?}", old.session.store) != format!("{:?}", new.session.store) {
        out.push("session.store");
    }
    if old.session.key_census_interval != new.session.key_census_interval {
        out.push("session.key_census_interval");
    }
    let provider = |c: &Config| {
        c.oidc.as_ref().map(|o| {
            // Client authentication and PAR live in the provider client built at start.
            let key = o.signing_key.as_ref().map(|k| k.jwks());
            format!(
                "{}|{}|{:?}|{:?}|{:?}|{:?}",
                o.issuer, o.client_id, o.redirect_uri, o.client_auth, o.pushed_authorization, key
            )
        })
    };
    if provider(old) != provider(new) {
        out.push("oidc");
    }
    out
}

#[async_trait]
impl BackgroundService for ConfigReloader {
    /// Reloads on `SIGHUP` and on file changes until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        // The handler is installed here, after any daemon fork.
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP reload unavailable");
                None
            }
        };
        let read = || std::fs::read(&self.path).ok().map(|b| content_hash(&b));
        let mut applied = read();
        let mut seen = applied;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        return;
                    }
                }
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    self.reload("SIGHUP");
                    applied = read();
                    seen = applied;
                }
                _ = tick.tick() => {
                    let now = read();
                    // Apply a change once two consecutive looks agree on it.
                    if now.is_some() && now == seen && now != applied {
                        self.reload("file change");
                        applied = now;
                    }
                    seen = now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::restart_needed;
    use crate::config::{parse, Config};
    use std::path::Path;

    const KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn config(oidc_extra: &str) -> Config {
        let text = format!(
            "listen: [{{addr: 127.0.0.1:8080}}]\ncookie: {{keys: [{{id: k1, secret: \"{KEY}\"}}]}}\nsession: {{at_rest_key: \"{KEY}\"}}\n\
             oidc:\n  issuer: https://idp.test\n  client_id: bff\n  client_secret: s\n  \
             redirect_uri: https://api.test/bff/callback\n  post_login_redirect: https://www.test/\n{oidc_extra}"
        );
        parse(Path::new("t.yaml"), &text, &|_| None).expect("valid")
    }

    /// The provider client is built once: changing how it authenticates or whether it
    /// pushes authorization requests is reported as needing a restart, not silently ignored.
    #[test]
    fn client_authentication_and_par_changes_need_a_restart() {
        let base = config("");
        assert!(restart_needed(&base, &config("")).is_empty());
        for extra in [
            "  client_auth: client_secret_post\n",
            "  pushed_authorization: \"off\"\n",
        ] {
            assert_eq!(restart_needed(&base, &config(extra)), ["oidc"], "{extra}");
        }
    }

    /// Secrets and key rings reload: changing them is not reported as needing a restart.
    #[test]
    fn keys_and_the_client_secret_reload() {
        let base = config("");
        let mut changed = config("");
        changed.session.at_rest_keys[0].secret = crate::config::SecretKey::from_bytes([3; 32]);
        changed.cookie.keys[0].secret = crate::config::SecretKey::from_bytes([4; 32]);
        if let Some(o) = changed.oidc.as_mut() {
            o.client_secret = crate::config::SecretString("other".into());
        }
        assert!(restart_needed(&base, &changed).is_empty());
    }
}
