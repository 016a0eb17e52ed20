//! Real `redis-server` processes on loopback ports: [`RedisProcess`] (a standalone server
//! owned by one test), [`start_server`] (what Cluster and Sentinel nodes start with too),
//! and [`ping`] / [`redis_cli`] to look at a running one.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use super::free_port;
use super::process::{run_bounded, ChildGuard};

const REDIS_BIN: &str = "redis-server";
const READY_DEADLINE: Duration = Duration::from_secs(5);

/// A `redis-server` child process (no persistence); killed on drop.
pub struct RedisProcess {
    port: u16,
    /// First, so the server is killed before its directory goes.
    server: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl RedisProcess {
    /// Starts redis-server on a free loopback port and waits until it answers `PING`.
    /// Retries on another port if the chosen one was taken meanwhile.
    pub fn start() -> RedisProcess {
        let mut redis = RedisProcess {
            port: 0,
            server: None,
            dir: tempfile::tempdir().expect("redis tempdir"),
        };
        let mut last_err = String::new();
        for _ in 0..5 {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start redis-server: {last_err}");
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (kept across `restart`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL) and waits for it to exit: from now on connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut server) = self.server.take() {
            server.kill();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            match self.spawn() {
                Ok(()) => return,
                // The port may take a moment to be bindable again.
                Err(e) if Instant::now() > deadline => panic!("redis restart failed: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path().display().to_string();
        let port = self.port.to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
        ];
        let log = self.dir.path().join("redis.log");
        self.server = Some(start_server(REDIS_BIN, &args, self.port, &log)?);
        Ok(())
    }
}

/// Starts `redis-server ARGS` (which must make it listen on `127.0.0.1:port`) with its
/// output in `log`, and waits until it answers `PING`. The error says why it did not
/// come up (its log if it exited); the process is gone then.
pub fn start_server(
    name: &str,
    args: &[&str],
    port: u16,
    log: &Path,
) -> Result<ChildGuard, String> {
    let mut cmd = Command::new(REDIS_BIN);
    cmd.args(args);
    let mut server =
        ChildGuard::spawn(name, &mut cmd, log).map_err(|e| format!("spawn {REDIS_BIN}: {e}"))?;
    let deadline = Instant::now() + READY_DEADLINE;
    loop {
        if let Some(status) = server.exit_status() {
            return Err(format!("{name} exited ({status}): {}", server.log()));
        }
        if ping(port) {
            return Ok(server);
        }
        if Instant::now() > deadline {
            return Err(format!("{name} on port {port} never answered PING"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// True if a Redis server on `127.0.0.1:port` answers `+PONG` to an inline `PING`.
pub fn ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
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
    match run_bounded("redis-cli", &mut cmd, Duration::from_secs(5)) {
        Ok((Some(status), out)) if status.success() && !out.contains("Could not connect") => {
            Some(out)
        }
        _ => None,
    }
}
