//! A real Redis Cluster on loopback, owned by one test: `n` masters (no replicas), each a
//! `redis-server --cluster-enabled yes` child with its own nodes file in a tempdir, joined
//! by `redis-cli --cluster create`. Every process is killed (SIGKILL) on drop.
//!
//! The cluster bus port is chosen explicitly (`--cluster-port`), because the default
//! (`port + 10000`) overflows for ephemeral ports above 55535.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::free_port;
use super::process::{run_bounded, ChildGuard};
use super::redis::{redis_cli, start_server};

const CLUSTER_READY: Duration = Duration::from_secs(20);

/// One `redis-server` child.
struct Node {
    port: u16,
    _server: ChildGuard,
}

/// A running Redis Cluster (see the module docs).
pub struct RedisCluster {
    /// First, so the servers are killed before their directory goes.
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
        let (status, out) = run_bounded(
            "redis-cli --cluster create",
            &mut create,
            Duration::from_secs(20),
        )
        .expect("spawn redis-cli");
        assert!(
            status.is_some_and(|s| s.success()),
            "redis-cli --cluster create failed:\n{out}"
        );
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
        let (port_arg, bus_arg) = (port.to_string(), bus.to_string());
        let nodes_file = dir.join(format!("nodes-{port}.conf")).display().to_string();
        let dir_arg = dir.display().to_string();
        let args = [
            "--port",
            &port_arg,
            "--bind",
            "127.0.0.1",
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            &nodes_file,
            "--cluster-port",
            &bus_arg,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir_arg,
        ];
        let log = dir.join(format!("redis-{port}.log"));
        match start_server("cluster node", &args, port, &log) {
            Ok(server) => {
                return Ok(Node {
                    port,
                    _server: server,
                })
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
