//! The checks that touch the outside world: reading files named by the config (secrets,
//! certificates, CA bundles). Upstream host names are not resolved at load: see
//! `service/dns.rs`.
//!
//! Relative paths are taken from the config file's folder. Everything that can fail here
//! because of what the file says becomes a problem under the key that named the file;
//! nothing is skipped silently.

use super::load::Problems;
use super::{values, SecretKey};
use std::path::{Path, PathBuf};

/// The folder relative paths in the config are resolved against: the config file's.
pub(super) fn base_dir(config: &Path) -> PathBuf {
    // `parent()` is `None` only for `/` or an empty path, neither of which names a file
    // that could have been read; an empty base resolves relative paths against the working
    // directory, as a bare `bff.yaml` (parent `""`) does.
    config.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `file` resolved against `base_dir`, checked readable now so a bad path is refused at
/// load rather than when a listener or client first needs it.
pub(super) fn readable_file(file: &str, base_dir: &Path, key: &str, p: &mut Problems) -> String {
    let path = base_dir.join(file).to_string_lossy().into_owned();
    if let Err(e) = std::fs::read(&path) {
        p.add(key, format!("cannot read {path}: {e}"));
    }
    path
}

/// A 32-byte key from a literal or a `file:/path` secret (`${ENV}` is already expanded),
/// base64 decoded by [`values::key_bytes`].
pub(super) fn secret_key(raw: &str, key: &str, base_dir: &Path, p: &mut Problems) -> SecretKey {
    let text = if let Some(file) = raw.strip_prefix("file:") {
        let file_path = base_dir.join(file);
        match std::fs::read_to_string(&file_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) => {
                p.add(
                    key,
                    format!("cannot read secret file {}: {e}", file_path.display()),
                );
                return values::placeholder_key();
            }
        }
    } else {
        raw.trim().to_string()
    };
    values::key_bytes(&text, key, p)
}

/// A text secret (the OIDC client secret): the literal as written, or the trimmed contents
/// of a `file:/path`. An unreadable file yields an empty secret after recording the problem.
pub(super) fn text_secret(raw: &str, key: &str, base_dir: &Path, p: &mut Problems) -> String {
    let Some(file) = raw.strip_prefix("file:") else {
        return raw.to_string();
    };
    match std::fs::read_to_string(base_dir.join(file)) {
        Ok(t) => t.trim().to_string(),
        Err(e) => {
            p.add(key, format!("cannot read secret file {file}: {e}"));
            String::new()
        }
    }
}
