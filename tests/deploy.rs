//! The deployment files under `deploy/` are well-formed and agree with the code:
//!
//! * every YAML file parses (Kubernetes files may hold several documents);
//! * the Kubernetes manifests have the expected kinds and wiring (replicas, probes, the
//!   ConfigMap mounted as a directory, secrets as env vars, Service → ServiceMonitor);
//! * the Helm chart renders (Helm's own engine) to the same objects and wiring;
//! * the configs embedded in the ConfigMap and in compose.yaml pass `bffgate --check`;
//! * the Grafana dashboard only queries catalogued metrics (docs/metrics.md);
//! * the systemd unit passes `systemd-analyze verify` (when installed) and parses as INI;
//! * the Dockerfile's health-check probe compiles and tells a healthy bffgate apart.

mod compose;
mod dockerfile;
mod grafana;
mod helm;
mod kubernetes;
mod systemd;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

use crate::common;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn deploy() -> PathBuf {
    Path::new(ROOT).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `*.yaml` / `*.yml` under `dir`, sorted; a Helm chart's `templates` folder is left
/// out (Go templates, checked by rendering them: `helm.rs`).
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let chart_templates = path.ends_with("templates")
                    && path
                        .parent()
                        .is_some_and(|p| p.join("Chart.yaml").is_file());
                if !chart_templates {
                    stack.push(path);
                }
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The documents of a YAML file (empty documents dropped).
fn documents(path: &Path) -> Vec<Value> {
    let text = read(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

use serde::Deserialize as _;

/// `v[a][b]…` by string keys and sequence indexes written as numbers.
fn at<'v>(v: &'v Value, path: &str) -> &'v Value {
    static NULL: Value = Value::Null;
    let mut cur = v;
    for key in path.split('.') {
        cur = match key.parse::<usize>() {
            Ok(i) => cur.get(i).unwrap_or(&NULL),
            Err(_) => cur.get(key).unwrap_or(&NULL),
        };
    }
    cur
}

fn s<'v>(v: &'v Value, path: &str) -> &'v str {
    at(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string in {v:?}"))
}

fn seq<'v>(v: &'v Value, path: &str) -> &'v Vec<Value> {
    at(v, path)
        .as_sequence()
        .unwrap_or_else(|| panic!("{path} is not a list"))
}

/// Metric names of the `| metric | … |` table in docs/metrics.md.
fn catalogue() -> BTreeSet<String> {
    let text = read(&Path::new(ROOT).join("docs/metrics.md"));
    let mut names = BTreeSet::new();
    let mut col: Option<usize> = None;
    for line in text.lines().map(str::trim) {
        if !line.starts_with('|') {
            col = None;
            continue;
        }
        let cells: Vec<&str> = line
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        match col {
            None => col = cells.iter().position(|c| *c == "metric"),
            Some(_)
                if cells
                    .iter()
                    .all(|c| c.chars().all(|ch| ch == '-' || ch == ':')) => {}
            Some(i) => {
                names.insert(cells[i].to_string());
            }
        }
    }
    assert!(!names.is_empty(), "no metric table in docs/metrics.md");
    names
}

/// Every `${NAME}` in `text`.
fn env_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let end = after.find('}').expect("unterminated ${");
        out.insert(after[..end].to_string());
        rest = &after[end + 1..];
    }
    out
}

/// A fresh key from the binary itself, as the docs tell operators to make one.
fn gen_key() -> String {
    let out = Command::new(common::BIN)
        .arg("--gen-key")
        .output()
        .expect("run bffgate --gen-key");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Values for the `${…}` a deployment config references: keys are real 32-byte keys,
/// anything else a plausible string.
fn env_for(refs: &BTreeSet<String>) -> Vec<(String, String)> {
    refs.iter()
        .map(|name| {
            let value = if name.ends_with("_KEY") {
                gen_key()
            } else if name.contains("ISSUER") {
                "http://127.0.0.1:9000".to_string()
            } else {
                format!("test-{}", name.to_ascii_lowercase())
            };
            (name.clone(), value)
        })
        .collect()
}

fn check(yaml: &str, env: &[(String, String)]) -> (bool, String) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, out) = common::check_config(yaml, &env);
    (status.success(), out)
}

// ---------------------------------------------------------------------------------------
// YAML everywhere

#[test]
fn every_yaml_file_under_deploy_parses() {
    let files = yaml_files(&deploy());
    let names: Vec<String> = files
        .iter()
        .map(|p| p.strip_prefix(deploy()).unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"compose.yaml".to_string()), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("k8s/")), "{names:?}");
    for file in &files {
        let docs = documents(file);
        assert!(!docs.is_empty(), "{} has no document", file.display());
        for doc in &docs {
            assert!(
                doc.is_mapping(),
                "{}: a document is not a mapping",
                file.display()
            );
        }
    }
}
