//! Configuration errors: a list of problems, each naming its key.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, e.g. `routes[1].name` (empty for the whole file).
    pub key: String,
    /// What is wrong, for a human.
    pub reason: String,
}

/// Why a configuration was refused. Displays one `FILE: KEY: REASON` line per problem.
#[derive(Debug)]
pub struct ConfigError {
    /// The file that was read.
    pub file: PathBuf,
    /// Every problem found (never empty).
    pub problems: Vec<ConfigProblem>,
}

impl ConfigError {
    pub(crate) fn single(file: PathBuf, key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            file,
            problems: vec![ConfigProblem {
                key: key.into(),
                reason: reason.into(),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.reason)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), p.key, p.reason)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}
