//! A real Redis Cluster on loopback, owned by one test: `n` masters (and, with
//! [`RedisCluster::start_with_replicas`], one replica each, for failovers), each a
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
    /// `None` once killed.
    server: Option<ChildGuard>,
}

/// A running Redis Cluster (see the module docs).
pub struct RedisCluster {
    /// First, so the servers are killed before their directory goes.
    nodes: Vec<Node>,
    /// How many masters it was created with.
    masters: usize,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` cluster-enabled servers, creates the cluster over them (slots split
    /// evenly, no replicas) and waits until every node reports `cluster_state:ok`.
    ///
    /// # Panics
    /// If a server does not start or the cluster does not form within 20 s (with the logs).
    pub fn start(masters: usize) -> RedisCluster {
        Self::start_nodes(masters, 0)
    }

    /// `masters` masters with one replica each; a master not heard from for 2 s is failed
    /// over ([`Self::master_ports`] tells which nodes are masters).
    pub fn start_with_replicas(masters: usize) -> RedisCluster {
        Self::start_nodes(masters, 1)
    }

    fn start_nodes(masters: usize, replicas: usize) -> RedisCluster {
        let dir = tempfile::tempdir().expect("cluster tempdir");
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            masters,
            dir,
        };
        for _ in 0..masters * (1 + replicas) {
            // With replicas, a master not heard from for 2 s is failed over.
            let node_timeout = (replicas > 0).then_some("2000");
            let node = start_node(cluster.dir.path(), node_timeout)
                .unwrap_or_else(|e| panic!("could not start a cluster node: {e}"));
            cluster.nodes.push(node);
        }
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let mut create = Command::new("redis-cli");
        let replicas_arg = replicas.to_string();
        create.arg("--cluster").arg("create").args(&addrs).args([
            "--cluster-replicas",
            &replicas_arg,
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
    /// The port of the master serving `key` now.
    pub fn master_of(&self, key: &str) -> u16 {
        let any = self
            .nodes
            .iter()
            .find(|n| n.server.is_some())
            .expect("a live node");
        let slot: u16 = redis_cli(any.port, &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        self.master_of_slot(slot)
    }

    /// The port of the master serving `slot`, as a live node's `CLUSTER SHARDS`-free view
    /// (`CLUSTER SLOTS`) says.
    fn master_of_slot(&self, slot: u16) -> u16 {
        let any = self
            .nodes
            .iter()
            .find(|n| n.server.is_some())
            .expect("a live node");
        let slots = redis_cli(any.port, &["CLUSTER", "SLOTS"]).expect("CLUSTER SLOTS");
        // redis-cli prints the nested reply one value per line: start, end, ip, port, id, …
        let lines: Vec<&str> = slots.lines().map(str::trim).collect();
        for w in lines.windows(4) {
            if let (Ok(start), Ok(end), Ok(port)) = (
                w[0].parse::<u16>(),
                w[1].parse::<u16>(),
                w[3].parse::<u16>(),
            ) {
                if start <= slot && slot <= end && w[2] == "127.0.0.1" {
                    return port;
                }
            }
        }
        panic!("no master for slot {slot} in:\n{slots}");
    }

    /// Moves `key`'s slot, with its keys, from its master to the master at `to`.
    pub fn move_slot_of(&self, key: &str, to: u16) {
        let from = self.master_of(key);
        assert_ne!(from, to, "the slot is already there");
        let cli = |port: u16, args: &[&str]| {
            redis_cli(port, args).unwrap_or_else(|| panic!("redis-cli {args:?} on {port}"))
        };
        let slot = cli(from, &["CLUSTER", "KEYSLOT", key]).trim().to_owned();
        let id_of = |port: u16| cli(port, &["CLUSTER", "MYID"]).trim().to_owned();
        let (from_id, to_id) = (id_of(from), id_of(to));
        cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]);
        cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]);
        let keys = cli(from, &["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]);
        let to_port = to.to_string();
        for k in keys.lines().map(str::trim).filter(|k| !k.is_empty()) {
            cli(from, &["MIGRATE", "127.0.0.1", &to_port, k, "0", "5000"]);
        }
        for n in self.nodes.iter().filter(|n| n.server.is_some()) {
            cli(n.port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]);
        }
    }

    /// Kills the node at `port` (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        node.server = None;
    }

    /// Waits until a replica took over from the killed master at `dead` and every live
    /// node reports `cluster_state:ok`.
    pub fn wait_failover(&self, dead: u16, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let masters = self.master_ports();
            if masters.len() == self.masters && !masters.contains(&dead) {
                return self.wait_ok(deadline.saturating_duration_since(Instant::now()));
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the replicas of the master at `port` have everything it has now.
    pub fn wait_replicated(&self, port: u16, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let field = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
        };
        let Some(want) = redis_cli(port, &["INFO", "replication"])
            .and_then(|i| field(&i, "master_repl_offset:"))
        else {
            return false;
        };
        loop {
            let info = redis_cli(port, &["INFO", "replication"]).unwrap_or_default();
            // slave0:ip=127.0.0.1,port=…,state=online,offset=…,lag=0
            let caught_up = info.lines().any(|l| {
                l.starts_with("slave")
                    && l.contains("state=online")
                    && l.split(',')
                        .find_map(|kv| kv.strip_prefix("offset="))
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|o| o >= want)
            });
            if caught_up {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every live node reports `cluster_state:ok`.
    pub fn wait_ok(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let ok = self.nodes.iter().filter(|n| n.server.is_some()).all(|n| {
                redis_cli(n.port, &["CLUSTER", "INFO"])
                    .is_some_and(|info| info.contains("cluster_state:ok"))
            });
            if ok {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The masters' ports.
    pub fn master_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.server.is_some())
            .filter(|n| {
                redis_cli(n.port, &["ROLE"]).is_some_and(|r| r.trim_start().starts_with("master"))
            })
            .map(|n| n.port)
            .collect()
    }

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

fn start_node(dir: &Path, node_timeout: Option<&str>) -> Result<Node, String> {
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
        // Nodes share the directory: a replica's full sync writes and reloads this file,
        // and three replicas syncing at once must not load each other's masters' data.
        let rdb_file = format!("dump-{port}.rdb");
        let mut args = vec![
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
            "--dbfilename",
            &rdb_file,
        ];
        if let Some(t) = node_timeout {
            // A replica may take over however long ago it last heard from its master.
            args.extend([
                "--cluster-node-timeout",
                t,
                "--cluster-replica-validity-factor",
                "0",
            ]);
        }
        let log = dir.join(format!("redis-{port}.log"));
        match start_server("cluster node", &args, port, &log) {
            Ok(server) => {
                return Ok(Node {
                    port,
                    server: Some(server),
                })
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}
