//! OpenTelemetry traces: the OTLP/HTTP exporter behind a `tracing` layer, W3C trace-context
//! propagation, and the spans of one request.
//!
//! Off unless the config has an `otel` section. When off, no span is created on the hot
//! path ([`request_span`] and [`child`] return `Span::none()`, and everything below them
//! stays a no-op). When on, each request is a `request` span (continuing the client's
//! `traceparent` only with `otel.accept_traceparent`), with child spans for the session
//! lookup, each store call, a token refresh and the upstream call; the upstream call's
//! context goes upstream as `traceparent`.

use crate::config::OtelConfig;
use once_cell::sync::OnceCell;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use pingora::http::RequestHeader;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Registry;

/// The target of bffgate's trace spans (filtered apart from the log's own filter).
pub const TARGET: &str = "bffgate::otel";

/// How often finished spans are sent.
const EXPORT_DELAY: Duration = Duration::from_millis(500);

static ENABLED: AtomicBool = AtomicBool::new(false);
static ACCEPT_TRACEPARENT: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Records `value` as the field `field` of the current span, if tracing is on and that
/// span declared the field.
pub fn record_current(field: &'static str, value: &'static str) {
    if enabled() {
        Span::current().record(field, value);
    }
}

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("OpenTelemetry exporter: {0}")]
pub struct TelemetryError(String);

/// bffgate's OpenTelemetry layer (first on the subscriber's stack).
pub type OtelLayer =
    tracing_opentelemetry::OpenTelemetryLayer<Registry, opentelemetry_sdk::trace::Tracer>;

/// The exporter's batch processor, made by [`start`] once the process runs.
static BATCH: OnceCell<BatchSpanProcessor> = OnceCell::new();
/// The resource (`service.name`) the provider hands its processors.
static RESOURCE: OnceCell<Resource> = OnceCell::new();
/// The tracer provider: it lives as long as the process.
static PROVIDER: OnceCell<SdkTracerProvider> = OnceCell::new();

/// The provider's span processor: hands finished spans to the batch processor that
/// [`start`] makes after any daemon fork (a thread started before a fork does not survive
/// it); until then, and if it never starts, spans are dropped.
#[derive(Debug)]
struct AfterFork;

impl SpanProcessor for AfterFork {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if let Some(batch) = BATCH.get() {
            batch.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        BATCH.get().map_or(Ok(()), SpanProcessor::force_flush)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        BATCH
            .get()
            .map_or(Ok(()), |b| b.shutdown_with_timeout(timeout))
    }

    fn set_resource(&mut self, resource: &Resource) {
        let _ = RESOURCE.set(resource.clone());
    }
}

/// The `tracing` layer that turns bffgate's request spans into OpenTelemetry spans, for the
/// subscriber set up at start. Nothing is exported until [`start`].
pub fn layer(config: &OtelConfig) -> OtelLayer {
    let provider = SdkTracerProvider::builder()
        .with_span_processor(AfterFork)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("bffgate");
    let _ = PROVIDER.set(provider);
    tracing_opentelemetry::layer().with_tracer(tracer)
}

/// Builds the OTLP/HTTP (protobuf) exporter for `config` behind a batch processor and
/// turns request spans on. Call once the process runs (after a daemon fork), with the
/// subscriber's layer from [`layer`] installed.
///
/// # Errors
/// The exporter cannot be built.
pub fn start(config: &OtelConfig) -> Result<(), TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(config.endpoint.as_str())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let mut batch = BatchSpanProcessor::builder(exporter)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_scheduled_delay(EXPORT_DELAY)
                .build(),
        )
        .build();
    if let Some(resource) = RESOURCE.get() {
        batch.set_resource(resource);
    }
    if BATCH.set(batch).is_err() {
        return Err(TelemetryError("the exporter was already started".into()));
    }
    ACCEPT_TRACEPARENT.store(config.accept_traceparent, Ordering::Relaxed);
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

struct HeaderExtractor<'a>(&'a RequestHeader);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.headers.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.headers.keys().map(|k| k.as_str()).collect()
    }
}

/// The span of one request (`Span::none()` when tracing is off), continuing the client's
/// `traceparent` when `otel.accept_traceparent` allows it.
pub fn request_span(req: &RequestHeader) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.kind = "server",
        http.request.method = %req.method,
        url.path = %String::from_utf8_lossy(req.uri.path().as_bytes()),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    if ACCEPT_TRACEPARENT.load(Ordering::Relaxed) && req.headers.contains_key("traceparent") {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req));
        // A traceparent that does not parse leaves the span a new trace's root.
        let _ = span.set_parent(parent);
    }
    span
}

/// A child of `parent` named `name` (`Span::none()` when `parent` is none: tracing off).
#[macro_export]
macro_rules! child_span {
    ($parent:expr, $name:literal $(, $($field:tt)*)?) => {
        if $parent.is_none() {
            ::tracing::Span::none()
        } else {
            ::tracing::info_span!(target: $crate::telemetry::TARGET, parent: $parent, $name $(, $($field)*)?)
        }
    };
}

/// A child of the current span named `name` (`Span::none()` outside a traced request).
#[macro_export]
macro_rules! current_child_span {
    ($name:literal $(, $($field:tt)*)?) => {{
        // Without export there is no current span to find: skip the dispatcher lookup.
        if !$crate::telemetry::enabled() {
            ::tracing::Span::none()
        } else {
            let current = ::tracing::Span::current();
            $crate::child_span!(&current, $name $(, $($field)*)?)
        }
    }};
}

struct HeaderInjector<'a>(&'a mut Vec<(String, String)>);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // An empty `tracestate` says nothing: leave it out.
        if !value.is_empty() {
            self.0.push((key.to_string(), value));
        }
    }
}

/// The `traceparent` (and `tracestate`) headers naming `span` as the parent, for the
/// upstream request; empty when `span` is none or not sampled in.
pub fn trace_headers(span: &Span) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if span.is_none() {
        return out;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(&mut out));
    out
}
