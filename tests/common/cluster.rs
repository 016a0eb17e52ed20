//! A real Redis Cluster on loopback, owned by one test: `n` masters (no replicas), each a
//! `redis-server --cluster-enabled yes` child with its own nodes file in a tempdir, joined
//! by `redis-cli --cluster create`. Every process is killed (SIGKILL) on drop.
//!
//! The cluster bus port is chosen explicitly (`--cluster-port`), because the default
//! (`port + 10000`) overflows for ephemeral ports above 55535.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const NODE_READY: Duration = Duration::from_secs(5);
const CLUSTER_READY: Duration = Duration::from_secs(20);

/// One `redis-server` child.
struct Node {
    port: u16,
    child: Child,
}

/// A running Redis Cluster (see the module docs).
pub struct RedisCluster {
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, creates the cluster over them (slots split
    /// evenly, no replicas) and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// If a server does not start or the cluster does not form within 20 s (with the logs).
    pub fn start(masters: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("cluster tempdir");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            dir,
        };
        for _ in 0..masters {
            let node = start_node(cluster.dir.path())
                .unwrap_or_else(|e| panic!("could not start a cluster node: {e}"));
            cluster.nodes.push(node);
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create").args(&addrs).args([
            "--cluster-replicas",
            "0",
            "--cluster-yes",
        ]);
        let (ok, out) = run_bounded(create, Duration::from_secs(20));
        assert!(ok, "redis-cli --cluster create failed:\n{out}");
        let deadline = Instant::now() + CLUSTER_READY;
        loop {
            let all_ok = cluster.nodes.iter().all(|n| {
                redis_cli(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if all_ok {
                break;
            }
            if Instant::now() > deadline {
                panic!(
                    "the cluster never reported cluster_state:ok on every node; create said:\n{out}\n{}",
                    cluster.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// `redis://127.0.0.1:PORT` of every node (all of them as seeds).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The node ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// `DBSIZE` of every node, in node order (`None` where a node does not answer).
    pub fn dbsizes(&self) -> Vec<Option<u64>> {
        self.nodes
            .iter()
            .map(|n| redis_cli(n.port, &["DBSIZE"]).and_then(|s| s.trim().parse().ok()))
            .collect()
    }

    /// Every node's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            let log =
                std::fs::read_to_string(self.dir.path().join(format!("redis-{}.log", n.port)))
                    .unwrap_or_default();
            out.push_str(&format!("---- node {} ----\n{log}", n.port));
        }
        out
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
    }
}

/// A port where a listener could bind a moment ago and that is not `other`.
fn another_free_port(other: u16) -> u16 {
    loop {
        let p = free_port();
        if p != other {
            return p;
        }
    }
}

fn start_node(dir: &Path) -> Result<Node, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let bus = another_free_port(port);
        // Both must be bindable (another test may have taken one since).
        if TcpListener::bind(("127.0.0.1", bus)).is_err() {
            continue;
        }
        let log_path = dir.join(format!("redis-{port}.log"));
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("redis-server")
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--cluster-enabled", "yes"])
            .arg("--cluster-config-file")
            .arg(dir.join(format!("nodes-{port}.conf")))
            .arg("--cluster-port")
            .arg(bus.to_string())
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("spawn redis-server: {e}"))?;
        let deadline = Instant::now() + NODE_READY;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                last = format!(
                    "redis-server exited ({status}): {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
                break;
            }
            if ping(port) {
                return Ok(Node { port, child });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                last = format!("redis-server on {port} never answered PING");
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Err(last)
}

/// True if a Redis server on `127.0.0.1:port` answers `PING`.
pub fn ping(port: u16) -> bool {
    use std::io::{Read, Write};
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
}

/// `redis-cli -h 127.0.0.1 -p PORT ARGS…` (5 s at most): its stdout, or `None` when it
/// failed or the server did not answer.
pub fn redis_cli(port: u16, args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("redis-cli");
    cmd.args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(args);
    let (ok, out) = run_bounded(cmd, Duration::from_secs(5));
    if !ok || out.contains("Could not connect") {
        return None;
    }
    Some(out)
}

/// Runs a command with a deadline; `(exited with success, stdout + stderr)`.
fn run_bounded(mut cmd: Command, limit: Duration) -> (bool, String) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => return (false, e.to_string()),
    };
    let path = dir.path().join("out");
    let Ok(out) = std::fs::File::create(&path) else {
        return (false, "cannot create output file".into());
    };
    let Ok(err) = out.try_clone() else {
        return (false, "cannot clone output file".into());
    };
    let mut child = match cmd.stdin(Stdio::null()).stdout(out).stderr(err).spawn() {
        Ok(c) => c,
        Err(e) => return (false, format!("spawn: {e}")),
    };
    let deadline = Instant::now() + limit;
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
        }
    };
    (ok, std::fs::read_to_string(&path).unwrap_or_default())
}
