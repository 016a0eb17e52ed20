//! The Dockerfile: non-root, with a health check whose probe compiles and tells a healthy
//! bffgate apart.

use super::*;

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

    let (_held, dead) = common::refusing_port();
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

/// The dependency layer builds against stubs: every target path Cargo.toml names is
/// stubbed before the first `cargo build` (else the manifest does not load and the image
/// does not build), and bffgate's own sources are copied only after it.
#[test]
fn the_dependency_layer_stubs_every_cargo_target() {
    let docker = read(&deploy().join("Dockerfile"));
    let manifest = read(&deploy().join("../Cargo.toml"));
    let paths: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("path = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .collect();
    assert!(
        paths.contains(&"src/main.rs") && paths.len() >= 4,
        "{paths:?}"
    );
    let first_build = docker
        .find("cargo build")
        .expect("the Dockerfile runs cargo build");
    let copy_src = docker.find("COPY src ./src").expect("COPY src");
    assert!(
        first_build < copy_src,
        "dependencies are built before the sources are copied"
    );
    let stubs = &docker[..first_build];
    for path in paths {
        assert!(
            stubs.contains(&format!("> {path}")) || stubs.contains(&format!("touch {path}")),
            "Cargo.toml names {path}, which the dependency layer does not stub"
        );
    }
    assert!(
        docker[copy_src..].contains("touch src/main.rs src/lib.rs"),
        "the real sources are touched so cargo rebuilds bffgate"
    );
}
