//! The README's "Run bffgate alone" block runs as written: the binary under test stands in
//! for the build line, the block's own `export`s and `--check` run in a shell, and its last
//! line (the server) is `exec`ed so the test can signal it by the PID it started.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::ChildGuard;
use crate::common::{client, free_port, BIN, SCRUBBED_ENV};

/// The first ```sh block after the `### Run bffgate alone` heading.
fn run_alone_block() -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let section = readme
        .split("### Run bffgate alone")
        .nth(1)
        .expect("README has a `### Run bffgate alone` section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("the section has a ```sh block");
    block.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_alone_block_serves_and_stops_on_sigterm() {
    let lines = run_alone_block();
    assert_eq!(
        lines.first().map(String::as_str),
        Some("cargo build --release"),
        "the block starts with the build"
    );
    let (last, middle) = lines[1..].split_last().expect("commands after the build");
    assert!(
        last.starts_with("bffgate "),
        "the block ends by starting bffgate: {last}"
    );
    let script = format!("set -eu\n{}\nexec {last}\n", middle.join("\n"));

    // A fresh directory holding only what the block names (conf/bff.yaml), so `$PWD/target`
    // holds no other build; the binary under test comes first on PATH.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/bff.yaml");
    std::fs::copy(conf, dir.path().join("conf/bff.yaml")).unwrap();
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let port = free_port();
    let mut cmd = Command::new("bash");
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("BFFGATE_LISTEN", format!("127.0.0.1:{port}"));
    let mut server = ChildGuard::spawn("readme block", &mut cmd, &dir.path().join("run.log"))
        .unwrap()
        .with_grace(Duration::from_secs(30));

    let url = format!("http://127.0.0.1:{port}/healthz");
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        if let Ok(resp) = client().get(&url).send().await {
            if resp.status() == 200 {
                break resp.text().await.unwrap();
            }
        }
        assert!(
            server.is_running() && Instant::now() < deadline,
            "the README block did not serve /healthz; its output:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let log = server.log();
    assert!(
        log.contains("conf/bff.yaml: ok: "),
        "--check ran and passed:\n{log}"
    );

    // `kill -TERM <pid>` drains and stops it.
    server.signal(libc::SIGTERM).unwrap();
    let status = server
        .wait_timeout(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("still running 30 s after SIGTERM:\n{}", server.log()));
    assert!(
        status.success(),
        "exit after SIGTERM: {status}\n{}",
        server.log()
    );
}
