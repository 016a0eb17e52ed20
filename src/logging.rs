//! Process logging through `tracing` (Pingora's own `log` records are captured too), and
//! the OpenTelemetry layer when the config exports traces.

use crate::config::OtelConfig;
use crate::telemetry;
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the global subscriber. `filter` is a level or `tracing` directives; an invalid
/// one falls back to `info` with a warning. With `otel`, request spans (target
/// [`telemetry::TARGET`]) go to the trace exporter whatever `filter` says (exported once
/// [`telemetry::start`] runs); they are never printed in the log.
pub fn init(filter: &str, json: bool, otel: Option<&OtelConfig>) {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    let quiet_spans = Targets::new()
        .with_target(telemetry::TARGET, LevelFilter::OFF)
        .with_default(LevelFilter::TRACE);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json().boxed()
    } else {
        fmt.boxed()
    };
    let only_spans = Targets::new().with_target(telemetry::TARGET, LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(otel.map(telemetry::layer).with_filter(only_spans))
        .with(fmt.with_filter(env_filter).with_filter(quiet_spans))
        .try_init();
    if bad {
        tracing::warn!("log filter `{filter}` is not valid; using `info`");
    }
}
