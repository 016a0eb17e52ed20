//! A real Sentinel deployment on loopback, owned by one test: one master, one replica
//! (`--replicaof`), and three sentinels (`redis-server FILE --sentinel`) monitoring the
//! master as `mymaster` with quorum 2, `down-after-milliseconds 1000` and
//! `failover-timeout 3000`. [`SentinelSet::kill_master`] crashes the master (SIGKILL) so
//! the sentinels promote the replica. Every process is killed on drop.

use std::path::Path;
use std::time::{Duration, Instant};

use super::free_port;
use super::process::ChildGuard;
use super::redis::{redis_cli, start_server};

/// The monitored master's name.
pub const MASTER_NAME: &str = "mymaster";

const TOPOLOGY_READY: Duration = Duration::from_secs(20);

struct Proc {
    port: u16,
    process: ChildGuard,
}

/// Master, replica and three sentinels (see the module docs).
pub struct SentinelSet {
    // Killed on drop in this order (fields drop in declaration order), all before the
    // directory goes.
    sentinels: Vec<Proc>,
    replica: Proc,
    master: Proc,
    dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the master, the replica (waits for its link to be up), the three sentinels,
    /// and waits until every sentinel knows the replica and the two other sentinels, so a
    /// failover can happen as soon as the master dies.
    ///
    /// # Panics
    /// If a process does not start or the topology does not settle within 20 s.
    pub fn start() -> SentinelSet {
        let dir = tempfile::tempdir().expect("sentinel tempdir");
        let master = spawn_retrying(dir.path(), "master", |port, _| {
            server_args(port, dir.path(), None)
        });
        let master_port = master.port;
        let replica = spawn_retrying(dir.path(), "replica", |port, _| {
            server_args(port, dir.path(), Some(master_port))
        });
        let mut set = SentinelSet {
            sentinels: Vec::new(),
            replica,
            master,
            dir,
        };
        set.wait_for("the replica's link to the master", || {
            redis_cli(set.replica.port, &["INFO", "replication"])
                .is_some_and(|i| i.contains("master_link_status:up"))
        });
        for i in 0..3 {
            let dir = set.dir.path().to_owned();
            let s = spawn_retrying(&dir, &format!("sentinel{i}"), |port, conf| {
                let text = format!(
                    "port {port}\nbind 127.0.0.1\ndir \"{}\"\n\
                     sentinel resolve-hostnames no\n\
                     sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n",
                    dir.display()
                );
                std::fs::write(conf, text).expect("write sentinel config");
                vec![
                    conf.display().to_string(),
                    "--sentinel".into(),
                    "--port".into(),
                    port.to_string(),
                ]
            });
            set.sentinels.push(s);
        }
        let ports: Vec<u16> = set.sentinels.iter().map(|s| s.port).collect();
        set.wait_for(
            "every sentinel to know the replica and the other sentinels",
            || {
                ports.iter().all(|&p| {
                    let replicas = redis_cli(p, &["SENTINEL", "REPLICAS", MASTER_NAME])
                        .map(|o| count_ip_fields(&o))
                        .unwrap_or(0);
                    let others = redis_cli(p, &["SENTINEL", "SENTINELS", MASTER_NAME])
                        .map(|o| count_ip_fields(&o))
                        .unwrap_or(0);
                    replicas == 1 && others == 2
                })
            },
        );
        set
    }

    fn wait_for(&self, what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + TOPOLOGY_READY;
        while !check() {
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `redis://127.0.0.1:PORT` of each sentinel.
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|s| format!("redis://127.0.0.1:{}", s.port))
            .collect()
    }

    /// The port of the server started as master.
    pub fn master_port(&self) -> u16 {
        self.master.port
    }

    /// The port of the server started as replica.
    pub fn replica_port(&self) -> u16 {
        self.replica.port
    }

    /// The master's port as the first answering sentinel names it.
    pub fn current_master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            let out = redis_cli(
                s.port,
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME],
            )?;
            out.lines().nth(1)?.trim().parse().ok()
        })
    }

    /// Waits (bounded) until the replica has applied everything the master has written:
    /// its `slave_repl_offset` reaches the master's `master_repl_offset`.
    pub fn wait_replicated(&self, limit: Duration) -> bool {
        let field = |info: &str, name: &str| -> Option<u64> {
            info.lines()
                .find_map(|l| l.trim().strip_prefix(name)?.strip_prefix(':')?.parse().ok())
        };
        let Some(target) = redis_cli(self.master.port, &["INFO", "replication"])
            .and_then(|i| field(&i, "master_repl_offset"))
        else {
            return false;
        };
        let deadline = Instant::now() + limit;
        loop {
            let done = redis_cli(self.replica.port, &["INFO", "replication"])
                .and_then(|i| field(&i, "slave_repl_offset"))
                .is_some_and(|o| o >= target);
            if done {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL to the master: a crash, no goodbye to replica or sentinels.
    pub fn kill_master(&mut self) {
        self.master.process.kill();
    }

    /// `ROLE` of a server's first line (`master`, `slave`), if it answers.
    pub fn role(port: u16) -> Option<String> {
        redis_cli(port, &["ROLE"]).and_then(|o| o.lines().next().map(|l| l.trim().to_owned()))
    }

    /// Every process's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::new());
        names.sort();
        for p in names {
            if p.extension().is_some_and(|e| e == "log") {
                out.push_str(&format!(
                    "---- {} ----\n{}",
                    p.display(),
                    std::fs::read_to_string(&p).unwrap_or_default()
                ));
            }
        }
        out
    }
}

/// `redis-server` arguments for a plain (optionally replicating) server.
fn server_args(port: u16, dir: &Path, replica_of: Option<u16>) -> Vec<String> {
    let mut args = vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
        // Master and replica share the directory; a full sync writes and reloads this.
        "--dbfilename".into(),
        format!("dump-{port}.rdb"),
    ];
    if let Some(m) = replica_of {
        args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
    }
    args
}

/// Counts the `ip` fields in `redis-cli`'s flat rendering of `SENTINEL REPLICAS|SENTINELS`.
fn count_ip_fields(out: &str) -> usize {
    out.lines().filter(|l| l.trim() == "ip").count()
}

/// Spawns `redis-server ARGS` on a free port (retrying on others if it does not come up)
/// and waits for `PING`. `args(port, conf_path)` builds the arguments.
fn spawn_retrying(dir: &Path, name: &str, mut args: impl FnMut(u16, &Path) -> Vec<String>) -> Proc {
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let conf = dir.join(format!("{name}.conf"));
        let args = args(port, &conf);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match start_server(name, &args, port, &dir.join(format!("{name}.log"))) {
            Ok(process) => return Proc { port, process },
            Err(e) => last = e,
        }
    }
    panic!("could not start {name}: {last}");
}
