//! Process logging through `tracing` (Pingora's own `log` records are captured too), and
//! the OpenTelemetry layer when the config exports traces.
//!
//! Every entry is one line: text, or with `--log-json` one flat JSON object per line
//! (`timestamp`, `level`, `target`, `message` and the event's own fields side by side;
//! records from the `log` crate lose their `log.file`/`log.line` build-machine paths).
//! Pingora's own start-up and shutdown chatter is logged from `warn` up unless the filter
//! names a `pingora` target itself.

use crate::config::OtelConfig;
use crate::telemetry;
use std::fmt;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Pingora's crates, quieted to `warn` unless the filter says otherwise.
const PINGORA_TARGETS: [&str; 4] = [
    "pingora_core",
    "pingora_proxy",
    "pingora_load_balancing",
    "pingora",
];

/// The filter for `directives`, with Pingora's crates at `warn` unless they are named.
fn env_filter(directives: &str) -> Result<EnvFilter, tracing_subscriber::filter::ParseError> {
    let mut text = directives.to_string();
    if !directives.contains("pingora") {
        for target in PINGORA_TARGETS {
            text.push_str(&format!(",{target}=warn"));
        }
    }
    EnvFilter::try_new(text)
}

/// Keeps request spans out of the printed log. Its default is the most verbose level
/// `env_filter` lets through, not `TRACE`: the subscriber's level hint then stays that
/// level, and so does the `log` crate's maximum, so Pingora's per-request `debug!`
/// records are dropped by one comparison instead of each being forwarded to `tracing` and
/// matched against the filter (about 3% of a proxied request's CPU when measured).
fn quiet_spans(env_filter: &EnvFilter) -> Targets {
    Targets::new()
        .with_target(telemetry::TARGET, LevelFilter::OFF)
        .with_default(env_filter.max_level_hint().unwrap_or(LevelFilter::TRACE))
}

/// Installs the global subscriber. `filter` is a level or `tracing` directives; an invalid
/// one falls back to `info` with a warning. With `otel`, request spans (target
/// [`telemetry::TARGET`]) go to the trace exporter whatever `filter` says (exported once
/// [`telemetry::start`] runs); they are never printed in the log.
pub fn init(filter: &str, json: bool, otel: Option<&OtelConfig>) {
    let (env_filter, bad) = match env_filter(filter) {
        Ok(f) => (f, false),
        Err(_) => (EnvFilter::new("info"), true),
    };
    let quiet_spans = quiet_spans(&env_filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.event_format(FlatJson).boxed()
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

/// One flat JSON object per event.
struct FlatJson;

/// Collects an event's fields into a JSON map, leaving out the `log.*` metadata fields.
struct FieldMap(serde_json::Map<String, serde_json::Value>);

impl FieldMap {
    fn put(&mut self, field: &Field, value: serde_json::Value) {
        if !field.name().starts_with("log.") {
            self.0.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, format!("{value:?}").into());
    }
}

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        use tracing_log::NormalizeEvent;
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut fields = FieldMap(serde_json::Map::new());
        fields.0.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        fields
            .0
            .insert("level".into(), meta.level().as_str().into());
        fields.0.insert("target".into(), meta.target().into());
        event.record(&mut fields);
        writeln!(writer, "{}", serde_json::Value::Object(fields.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::Filter;

    fn hint(directives: &str) -> Option<LevelFilter> {
        let env = env_filter(directives).expect("valid directives");
        <Targets as Filter<tracing_subscriber::Registry>>::max_level_hint(&quiet_spans(&env))
    }

    #[test]
    fn the_level_hint_is_the_filters_not_trace() {
        assert_eq!(hint("warn"), Some(LevelFilter::WARN));
        assert_eq!(hint("info"), Some(LevelFilter::INFO));
        assert_eq!(hint("warn,bffgate::access=info"), Some(LevelFilter::INFO));
        assert_eq!(hint("debug"), Some(LevelFilter::DEBUG));
    }
}
