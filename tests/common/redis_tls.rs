//! A `redis-server` speaking TLS (Debian's build has it), with certificates made for the
//! test by [`pki::generate`]: a plain port for the harness to look at it, a TLS port for
//! bffgate (`rediss://`).

use std::path::PathBuf;

use super::free_port;
use super::pki::{self, Pki};
use super::process::ChildGuard;
use super::redis::start_server;

/// A TLS `redis-server`; killed on drop.
pub struct TlsRedis {
    /// The plain-text port (the harness's `PING` and `redis-cli`).
    pub port: u16,
    /// The TLS port.
    pub tls_port: u16,
    /// The test CA and the server's certificate.
    pub pki: Pki,
    /// First, so the server is killed before its directory goes.
    _server: ChildGuard,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    /// Starts one on free loopback ports.
    pub fn start() -> TlsRedis {
        let dir = tempfile::tempdir().expect("redis tempdir");
        let pki = pki::generate(dir.path());
        let mut last_err = String::new();
        for _ in 0..5 {
            let (port, tls_port) = (free_port(), free_port());
            let (p, t, d) = (
                port.to_string(),
                tls_port.to_string(),
                dir.path().display().to_string(),
            );
            let (cert, key, ca) = (
                pki.cert_file.display().to_string(),
                pki.key_file.display().to_string(),
                pki.ca_file.display().to_string(),
            );
            let args = [
                "--port",
                &p,
                "--tls-port",
                &t,
                "--bind",
                "127.0.0.1",
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &d,
            ];
            let log = dir.path().join("redis.log");
            match start_server("redis-tls", &args, port, &log) {
                Ok(server) => {
                    return TlsRedis {
                        port,
                        tls_port,
                        pki,
                        _server: server,
                        _dir: dir,
                    }
                }
                Err(e) => last_err = e,
            }
        }
        panic!("could not start a TLS redis-server: {last_err}");
    }

    /// `rediss://127.0.0.1:TLS_PORT`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port)
    }

    /// The CA file clients must trust.
    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca_file.clone()
    }
}
