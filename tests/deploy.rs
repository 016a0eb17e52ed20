//! The deployment files under `deploy/` are well-formed and agree with the code:
//!
//! * every YAML file parses (Kubernetes files may hold several documents);
//! * the Kubernetes manifests have the expected kinds and wiring (replicas, probes, the
//!   ConfigMap mounted as a directory, secrets as env vars, Service → ServiceMonitor);
//! * the configs embedded in the ConfigMap and in compose.yaml pass `bffgate --check`;
//! * the Grafana dashboard only queries catalogued metrics (docs/metrics.md);
//! * the systemd unit passes `systemd-analyze verify` (when installed) and parses as INI;
//! * the Dockerfile's health-check probe compiles and tells a healthy bffgate apart.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn deploy() -> PathBuf {
    Path::new(ROOT).join("deploy")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every `*.yaml` / `*.yml` under `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
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

// ---------------------------------------------------------------------------------------
// Kubernetes

/// Every Kubernetes object under deploy/k8s, by kind (a kind may occur more than once).
fn k8s_objects() -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for file in yaml_files(&deploy().join("k8s")) {
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

fn one<'o>(objects: &'o BTreeMap<String, Vec<Value>>, kind: &str) -> &'o Value {
    let all = objects
        .get(kind)
        .unwrap_or_else(|| panic!("no {kind} in deploy/k8s (kinds: {:?})", objects.keys()));
    assert_eq!(all.len(), 1, "expected one {kind}");
    &all[0]
}

/// The ConfigMap's bff.yaml.
fn k8s_config(objects: &BTreeMap<String, Vec<Value>>) -> String {
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
    let objects = k8s_objects();
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
    let deployment = one(&objects, "Deployment");
    let configmap = one(&objects, "ConfigMap");
    let secret = one(&objects, "Secret");
    let service = one(&objects, "Service");
    let monitor = one(&objects, "ServiceMonitor");
    let pdb = one(&objects, "PodDisruptionBudget");
    assert_eq!(s(deployment, "apiVersion"), "apps/v1");
    assert_eq!(s(monitor, "apiVersion"), "monitoring.coreos.com/v1");
    assert_eq!(s(pdb, "apiVersion"), "policy/v1");

    // The config's ports.
    let config: Value = serde_yaml::from_str(&k8s_config(&objects)).expect("bff.yaml parses");
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
    let refs = env_refs(&k8s_config(&objects));
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

/// Replaces every upstream URL's host with 127.0.0.1 (ports kept): in-cluster names do not
/// resolve here, and bffgate resolves upstreams when it loads a config.
fn local_upstreams(yaml: &str) -> String {
    yaml.lines()
        .map(|line| {
            let Some(at) = line.find("upstreams:") else {
                return line.to_string();
            };
            let (head, list) = line.split_at(at);
            let mut out = String::from(head);
            let mut rest = list;
            while let Some(i) = rest.find("://") {
                out.push_str(&rest[..i + 3]);
                rest = &rest[i + 3..];
                let end = rest.find([':', '/', ']', ',', ' ']).unwrap_or(rest.len());
                out.push_str("127.0.0.1");
                rest = &rest[end..];
            }
            out.push_str(rest);
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configmap_config_passes_check() {
    let objects = k8s_objects();
    let yaml = k8s_config(&objects);
    let env = env_for(&env_refs(&yaml));
    // As written: every problem may only be an in-cluster upstream name this machine
    // cannot resolve.
    let (ok, out) = check(&yaml, &env);
    if !ok {
        let problems: Vec<&str> = out
            .lines()
            .filter(|l| !l.starts_with("bffgate: configuration refused"))
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert!(
            problems
                .iter()
                .all(|p| p.contains(".upstreams") && p.contains("cannot resolve host")),
            "the ConfigMap's bff.yaml has problems besides cluster DNS names:\n{out}"
        );
    }
    // With the upstreams pointed at loopback, the whole file is valid.
    let (ok, out) = check(&local_upstreams(&yaml), &env);
    assert!(
        ok,
        "bffgate --check refused the ConfigMap's bff.yaml:\n{out}"
    );
    // And the keys must really be keys: the Secret's placeholders are refused.
    let mut bad = env.clone();
    for (name, value) in &mut bad {
        if name == "BFFGATE_COOKIE_KEY" {
            *value = "REPLACE: bffgate --gen-key".into();
        }
    }
    let (ok, out) = check(&local_upstreams(&yaml), &bad);
    assert!(!ok, "a placeholder cookie key was accepted:\n{out}");
    assert!(out.contains("cookie.keys[0].secret"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Compose

fn compose() -> Value {
    let docs = documents(&deploy().join("compose.yaml"));
    assert_eq!(docs.len(), 1);
    docs.into_iter().next().unwrap()
}

/// Compose escapes a literal `$` as `$$`.
fn compose_unescape(text: &str) -> String {
    text.replace("$$", "$")
}

#[test]
fn compose_file_has_the_expected_services() {
    let c = compose();
    let services = at(&c, "services");

    let gw = at(services, "bffgate");
    assert_eq!(s(gw, "build.context"), "..");
    let dockerfile = s(gw, "build.dockerfile");
    assert!(
        deploy().join("..").join(dockerfile).exists(),
        "{dockerfile} relative to the build context"
    );
    let health: Vec<&str> = seq(gw, "healthcheck.test")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(health.contains(&"/healthz"), "{health:?}");
    assert!(
        read(&deploy().join("Dockerfile")).contains(health[1]),
        "the health-check command {} is built by the Dockerfile",
        health[1]
    );
    assert!(
        !seq(gw, "env_file").is_empty(),
        "secrets come from an env file"
    );
    assert_eq!(at(gw, "read_only").as_bool(), Some(true));
    let mounted = seq(gw, "configs");
    assert_eq!(mounted.len(), 1);
    let target = s(&mounted[0], "target");
    let config_env = s(gw, "environment.BFFGATE_CONFIG");
    assert_eq!(target, config_env, "bffgate reads the mounted config");

    let redis = at(services, "redis");
    assert_eq!(s(redis, "image"), "redis:7-alpine");
    let cmd: Vec<&str> = seq(redis, "command")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        cmd.windows(2).any(|w| w == ["--save", ""])
            && cmd.windows(2).any(|w| w == ["--appendonly", "no"]),
        "Redis without persistence: {cmd:?}"
    );
    assert!(at(redis, "healthcheck.test").is_sequence());

    let api = at(services, "api");
    assert_eq!(s(api, "image"), "node:20-alpine");
    let volumes: Vec<&str> = seq(api, "volumes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(volumes
        .iter()
        .any(|v| v.starts_with("../examples/demo/api.mjs:")));
    assert!(deploy().join("../examples/demo/api.mjs").exists());

    let provider = at(services, "provider");
    let profiles: Vec<&str> = seq(provider, "profiles")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(profiles, ["demo"], "the demo provider is optional");
    for v in seq(provider, "volumes").iter().filter_map(Value::as_str) {
        let host = v.split(':').next().unwrap();
        assert!(deploy().join(host).exists(), "volume source {host}");
    }
}

#[test]
fn the_compose_config_passes_check() {
    let c = compose();
    let gw = at(&c, "services.bffgate");
    let source = s(&seq(gw, "configs")[0], "source");
    let yaml = compose_unescape(s(&c, &format!("configs.{source}.content")));
    let refs = env_refs(&yaml);
    // Each ${VAR} is set by the service's environment or by the env file the header
    // comment tells operators to write.
    let header = read(&deploy().join("compose.yaml"));
    let from_env_file: BTreeSet<String> = header
        .lines()
        .filter_map(|l| l.strip_prefix("#   "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k.trim().to_string())
        .filter(|k| k.starts_with("BFFGATE_"))
        .collect();
    let environment = at(gw, "environment").as_mapping().expect("environment map");
    for name in &refs {
        assert!(
            from_env_file.contains(name) || environment.contains_key(name.as_str()),
            "${{{name}}} is set neither in bffgate.env (per the header) nor in environment"
        );
    }
    let (ok, out) = check(&yaml, &env_for(&refs));
    assert!(ok, "bffgate --check refused compose.yaml's config:\n{out}");
}

// ---------------------------------------------------------------------------------------
// Grafana

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

// ---------------------------------------------------------------------------------------
// systemd

/// `[section] → [(key, value)]` of an INI-style unit file; panics on a line that is
/// neither a comment, a section header nor `key=value`.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.to_string());
            out.entry(name.to_string()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", n + 1));
        let section = section
            .as_ref()
            .unwrap_or_else(|| panic!("line {}: outside a section", n + 1));
        out.get_mut(section)
            .unwrap()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    out
}

#[test]
fn the_systemd_unit_verifies() {
    let unit_path = deploy().join("bffgate.service");
    let text = read(&unit_path);
    let unit = parse_unit(&text);
    for section in ["Unit", "Service", "Install"] {
        assert!(unit.contains_key(section), "no [{section}] section");
    }
    let service: BTreeMap<&str, Vec<&str>> =
        unit["Service"]
            .iter()
            .fold(BTreeMap::new(), |mut m, (k, v)| {
                m.entry(k.as_str()).or_default().push(v.as_str());
                m
            });
    let exec_start = service["ExecStart"][0];
    assert!(exec_start.contains("bffgate"), "{exec_start}");
    assert!(service.contains_key("User"), "runs as a dedicated user");
    // Type=forking with --daemon: systemd follows the pid file, which bffgate writes as
    // bffgate.pid in $RUNTIME_DIRECTORY (set by RuntimeDirectory=) when the config names
    // no pid_file.
    if service.get("Type") == Some(&vec!["forking"]) {
        assert!(exec_start.contains("--daemon") || exec_start.contains(" -d"));
        let pid_file = service["PIDFile"][0];
        let runtime_dir = service["RuntimeDirectory"][0];
        assert_eq!(pid_file, format!("/run/{runtime_dir}/bffgate.pid"));
    }

    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    else {
        eprintln!(
            "systemd-analyze is not installed (Debian package `systemd`): checked only that \
             deploy/bffgate.service parses with [Unit], [Service] and [Install]"
        );
        return;
    };
    // The unit names /usr/local/bin/bffgate; verify checks that commands exist, so point a
    // copy at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("bffgate.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/bffgate", common::BIN)).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .arg(&copy)
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("run systemd-analyze verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 even for unknown keys and bad values ("…, ignoring."): any output is a
    // finding.
    let findings: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "systemd-analyze verify deploy/bffgate.service ({}):\n{}",
        out.status,
        findings.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Dockerfile

/// A loopback port that refuses connections for as long as the returned socket lives: it
/// is bound (so no other test process can take it) but never listens.
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().unwrap())
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("local addr").port();
    (socket, port)
}

/// The health-check probe's source: the Dockerfile's `COPY <<'EOF' …healthcheck.rs` heredoc.
fn probe_source() -> String {
    let text = read(&deploy().join("Dockerfile"));
    let mut lines = text.lines();
    lines
        .by_ref()
        .find(|l| l.starts_with("COPY <<") && l.contains("healthcheck.rs"))
        .expect("the Dockerfile writes healthcheck.rs from a heredoc");
    let body: Vec<&str> = lines.take_while(|l| *l != "EOF").collect();
    body.join("\n") + "\n"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_health_probe_tells_healthy_from_not() {
    let docker = read(&deploy().join("Dockerfile"));
    assert!(
        docker.contains("USER nonroot"),
        "the image runs as non-root"
    );
    assert!(
        docker.contains("HEALTHCHECK"),
        "the image declares a health check"
    );

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("healthcheck.rs");
    let bin = dir.path().join("bffgate-healthcheck");
    std::fs::write(&src, probe_source()).unwrap();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--edition", "2021", "-O", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "the Dockerfile's probe does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_held, dead) = refusing_port();
    let cfg = common::GatewayConfig::new(vec![common::route(
        "api",
        "/api",
        &format!("http://127.0.0.1:{dead}"),
        "none",
        "",
    )]);
    let gw = common::Gateway::start(&cfg.yaml()).await;
    let run = |addr: String, path: &str| {
        let out = Command::new(&bin).arg(addr).arg(path).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = run(gw.addr().to_string(), "/healthz");
    assert!(ok, "probe of a healthy bffgate failed: {err}");
    let (ok, err) = run(gw.addr().to_string(), "/readyz");
    assert!(ok, "in-memory store, no provider: ready ({err})");
    let (ok, err) = run(gw.addr().to_string(), "/nope");
    assert!(!ok && err.contains("404"), "a 404 is not healthy: {err}");
    let (ok, err) = run(format!("127.0.0.1:{dead}"), "/healthz");
    assert!(
        !ok,
        "nothing listens on {dead}, yet the probe passed: {err}"
    );
}
