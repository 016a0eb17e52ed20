//! Background services that run beside the proxy: configuration hot reload, resolving
//! upstream host names, active upstream health checks, state gauges for the metrics, the
//! at-rest key census, starting the trace exporter, draining keep-alive connections during a
//! graceful upgrade, and ending long-lived connections whose session was revoked or expired.

mod census;
mod dns;
mod drain;
mod gauges;
mod health;
mod reload;
mod revocation;
mod traces;

pub use census::KeyCensusService;
pub use dns::{check_names, DnsRefresher};
pub use drain::DrainWatcher;
pub use gauges::GaugePublisher;
pub use health::HealthChecker;
pub use reload::{ConfigReloader, ReloadOutcome, POLL_INTERVAL};
pub use revocation::RevocationService;
pub use traces::TraceExporter;

/// Waits for the next tick of a periodic background service: `true` when it is time to
/// work, `false` once `shutdown` says to stop (the loop every such service shares).
pub(crate) async fn next_tick(
    tick: &mut tokio::time::Interval,
    shutdown: &mut pingora::server::ShutdownWatch,
) -> bool {
    loop {
        tokio::select! {
            _ = shutdown.changed() => {
                if *shutdown.borrow() {
                    return false;
                }
            }
            _ = tick.tick() => return true,
        }
    }
}
