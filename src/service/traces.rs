//! Starts the OpenTelemetry trace exporter once the process runs: after a daemon fork
//! (whose child would not inherit the exporter's thread), before traffic is served.

use crate::config::OtelConfig;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// Runs [`crate::telemetry::start`] for its config, once.
pub struct TraceExporter(pub OtelConfig);

#[async_trait]
impl BackgroundService for TraceExporter {
    async fn start(&self, _shutdown: ShutdownWatch) {
        let config = self.0.clone();
        // The exporter's blocking HTTP client must be built (and may be dropped) outside
        // the async runtime.
        let started = tokio::task::spawn_blocking(move || crate::telemetry::start(&config)).await;
        match started {
            Ok(Ok(())) => tracing::info!(endpoint = %self.0.endpoint, "exporting traces"),
            Ok(Err(e)) => tracing::error!(error = %e, "traces will not be exported"),
            Err(e) => tracing::error!(error = %e, "the trace exporter did not start"),
        }
    }
}
