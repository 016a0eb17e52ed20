//! The Helm chart (deploy/helm/bffgate): rendered by Helm's own template engine — Helm v4's
//! Go SDK as wrapped by the `helm-python-sdk` package, driven by scripts/helm-template.py
//! (lint, then the equivalent of `helm template`) — and checked like the manifests: the
//! same objects, the same bff.yaml, the same wiring (`kubernetes::expect_shape`).
//!
//! scripts/test.sh installs the package and sets `BFFGATE_HELM_SDK`; without it the chart's
//! files are still checked, and under CI its absence fails the test.

use super::kubernetes::{expect_shape, k8s_config, k8s_objects, one};
use super::*;

fn chart() -> PathBuf {
    deploy().join("helm/bffgate")
}

/// Where scripts/test.sh installs helm-python-sdk when `BFFGATE_HELM_SDK` is not set.
fn default_sdk() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    Path::new(&home).join(".cache/bffgate/helm-sdk-0.2.2")
}

/// `helm template bffgate deploy/helm/bffgate -n bffgate --set …`: `Some(Ok(manifests))`,
/// `Some(Err(why))` when Helm refuses, `None` when the engine is not installed (a failure
/// under CI).
fn render(sets: &[&str]) -> Option<Result<String, String>> {
    let mut cmd = Command::new("python3");
    cmd.arg(Path::new(ROOT).join("scripts/helm-template.py"))
        .arg(chart())
        .args(["--name", "bffgate", "--namespace", "bffgate"]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    if std::env::var_os("BFFGATE_HELM_SDK").is_none() {
        cmd.env("BFFGATE_HELM_SDK", default_sdk());
    }
    let out = cmd.output().expect("run python3 scripts/helm-template.py");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Some(Ok(String::from_utf8(out.stdout).expect("utf-8"))),
        Some(3) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the Helm engine is not installed under CI: {stderr}"
            );
            eprintln!(
                "helm-python-sdk is not installed: the chart was checked, not rendered ({stderr})"
            );
            None
        }
        _ => Some(Err(stderr)),
    }
}

/// The rendered objects by kind.
fn objects(manifests: &str) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for doc in serde_yaml::Deserializer::from_str(manifests) {
        let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}\n{manifests}"));
        if v.is_null() {
            continue;
        }
        out.entry(s(&v, "kind").to_string()).or_default().push(v);
    }
    out
}

#[test]
fn the_charts_config_and_version_are_the_manifests_and_the_crates() {
    let meta = documents(&chart().join("Chart.yaml")).pop().unwrap();
    assert_eq!(s(&meta, "apiVersion"), "v2");
    assert_eq!(s(&meta, "name"), "bffgate");
    assert_eq!(s(&meta, "appVersion"), env!("CARGO_PKG_VERSION"));
    let values = documents(&chart().join("values.yaml")).pop().unwrap();
    assert!(values.is_mapping());
    // The chart ships the ConfigMap's bff.yaml as it is, comments and all.
    let k8s = k8s_config(&k8s_objects());
    assert_eq!(read(&chart().join("files/bff.yaml")), k8s);
}

#[test]
fn the_helm_chart_renders_the_manifests_objects() {
    let Some(base) = render(&[]) else { return };
    let base = objects(&base.unwrap_or_else(|e| panic!("helm template: {e}")));
    // By default: the kustomize base's objects but the Namespace (Helm installs into one),
    // no Secret (an existing one is used) and no ServiceMonitor.
    let kinds: Vec<&str> = base.keys().map(String::as_str).collect();
    assert_eq!(
        kinds,
        ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service"]
    );
    let manifests = k8s_objects();
    assert_eq!(k8s_config(&base), k8s_config(&manifests), "bff.yaml");
    let image = |o: &BTreeMap<String, Vec<Value>>| {
        s(
            one(o, "Deployment"),
            "spec.template.spec.containers.0.image",
        )
        .to_string()
    };
    assert_eq!(image(&base), image(&manifests));
    for kind in ["Deployment", "ConfigMap", "Service"] {
        assert_eq!(
            s(one(&base, kind), "metadata.namespace"),
            "bffgate",
            "{kind}"
        );
    }

    // With its Secret and ServiceMonitor, the chart wires up as the manifests do.
    let full = render(&[
        "secret.create=true",
        "secret.cookieKey=k,secret.sessionKey=s,secret.clientSecret=c",
        "serviceMonitor.enabled=true",
    ])
    .expect("rendered once already")
    .unwrap_or_else(|e| panic!("helm template: {e}"));
    expect_shape(&objects(&full));
}

#[test]
fn a_created_secret_needs_its_values() {
    let Some(out) = render(&["secret.create=true"]) else {
        return;
    };
    let err = out.expect_err("a Secret without keys was rendered");
    assert!(err.contains("secret.cookieKey is needed"), "{err}");
}
