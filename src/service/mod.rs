//! Background services that run beside the proxy: configuration hot reload, active
//! upstream health checks, state gauges for the metrics, starting the trace exporter, and
//! draining keep-alive connections during a graceful upgrade.

mod drain;
mod gauges;
mod health;
mod reload;
mod traces;

pub use drain::DrainWatcher;
pub use gauges::GaugePublisher;
pub use health::HealthChecker;
pub use reload::{ConfigReloader, ReloadOutcome, POLL_INTERVAL};
pub use traces::TraceExporter;
