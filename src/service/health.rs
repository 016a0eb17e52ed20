//! Active upstream health checks: `pingora-load-balancing`'s TCP health check against each
//! upstream of every route that asks for it (at its host's first address now), at the
//! route's interval. A failed check takes the upstream out of rotation until
//! a check succeeds; passive ejection (a failed connect while proxying) is in the proxy.

use crate::live::LiveHandle;
use async_trait::async_trait;
use pingora::lb::health_check::{HealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the checker wakes to see which routes are due.
const TICK: Duration = Duration::from_millis(250);

/// Checks the upstreams of the current live configuration.
pub struct HealthChecker {
    live: LiveHandle,
}

impl HealthChecker {
    /// A checker over the (reloadable) live configuration.
    pub fn new(live: LiveHandle) -> Self {
        HealthChecker { live }
    }

    /// Checks the routes whose interval has passed. `last` holds when each route was last
    /// checked; `seen` what the checks last found for each upstream (healthy until a check
    /// says otherwise), so a change is logged once, whatever passive ejection did meanwhile.
    async fn check_due(
        &self,
        last: &mut HashMap<String, Instant>,
        seen: &mut HashMap<(String, usize), bool>,
    ) {
        let snap = self.live.load_full();
        for route in snap.routes.routes() {
            let Some(interval) = route.config.health_check else {
                continue;
            };
            let due = last
                .get(&route.config.name)
                .is_none_or(|t| t.elapsed() >= interval);
            if !due {
                continue;
            }
            last.insert(route.config.name.clone(), Instant::now());
            for (i, up) in route.config.upstreams.iter().enumerate() {
                let mut check = TcpHealthCheck::default();
                check.peer_template.options.connection_timeout = Some(route.config.connect_timeout);
                // A name not resolved yet is out of rotation already; nothing to check.
                let Some(ip) = route.addresses(i).first().copied() else {
                    continue;
                };
                let addr = std::net::SocketAddr::new(ip, up.port);
                let ok = match Backend::new(&addr.to_string()) {
                    Ok(backend) => check.check(&backend).await.is_ok(),
                    Err(_) => false,
                };
                let was_up = seen
                    .insert((route.config.name.clone(), i), ok)
                    .unwrap_or(true);
                if ok {
                    route.mark_up(i);
                } else {
                    // Out until a check says otherwise: held past the next check, however
                    // short the interval is.
                    let hold = interval
                        .max(TICK)
                        .saturating_mul(2)
                        .as_millis()
                        .try_into()
                        .unwrap_or(u64::MAX);
                    route.mark_down(i, hold);
                }
                if was_up != ok {
                    tracing::warn!(route = %route.config.name, upstream = %up.authority(), address = %addr, healthy = ok, "upstream health changed");
                }
            }
        }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    /// Checks the due routes every [`TICK`] until shutdown.
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut last = HashMap::new();
        let mut seen = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        while super::next_tick(&mut tick, &mut shutdown).await {
            self.check_due(&mut last, &mut seen).await;
        }
    }
}
