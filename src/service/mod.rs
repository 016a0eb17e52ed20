//! Background services that run beside the proxy: configuration hot reload, active
//! upstream health checks, and draining keep-alive connections during a graceful upgrade.

mod drain;
mod health;
mod reload;

pub use drain::DrainWatcher;
pub use health::HealthChecker;
pub use reload::{ConfigReloader, ReloadOutcome, POLL_INTERVAL};
