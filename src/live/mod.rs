//! The live configuration: what a request needs from the config, compiled once per load
//! and swapped whole on reload.
//!
//! A request takes one [`LiveConfig`] when it starts (`LiveHandle::load_full`) and keeps it
//! to its end, so a reload mid-request changes nothing for it. Beside it, the registry of
//! this process's long-lived connections ([`LiveConnections`]), which both the proxy (that
//! opens them) and the revocation service (that ends them) reach.

pub mod addrs;
mod connections;
#[cfg(test)]
mod path_props;
mod routes;
#[cfg(test)]
pub(crate) mod testing;

pub use connections::{CloseReason, LiveConnections, Registration};
pub use routes::{Route, RouteMatch, RouteTable};

use crate::config::{AgentConfig, Config, Forwarding, SessionConfig};
use crate::cookie::SessionCookie;
use crate::path::PathParams;
use arc_swap::ArcSwap;
use std::sync::Arc;

/// The shared, atomically swappable live configuration.
pub type LiveHandle = Arc<ArcSwap<LiveConfig>>;

/// Everything a request needs from the configuration.
#[derive(Debug)]
pub struct LiveConfig {
    /// API routes, with their upstream rotation and health.
    pub routes: RouteTable,
    /// `server.hosts`: the hosts answered for (canonical form); empty: any.
    pub hosts: Vec<String>,
    /// `server.path_params`.
    pub path_params: PathParams,
    /// The session cookie policy and cipher.
    pub cookie: SessionCookie,
    /// Agent base path, trusted origins, CSRF header.
    pub agent: AgentConfig,
    /// Session lifetimes.
    pub session: SessionConfig,
    /// Whether to log each request.
    pub access_log: bool,
    /// How the access log names a request's user.
    pub access_log_user: crate::config::LogUser,
    /// Where an error page sends a person back to: the post-login page when a provider is
    /// configured, else the first trusted origin.
    pub home: Option<String>,
    /// Which peers may name the client (trusted proxies and their header).
    pub forwarding: Forwarding,
}

impl LiveConfig {
    /// Compiles the per-request view of a validated config.
    pub fn new(config: &Config) -> Self {
        crate::metrics::init_rate_limits("agent", &config.agent.rate_limit);
        LiveConfig {
            routes: RouteTable::new(&config.routes),
            hosts: config.server.hosts.clone(),
            path_params: config.server.path_params,
            cookie: SessionCookie::new(&config.cookie),
            agent: config.agent.clone(),
            session: config.session.clone(),
            access_log: config.access_log,
            access_log_user: config.access_log_user,
            home: config
                .oidc
                .as_ref()
                .map(|o| o.post_login_redirect.to_string())
                .or_else(|| config.agent.allowed_origins.first().cloned()),
            forwarding: config.server.forwarding.clone(),
        }
    }

    /// A handle serving `config` until the next swap.
    pub fn handle(config: &Config) -> LiveHandle {
        Arc::new(ArcSwap::from_pointee(Self::new(config)))
    }
}
