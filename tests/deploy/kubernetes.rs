//! The Kubernetes manifests: the expected kinds and wiring, and the ConfigMap's config
//! passes `bffgate --check`.

use super::*;

/// Every Kubernetes object under deploy/k8s and its overlays, by kind (a kind may occur
/// more than once).
pub(super) fn k8s_objects() -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut files = yaml_files(&deploy().join("k8s"));
    files.extend(yaml_files(&deploy().join("k8s-overlays")));
    for file in files {
        for doc in documents(&file) {
            let kind = s(&doc, "kind").to_string();
            assert!(
                at(&doc, "apiVersion").is_string(),
                "{}: {kind} without apiVersion",
                file.display()
            );
            out.entry(kind).or_default().push(doc);
        }
    }
    out
}

pub(super) fn one<'o>(objects: &'o BTreeMap<String, Vec<Value>>, kind: &str) -> &'o Value {
    let all = objects
        .get(kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/k8s (kinds: {:?})", objects.keys()));
    assert_eq!(all.len(), 1, "expected one {kind}");
    &all[0]
}

/// The ConfigMap's bff.yaml.
pub(super) fn k8s_config(objects: &BTreeMap<String, Vec<Value>>) -> String {
    at(one(objects, "ConfigMap"), "data")
        .get("bff.yaml")
        .and_then(Value::as_str)
        .expect("the ConfigMap has data[\"bff.yaml\"]")
        .to_string()
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn labels_match(selector: &Value, labels: &Value) -> bool {
    let want = selector.as_mapping().expect("selector is a mapping");
    !want.is_empty() && want.iter().all(|(k, v)| labels.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_have_the_expected_shape() {
    expect_shape(&k8s_objects());
}

/// The objects of a deployment (the manifests, or the Helm chart rendered with its Secret
/// and ServiceMonitor) have the expected kinds and wiring: replicas, pod and container
/// hardening, probes on the proxy port, the ConfigMap mounted as a directory, the config's
/// secrets as env vars from the Secret, Service → pods and ServiceMonitor → Service, a PDB
/// that keeps a pod, one namespace.
pub(super) fn expect_shape(objects: &BTreeMap<String, Vec<Value>>) {
    for kind in [
        "Deployment",
        "ConfigMap",
        "Secret",
        "Service",
        "ServiceMonitor",
        "PodDisruptionBudget",
    ] {
        assert!(objects.contains_key(kind), "no {kind} in deploy/k8s");
    }
    let deployment = one(objects, "Deployment");
    let configmap = one(objects, "ConfigMap");
    let secret = one(objects, "Secret");
    let service = one(objects, "Service");
    let monitor = one(objects, "ServiceMonitor");
    let pdb = one(objects, "PodDisruptionBudget");
    assert_eq!(s(deployment, "apiVersion"), "apps/v1");
    assert_eq!(s(monitor, "apiVersion"), "monitoring.coreos.com/v1");
    assert_eq!(s(pdb, "apiVersion"), "policy/v1");

    // The config's ports.
    let config: Value = serde_yaml::from_str(&k8s_config(objects)).expect("bff.yaml parses");
    let proxy_port = port_of(s(&config, "listen.0.addr"));
    let metrics_port = port_of(s(&config, "metrics.addr"));
    assert!(
        s(&config, "metrics.addr").starts_with("0.0.0.0:"),
        "metrics must listen beyond the pod's loopback to be scraped"
    );

    // Deployment: replicas, pod and container hardening, probes, resources.
    let replicas = at(deployment, "spec.replicas").as_u64().expect("replicas");
    assert!(replicas >= 2, "replicas = {replicas}");
    let pod = at(deployment, "spec.template.spec");
    let pod_labels = at(deployment, "spec.template.metadata.labels");
    assert!(labels_match(
        at(deployment, "spec.selector.matchLabels"),
        pod_labels
    ));
    assert_eq!(
        at(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    let containers = seq(pod, "containers");
    let c = containers
        .iter()
        .find(|c| s(c, "name") == "bffgate")
        .expect("a container named bffgate");
    assert_eq!(
        at(c, "securityContext.readOnlyRootFilesystem").as_bool(),
        Some(true)
    );
    assert_eq!(
        at(c, "securityContext.allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    let dropped: Vec<&str> = seq(c, "securityContext.capabilities.drop")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(dropped, ["ALL"]);
    for r in ["requests.cpu", "requests.memory", "limits.memory"] {
        assert!(
            at(c, &format!("resources.{r}")).is_string(),
            "no resources.{r}"
        );
    }
    let ports: BTreeMap<String, u64> = seq(c, "ports")
        .iter()
        .map(|p| {
            (
                s(p, "name").to_string(),
                at(p, "containerPort").as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports.get("http"), Some(&proxy_port), "{ports:?}");
    assert_eq!(ports.get("metrics"), Some(&metrics_port), "{ports:?}");
    let probe_port = |probe: &Value| -> u64 {
        match at(probe, "httpGet.port") {
            Value::String(name) => ports[name],
            Value::Number(n) => n.as_u64().unwrap(),
            other => panic!("probe port {other:?}"),
        }
    };
    let liveness = at(c, "livenessProbe");
    let readiness = at(c, "readinessProbe");
    assert_eq!(s(liveness, "httpGet.path"), "/healthz");
    assert_eq!(s(readiness, "httpGet.path"), "/readyz");
    assert_eq!(
        probe_port(liveness),
        proxy_port,
        "liveness on the proxy port"
    );
    assert_eq!(
        probe_port(readiness),
        proxy_port,
        "readiness on the proxy port"
    );

    // The ConfigMap is mounted as a directory (no subPath: updates reach the file), at the
    // directory of the file bffgate is told to read.
    let args: Vec<&str> = at(c, "args")
        .as_sequence()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let env: Vec<&Value> = seq(c, "env").iter().collect();
    let config_path = args
        .iter()
        .position(|a| *a == "--config" || *a == "-c")
        .map(|i| args[i + 1].to_string())
        .or_else(|| {
            env.iter()
                .find(|e| s(e, "name") == "BFFGATE_CONFIG")
                .map(|e| s(e, "value").to_string())
        })
        .expect("the config path, from --config or BFFGATE_CONFIG");
    let config_dir = Path::new(&config_path).parent().unwrap().to_str().unwrap();
    let config_file = Path::new(&config_path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert!(
        at(configmap, "data")
            .get(config_file)
            .is_some_and(Value::is_string),
        "the ConfigMap has no {config_file}"
    );
    let volume = seq(pod, "volumes")
        .iter()
        .find(|v| at(v, "configMap.name").as_str() == Some(s(configmap, "metadata.name")))
        .expect("a volume from the ConfigMap");
    let mount = seq(c, "volumeMounts")
        .iter()
        .find(|m| s(m, "name") == s(volume, "name"))
        .expect("the ConfigMap volume is mounted");
    assert_eq!(s(mount, "mountPath"), config_dir);
    assert!(
        at(mount, "subPath").is_null(),
        "a subPath mount never sees ConfigMap updates"
    );
    assert_eq!(at(mount, "readOnly").as_bool(), Some(true));

    // Every ${VAR} in the config is an env var of the container, the secret ones from keys
    // the Secret has.
    let secret_name = s(secret, "metadata.name");
    let secret_keys: BTreeSet<&str> = ["stringData", "data"]
        .iter()
        .filter_map(|f| at(secret, f).as_mapping())
        .flat_map(|m| m.keys().filter_map(Value::as_str))
        .collect();
    let refs = env_refs(&k8s_config(objects));
    assert!(
        refs.contains("BFFGATE_COOKIE_KEY")
            && refs.contains("BFFGATE_SESSION_KEY")
            && refs.contains("BFFGATE_CLIENT_SECRET"),
        "{refs:?}"
    );
    for name in &refs {
        let var = env
            .iter()
            .find(|e| s(e, "name") == name)
            .unwrap_or_else(|| panic!("${{{name}}} is not an env var of the container"));
        let from = at(var, "valueFrom.secretKeyRef");
        assert_eq!(s(from, "name"), secret_name, "{name} comes from the Secret");
        assert!(
            secret_keys.contains(s(from, "key")),
            "{name}: no such key in the Secret"
        );
    }

    // Service: both ports, selecting the pods; the ServiceMonitor scrapes `metrics`.
    assert!(labels_match(at(service, "spec.selector"), pod_labels));
    let service_ports: BTreeMap<&str, &Value> = seq(service, "spec.ports")
        .iter()
        .map(|p| (s(p, "name"), at(p, "targetPort")))
        .collect();
    for name in ["http", "metrics"] {
        let target = service_ports
            .get(name)
            .unwrap_or_else(|| panic!("the Service has no `{name}` port"));
        let target = match target {
            Value::String(n) => ports[n.as_str()],
            Value::Number(n) => n.as_u64().unwrap(),
            other => panic!("targetPort {other:?}"),
        };
        assert_eq!(target, ports[name], "Service port {name}");
    }
    assert!(labels_match(
        at(monitor, "spec.selector.matchLabels"),
        at(service, "metadata.labels")
    ));
    let endpoints = seq(monitor, "spec.endpoints");
    assert!(endpoints.iter().any(|e| s(e, "port") == "metrics"));

    // PodDisruptionBudget covers the pods and leaves one running.
    assert!(labels_match(
        at(pdb, "spec.selector.matchLabels"),
        pod_labels
    ));
    let keeps_one = match (
        at(pdb, "spec.maxUnavailable").as_u64(),
        at(pdb, "spec.minAvailable").as_u64(),
    ) {
        (Some(max), _) => max < replicas,
        (_, Some(min)) => min >= 1 && min < replicas,
        _ => false,
    };
    assert!(keeps_one, "the PDB must let a drain proceed and keep a pod");

    // Everything is in one namespace; kustomization.yaml lists files that exist.
    let namespaces: BTreeSet<&str> = objects
        .values()
        .flatten()
        .filter_map(|o| at(o, "metadata.namespace").as_str())
        .collect();
    assert_eq!(namespaces.len(), 1, "{namespaces:?}");
    if let Some(k) = objects.get("Kustomization") {
        for r in seq(&k[0], "resources") {
            let file = deploy().join("k8s").join(r.as_str().unwrap());
            assert!(file.exists(), "kustomization names {}", file.display());
        }
    }
}

#[test]
fn the_configmap_config_passes_check() {
    let objects = k8s_objects();
    let yaml = k8s_config(&objects);
    let env = env_for(&env_refs(&yaml));
    // As written, in-cluster upstream names and all, without touching the network.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bff.yaml");
    std::fs::write(&path, &yaml).unwrap();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, out) = common::check_file_with(&path, &env_refs, &["--no-resolve"]);
    assert!(
        status.success(),
        "bffgate --check --no-resolve refused the ConfigMap's bff.yaml:\n{out}"
    );
    assert!(
        !out.contains("resolve "),
        "--no-resolve looked names up:\n{out}"
    );
    // And the keys must really be keys: the Secret's placeholders are refused.
    let mut bad = env.clone();
    for (name, value) in &mut bad {
        if name == "BFFGATE_COOKIE_KEY" {
            *value = "REPLACE: bffgate --gen-key".into();
        }
    }
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (status, out) = common::check_file_with(&path, &bad, &["--no-resolve"]);
    assert!(
        !status.success(),
        "a placeholder cookie key was accepted:\n{out}"
    );
    assert!(out.contains("cookie.keys[0].secret"), "{out}");
}

/// The `resources` a kustomization lists.
fn kustomization_resources(dir: &Path) -> Vec<String> {
    let doc = documents(&dir.join("kustomization.yaml"))
        .pop()
        .expect("a kustomization document");
    seq(&doc, "resources")
        .iter()
        .map(|r| r.as_str().expect("resource path").to_string())
        .collect()
}

/// The kinds `kubectl kustomize DIR` renders, or `None` when kubectl is not installed.
fn rendered_kinds(dir: &Path) -> Option<Vec<String>> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("kubectl: {e}"),
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("kind: "))
            .map(str::to_string)
            .collect(),
    )
}

/// The base works on any cluster (no ServiceMonitor, whose CRD only the Prometheus Operator
/// brings); the prometheus-operator overlay is the base plus the ServiceMonitor. Every
/// listed resource exists; where kubectl is installed, both render.
#[test]
fn the_base_kustomization_needs_no_operator_and_the_overlay_adds_the_monitor() {
    let base = deploy().join("k8s");
    let overlay = deploy().join("k8s-overlays/prometheus-operator");
    for r in kustomization_resources(&base) {
        let file = base.join(&r);
        assert!(file.is_file(), "base lists {r}, which does not exist");
        for doc in documents(&file) {
            assert_ne!(s(&doc, "kind"), "ServiceMonitor", "{r} in the base");
            assert_ne!(
                s(&doc, "kind"),
                "Secret",
                "the base must not overwrite the Secret"
            );
        }
    }
    let resources = kustomization_resources(&overlay);
    assert!(
        resources.contains(&"../../k8s".to_string()),
        "{resources:?}"
    );
    let monitors: Vec<Value> = resources
        .iter()
        .filter(|r| r.ends_with(".yaml"))
        .flat_map(|r| documents(&overlay.join(r)))
        .collect();
    assert_eq!(monitors.len(), 1);
    assert_eq!(s(&monitors[0], "kind"), "ServiceMonitor");

    match (rendered_kinds(&base), rendered_kinds(&overlay)) {
        (Some(base_kinds), Some(overlay_kinds)) => {
            assert!(
                base_kinds.contains(&"Deployment".to_string()),
                "{base_kinds:?}"
            );
            assert!(!base_kinds.contains(&"ServiceMonitor".to_string()));
            let mut expected = base_kinds.clone();
            expected.push("ServiceMonitor".to_string());
            let (mut got, mut want) = (overlay_kinds, expected);
            got.sort();
            want.sort();
            assert_eq!(
                got, want,
                "the overlay renders the base plus a ServiceMonitor"
            );
        }
        _ => eprintln!("kubectl is not installed: the kustomizations were checked, not rendered"),
    }
}
