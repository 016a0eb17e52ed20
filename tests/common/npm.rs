//! The Node packages of the end-to-end tests (`tests/provider`, `tests/browser`): `npm ci`
//! on first use, at most one at a time across test processes.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::process::ChildGuard;

/// Whether `dir/node_modules` holds the version of `package` that `dir/package.json` pins.
pub fn installed(dir: &Path, package: &str) -> bool {
    let read = |p: &Path| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
    };
    let wanted = read(&dir.join("package.json"))
        .and_then(|v| v["dependencies"][package].as_str().map(str::to_owned));
    let have = read(&dir.join("node_modules").join(package).join("package.json"))
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    wanted.is_some() && wanted == have
}

/// `npm ci` in `dir` (with `env` set) unless [`installed`]; serialised across processes by
/// an exclusive lock on `$TMPDIR/bffgate-<dir name>-npm-ci.lock`.
pub fn ensure_installed(dir: &Path, package: &str, env: &[(&str, &str)]) -> Result<(), String> {
    if installed(dir, package) {
        return Ok(());
    }
    let name = dir
        .file_name()
        .map_or_else(|| "packages".into(), |n| n.to_string_lossy().into_owned());
    let lock_path = std::env::temp_dir().join(format!("bffgate-{name}-npm-ci.lock"));
    let lock = ExclusiveLock::acquire(&lock_path)?;
    if installed(dir, package) {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(dir)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run npm ci in {}: {e} (is npm installed?)", dir.display()))?;
    drop(lock);
    if !out.status.success() {
        return Err(format!(
            "npm ci in {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// An exclusive `flock` on a file for as long as it lives, held by a `flock(1)` child (the
/// crate forbids `unsafe`, so no flock(2) here) running `cat`: the lock goes when `cat`
/// sees EOF on its stdin, which the guard holds (so also when this process dies).
struct ExclusiveLock {
    holder: ChildGuard,
    _dir: tempfile::TempDir,
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        self.holder.close_stdin();
        // Normally gone at once; if not, dropping the guard kills it.
        let _ = self.holder.wait_timeout(Duration::from_secs(5));
    }
}

impl ExclusiveLock {
    /// Waits (without a bound, like flock(2)) until the lock on `path` is ours.
    fn acquire(path: &Path) -> Result<ExclusiveLock, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("lock tempdir: {e}"))?;
        let mut cmd = Command::new("flock");
        cmd.arg("--exclusive")
            .arg(path)
            .args(["sh", "-c", "echo locked && exec cat"]);
        let mut holder =
            ChildGuard::spawn_holding_stdin("flock", &mut cmd, &dir.path().join("flock.log"))
                .map_err(|e| format!("run flock {}: {e}", path.display()))?;
        loop {
            if holder.log().contains("locked") {
                return Ok(ExclusiveLock { holder, _dir: dir });
            }
            if let Some(status) = holder.exit_status() {
                return Err(format!(
                    "flock {} exited ({status}): {}",
                    path.display(),
                    holder.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
