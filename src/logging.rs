//! Process logging through `tracing` (Pingora's own `log` records are captured too).

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `filter` is a level or `tracing` directives; an invalid
/// one falls back to `info` with a warning.
pub fn init(filter: &str, json: bool) {
    let (env_filter, bad) = match EnvFilter::try_new(filter) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if bad {
        tracing::warn!("log filter `{filter}` is not valid; using `info`");
    }
}
