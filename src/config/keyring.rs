//! Key rings (`cookie.keys`, `session.at_rest_keys`): a list of `{id, secret}` whose first
//! key seals and whose others still open what they sealed.

use super::file::KeyFile;
use super::load::Problems;
use super::{resolve, RingKey};
use std::path::Path;

/// Checks a key ring written under `key` and reads its secrets: at least one key, ids of 1
/// to 32 of `A-Za-z0-9_-`, no id twice, every secret 32 bytes.
pub(super) fn build(
    files: &[KeyFile],
    key: &str,
    base_dir: &Path,
    p: &mut Problems,
) -> Vec<RingKey> {
    if files.is_empty() {
        p.add(key, "at least one key is needed");
    }
    let mut keys: Vec<RingKey> = Vec::new();
    for (i, k) in files.iter().enumerate() {
        if !valid_id(&k.id) {
            p.add(
                format!("{key}[{i}].id"),
                "must be 1 to 32 of A-Z a-z 0-9 _ -",
            );
        } else if keys.iter().any(|o| o.id == k.id) {
            p.add(
                format!("{key}[{i}].id"),
                format!("`{}` appears twice", k.id),
            );
        }
        let secret = resolve::secret_key(&k.secret, &format!("{key}[{i}].secret"), base_dir, p);
        keys.push(RingKey {
            id: k.id.clone(),
            secret,
        });
    }
    keys
}

/// Whether `id` may name a key: 1 to 32 of `A-Za-z0-9_-` (it is written into what the key
/// seals, and into metric labels).
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
