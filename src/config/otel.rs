//! The `otel` section: OpenTelemetry traces sent over OTLP/HTTP (off when the section is
//! absent): where to, under which service name, which share of requests, and whether a
//! client's W3C `traceparent` is continued.

use super::file::OtelFile;
use super::load::Problems;
use super::OtelConfig;

/// Checks the otel section.
pub(super) fn build(f: OtelFile, p: &mut Problems) -> Option<OtelConfig> {
    let endpoint = match url::Url::parse(&f.endpoint) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            p.add(
                "otel.endpoint",
                format!("`{}` is not an http(s) URL", f.endpoint),
            );
            None
        }
        Err(e) => {
            p.add(
                "otel.endpoint",
                format!("`{}` is not a URL: {e}", f.endpoint),
            );
            None
        }
    };
    if !(0.0..=1.0).contains(&f.sample_ratio) {
        p.add(
            "otel.sample_ratio",
            format!("{} is not between 0.0 and 1.0", f.sample_ratio),
        );
    }
    if f.service_name.trim().is_empty() {
        p.add("otel.service_name", "must not be empty");
    }
    Some(OtelConfig {
        endpoint: endpoint?,
        service_name: f.service_name,
        sample_ratio: f.sample_ratio.clamp(0.0, 1.0),
        accept_traceparent: f.accept_traceparent,
    })
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    #[test]
    fn otel_settings_are_checked_with_their_keys() {
        let ok = format!(
            "{}otel: {{endpoint: \"http://127.0.0.1:4318/v1/traces\"}}\n",
            base()
        );
        assert!(problems(&ok).is_empty());
        let bad = format!(
            "{}otel: {{endpoint: \"udp://x\", sample_ratio: 1.5, service_name: \" \"}}\n",
            base()
        );
        let keys: Vec<String> = problems(&bad).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["otel.endpoint", "otel.sample_ratio", "otel.service_name"]
        );
    }
}
