//! compose.yaml: the expected services, and its config passes `bffgate --check`.

use super::*;

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
