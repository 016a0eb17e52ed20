//! The load pipeline: read → expand `${ENV}` → deserialize (unknown keys refused) → build
//! each section → return the [`Config`] or every problem found.
//!
//! [`Problems`] is the collector every section checker writes to: a checker never stops at
//! the first mistake, it records it under its key path and carries on with a placeholder,
//! so an operator sees the whole list at once. Any problem means the built value is thrown
//! away, so placeholders never reach the running process.

use super::file::FileConfig;
use super::{admin, agent, cookie, defaults, oidc, otel, resolve, routes, server, session};
use super::{Config, ConfigError, ConfigProblem};
use serde_yaml::Value;
use std::path::Path;

/// Problems gathered while checking one file, in the order they were found.
pub(super) struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records that `key` (a dotted path such as `routes[1].name`) is wrong for `reason`.
    pub(super) fn add(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            reason: reason.into(),
        });
    }
}

/// Reads, expands, parses and validates a configuration file.
///
/// # Errors
/// A [`ConfigError`] listing every problem, each with its key path.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::single(path.to_path_buf(), "", format!("cannot read file: {e}"))
    })?;
    parse(path, &text, &|name| std::env::var(name).ok())
}

/// Parses configuration text as if read from `path`, with `env` answering `${NAME}`.
///
/// # Errors
/// As [`load`].
pub fn parse(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let fail = |problems: Vec<ConfigProblem>| ConfigError {
        file: path.to_path_buf(),
        problems,
    };
    let mut value: Value = serde_yaml::from_str(text)
        .map_err(|e| ConfigError::single(path.to_path_buf(), "", format!("not valid YAML: {e}")))?;
    let mut problems = Problems(Vec::new());
    expand_env(&mut value, String::new(), env, &mut problems);
    if !problems.0.is_empty() {
        return Err(fail(problems.0));
    }
    let parsed: FileConfig = serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        ConfigError::single(path.to_path_buf(), key, e.inner().to_string())
    })?;
    let run_dir =
        env(defaults::RUNTIME_DIRECTORY_VAR).unwrap_or_else(|| defaults::RUNTIME_DIRECTORY.into());
    let config = build(path, parsed, &run_dir, &mut problems);
    if problems.0.is_empty() {
        Ok(config)
    } else {
        Err(fail(problems.0))
    }
}

/// Replaces `${NAME}` in every string scalar with the variable's value.
fn expand_env(
    value: &mut Value,
    key: String,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) {
    match value {
        Value::String(s) if s.contains("${") => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else {
                    problems.add(&key, "unclosed `${` in value");
                    return;
                };
                let name = &after[..end];
                match env(name) {
                    Some(v) => out.push_str(&v),
                    None => problems.add(&key, format!("environment variable `{name}` is not set")),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_env(item, format!("{key}[{i}]"), env, problems);
            }
        }
        Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let name = match k {
                    Value::String(s) => s.clone(),
                    // A non-string key (`1:`, `? [a, b]`) only labels the key path of a
                    // problem found below it; the file is refused at deserialization anyway
                    // (every key of the schema is a string). Printing a value that was just
                    // parsed does not fail; were it to, the label would be empty and the
                    // problem would still be reported.
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                let child = if key.is_empty() {
                    name
                } else {
                    format!("{key}.{name}")
                };
                expand_env(v, child, env, problems);
            }
        }
        _ => {}
    }
}

/// Builds every section in file order, so problems come out in the order of the file.
fn build(path: &Path, f: FileConfig, run_dir: &str, p: &mut Problems) -> Config {
    let base_dir = resolve::base_dir(path);
    let (listen, tls) = server::listeners(&f.listen, &base_dir, p);
    let metrics = server::metrics(f.metrics.as_ref(), p);
    let server = server::settings(f.server, &base_dir, run_dir, p);
    let agent = agent::build(f.agent, p);
    let oidc = f.oidc.map(|o| oidc::build(o, &base_dir, &agent, p));
    let cookie = cookie::build(f.cookie, &base_dir, p);
    let session = session::build(f.session, &base_dir, p);
    let routes = routes::build(f.routes, &agent, oidc.is_some(), p);
    let otel = f.otel.and_then(|o| otel::build(o, p));
    let admin = f
        .admin
        .and_then(|a| admin::build(a, &listen, metrics, &base_dir, p));
    Config {
        source: path.to_path_buf(),
        listen,
        tls,
        metrics,
        server,
        oidc,
        agent,
        cookie,
        session,
        access_log: f.access_log,
        access_log_user: log_user(&f.access_log_user, p),
        routes,
        otel,
        admin,
    }
}

/// Checks `access_log_user`.
fn log_user(v: &str, p: &mut Problems) -> super::LogUser {
    match v {
        "hash" => super::LogUser::Hash,
        "sub" => super::LogUser::Sub,
        "none" => super::LogUser::None,
        other => {
            p.add(
                "access_log_user",
                format!("`{other}` is not one of hash, sub, none"),
            );
            super::LogUser::Hash
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{base, problems};

    #[test]
    fn unknown_key_names_its_path() {
        let text = base().replace("cookie: {", "cookie: {colour: red, ");
        let p = problems(&text);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].key, "cookie.colour");
        assert!(p[0].reason.contains("colour"), "{:?}", p[0]);
    }
}
