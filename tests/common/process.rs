//! One guard for every child process a test starts — bffgate, redis-server, the OpenID
//! provider, the demo's Node servers and one-shot commands alike:
//!
//! * spawned with stdout and stderr appended to a log file ([`ChildGuard::log`] gives its
//!   text for failure messages);
//! * signalled only by its own PID (with `kill(1)`), and only while it is not reaped (so
//!   never a PID the system may have handed to another process);
//! * stopped gracefully by [`ChildGuard::stop`] (SIGTERM, then SIGKILL once the grace is
//!   over; no grace means SIGKILL at once), and stopped that way when the guard is dropped,
//!   so no child outlives its test.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often the waits look at the child.
const POLL: Duration = Duration::from_millis(20);

/// A child process this test started (see the module docs).
pub struct ChildGuard {
    name: String,
    child: Child,
    log: PathBuf,
    /// How long [`ChildGuard::stop`] waits after SIGTERM before SIGKILL.
    grace: Duration,
    /// The write end of the child's stdin when it is a pipe: never written, held so that a
    /// child watching its stdin sees EOF once the guard, or the whole test process, is gone.
    stdin: Option<ChildStdin>,
}

impl ChildGuard {
    /// Spawns `cmd` with stdin from `/dev/null` and stdout and stderr appended to `log`
    /// (created if missing, so a process started again keeps one log). No grace: see
    /// [`ChildGuard::with_grace`].
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> io::Result<ChildGuard> {
        Self::spawn_with_stdin(name, cmd, log, Stdio::null())
    }

    /// As [`ChildGuard::spawn`], with the child's stdin a pipe the guard holds open.
    pub fn spawn_holding_stdin(
        name: &str,
        cmd: &mut Command,
        log: &Path,
    ) -> io::Result<ChildGuard> {
        Self::spawn_with_stdin(name, cmd, log, Stdio::piped())
    }

    fn spawn_with_stdin(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        stdin: Stdio,
    ) -> io::Result<ChildGuard> {
        let out = OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut child = cmd.stdin(stdin).stdout(out).stderr(err).spawn()?;
        let stdin = child.stdin.take();
        Ok(ChildGuard {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
            grace: Duration::ZERO,
            stdin,
        })
    }

    /// How long [`ChildGuard::stop`] (and drop) gives the process after SIGTERM before
    /// SIGKILL. Zero, the default, kills at once.
    pub fn with_grace(mut self, grace: Duration) -> ChildGuard {
        self.grace = grace;
        self
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status once the process has exited, `None` while it runs.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends `sig` to the process. Refused once it has exited.
    pub fn signal(&mut self, sig: libc::c_int) -> io::Result<()> {
        if !self.is_running() {
            return Err(io::Error::other(format!("{} is not running", self.name)));
        }
        // kill(1) (the crate forbids `unsafe`, so no kill(2) here) with the PID of our own
        // child, which `try_wait` above has not reaped: until we reap it, the PID cannot
        // belong to another process.
        let out = Command::new("kill")
            .arg("-s")
            .arg(sig.to_string())
            .arg("--")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "kill -s {sig} {} ({}): {}",
                self.child.id(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }

    /// Closes the child's stdin when the guard holds it ([`ChildGuard::spawn_holding_stdin`]):
    /// a child reading it sees EOF.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits at most `limit` for the process to exit: its status, or `None` if it still runs.
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => return None,
            }
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within the grace; returns once
    /// it is gone. Nothing happens if it has already exited.
    pub fn stop(&mut self) {
        let exited = !self.grace.is_zero()
            && self.signal(libc::SIGTERM).is_ok()
            && self.wait_timeout(self.grace).is_some();
        if !exited {
            self.kill();
        }
        self.stdin = None;
    }

    /// SIGKILL (a crash) and wait for it. Nothing happens if it has already exited.
    pub fn kill(&mut self) {
        // `Child::kill` sends nothing to a child already reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stdin = None;
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion, for at most `limit` (killed then): its exit status (`None` if
/// it had to be killed) and its output, stdout and stderr together.
pub fn run_bounded(
    name: &str,
    cmd: &mut Command,
    limit: Duration,
) -> io::Result<(Option<ExitStatus>, String)> {
    let dir = tempfile::tempdir()?;
    let mut child = ChildGuard::spawn(name, cmd, &dir.path().join("output.log"))?;
    let status = child.wait_timeout(limit);
    child.kill();
    Ok((status, child.log()))
}
