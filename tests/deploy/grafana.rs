//! The Grafana dashboard queries only catalogued metrics.

use super::*;

fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                if k == "expr" {
                    out.push(v.as_str().expect("expr is a string").to_string());
                } else {
                    exprs(v, out);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Every `bff_[a-z_]+` in a query, histogram suffixes removed.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("bff_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let mut end = start + 4;
        while end < bytes.len() && (bytes[end].is_ascii_lowercase() || bytes[end] == b'_') {
            end += 1;
        }
        if boundary {
            let mut name = &expr[start..end];
            for suffix in ["_bucket", "_count", "_sum"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    name = base;
                    break;
                }
            }
            out.insert(name.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn the_dashboard_queries_only_catalogued_metrics() {
    let path = deploy().join("grafana/bffgate-dashboard.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path)).expect("dashboard JSON");
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    let mut all = Vec::new();
    exprs(&dash, &mut all);
    assert!(all.len() >= 10, "only {} queries", all.len());
    let catalogue = catalogue();
    let mut used = BTreeSet::new();
    for expr in &all {
        let names = metric_names(expr);
        assert!(
            !names.is_empty(),
            "a query without a bffgate metric: {expr}"
        );
        for name in names {
            assert!(
                catalogue.contains(&name),
                "the dashboard queries {name}, which docs/metrics.md does not catalogue: {expr}"
            );
            used.insert(name);
        }
    }
    // The panels the dashboard promises.
    for name in [
        "bff_requests_total",
        "bff_request_duration_seconds",
        "bff_upstream_duration_seconds",
        "bff_session_lookups_total",
        "bff_store_duration_seconds",
        "bff_store_errors_total",
        "bff_refreshes_total",
        "bff_logins_total",
        "bff_logouts_total",
        "bff_csrf_rejections_total",
        "bff_cookie_unseal_failures_total",
        "bff_config_reloads_total",
        "bff_config_last_reload_success_timestamp_seconds",
    ] {
        assert!(used.contains(name), "no panel queries {name}");
    }
    // Panel ids are unique; every panel is placed.
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate id"
        );
        assert!(p["gridPos"]["w"].as_u64().is_some(), "{}", p["title"]);
    }
}
