//! Assembling the Pingora server from a validated config. `main` and the tests both build
//! the process through [`build_server`].

use crate::agent::Agent;
use crate::config::{Config, StoreConfig};
use crate::guard::{Guard, Refresher};
use crate::http::AgentEndpoints;
use crate::live::{LiveConfig, LiveConnections};
use crate::oidc::{DiscoveryService, OidcClient};
use crate::proxy::EdgeProxy;
use crate::service::{
    ConfigReloader, DnsRefresher, DrainWatcher, GaugePublisher, HealthChecker, KeyCensusService,
    RevocationService, TraceExporter,
};
use crate::session::SessionStore;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::{Opt, Server};
use pingora::proxy::http_proxy_service_with_name;
use pingora::server::configuration::ServerConf;
use pingora::services::background::background_service;
use std::sync::Arc;

/// Process-level switches from the command line.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Take the listening sockets over from a running instance (graceful upgrade).
    pub upgrade: bool,
    /// Detach into the background.
    pub daemon: bool,
    /// Listen addresses from the command line, re-applied on every reload.
    pub listen_override: Vec<std::net::SocketAddr>,
}

/// Why the server could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The session store could not be set up.
    #[error("session store: {0}")]
    Store(#[from] crate::session::StoreError),
    /// Pingora refused to start.
    #[error("server: {0}")]
    Server(String),
}

/// Builds the server: the proxy on every listener, the metrics and admin listeners, and the
/// store.
/// Call `run_forever` on the result.
///
/// # Errors
/// [`AppError`] when the store or Pingora cannot be set up.
pub fn build_server(config: &Config, opts: &RunOptions) -> Result<Server, AppError> {
    crate::metrics::init();
    crate::metrics::CONFIG_LAST_RELOAD.set(crate::session::now_secs() as f64);
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        pid_file: config.server.pid_file.clone(),
        upgrade_sock: config.server.upgrade_sock.clone(),
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        daemon: opts.daemon,
        ca_file: config.server.upstream_ca_file.clone(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade: opts.upgrade,
        daemon: opts.daemon,
        nocapture: false,
        test: false,
        conf: None,
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    server.bootstrap();

    let store = SessionStore::from_config(&config.session)?;
    let admin_access = config.admin.as_ref().map(|admin| {
        let access = crate::admin::AdminAccess::handle(admin);
        server.add_service(crate::admin::AdminApi::service(
            admin.addr,
            store.clone(),
            Arc::clone(&access),
        ));
        access
    });
    let (guard, agent, oidc_client) = match &config.oidc {
        Some(oidc) => {
            let client = Arc::new(
                OidcClient::new(oidc.clone()).map_err(|e| AppError::Server(e.to_string()))?,
            );
            server.add_service(background_service(
                "oidc discovery",
                DiscoveryService(Arc::clone(&client)),
            ));
            let refresher = Refresher::new(
                Arc::clone(&client) as _,
                store.clone(),
                config.session.refresh_before_expiry,
                config.session.refresh_lock_wait,
            );
            let guard = Arc::new(Guard::new(store.clone(), Some(refresher)));
            let agent: Arc<dyn AgentEndpoints> =
                Arc::new(Agent::new(Arc::clone(&client), Arc::clone(&guard)));
            (guard, Some(agent), Some(client))
        }
        None => (Arc::new(Guard::new(store.clone(), None)), None, None),
    };
    let live = LiveConfig::handle(config);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = DrainWatcher::new(server.watch_execution_phase(), Arc::clone(&draining));
    server.add_service(background_service("drain watcher", watcher));
    if let Some(otel) = &config.otel {
        server.add_service(background_service(
            "trace exporter",
            TraceExporter(otel.clone()),
        ));
    }
    server.add_service(background_service(
        "upstream dns",
        DnsRefresher::new(Arc::clone(&live), config.server.dns.clone()),
    ));
    server.add_service(background_service(
        "gauges",
        GaugePublisher::new(Arc::clone(&live), store.clone()),
    ));
    let conns = Arc::new(LiveConnections::default());
    server.add_service(background_service(
        "revocations",
        RevocationService::new(store.clone(), Arc::clone(&conns), Arc::clone(&live)),
    ));
    server.add_service(background_service(
        "key census",
        KeyCensusService::new(store.clone(), config.session.key_census_interval),
    ));
    let mut reloader = ConfigReloader::new(
        config.clone(),
        opts.listen_override.clone(),
        Arc::clone(&live),
        store,
    )
    .with_guard(Arc::clone(&guard))
    .with_admin(admin_access);
    if let Some(client) = oidc_client {
        reloader = reloader.with_oidc(client);
    }
    server.add_service(background_service("config reloader", reloader));
    let mut proxy = http_proxy_service_with_name(
        &server.configuration,
        EdgeProxy::new(Arc::clone(&live), guard, agent, Arc::clone(&draining))
            .with_live_connections(conns),
        "bffgate proxy",
    );
    for addr in &config.listen {
        match config.tls.iter().find(|(a, _)| a == addr) {
            Some((_, tls)) => {
                let mut settings = TlsSettings::intermediate(&tls.cert, &tls.key)
                    .map_err(|e| AppError::Server(format!("TLS listener {addr}: {e}")))?;
                // HTTP/2 to browsers, offered by ALPN next to HTTP/1.1.
                settings.enable_h2();
                proxy.add_tls_with_settings(&addr.to_string(), None, settings);
            }
            None => proxy.add_tcp(&addr.to_string()),
        }
    }
    for route in config.routes.iter().filter(|r| !r.tls_verify) {
        tracing::warn!(route = %route.name, "tls_verify is false: upstream certificates are not checked; use this only for testing");
    }
    server.add_service(background_service(
        "health checks",
        HealthChecker::new(live),
    ));
    server.add_service(proxy);

    if let Some(addr) = config.metrics {
        let mut metrics = pingora_prometheus::prometheus_http_service();
        metrics.add_tcp(&addr.to_string());
        server.add_service(metrics);
    }
    Ok(server)
}

/// One line describing a config, for `--check` and the start-up log.
pub fn describe(config: &Config) -> String {
    let store = match &config.session.store {
        StoreConfig::Memory { max_sessions } => format!("memory (max {max_sessions} sessions)"),
        StoreConfig::Redis { .. } => "redis".to_string(),
    };
    let listen: Vec<String> = config.listen.iter().map(ToString::to_string).collect();
    format!(
        "{} route(s), listening on {}, sessions in {store}",
        config.routes.len(),
        listen.join(", ")
    )
}
