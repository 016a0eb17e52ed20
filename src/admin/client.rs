//! `bffgate admin …`: the command-line client of the admin API.
//!
//! It finds the API at `--url`, else at the `admin.addr` of the config given with
//! `-c`/`BFFGATE_CONFIG`, else at [`crate::config::ADMIN_CLI_URL`]; and its token in
//! `--token-file`, else `BFFGATE_ADMIN_TOKEN`, else that config's `admin.token`. It prints
//! the API's JSON answer on stdout. Exit codes: 0 done, 1 the API refused the call (its
//! code and message on stderr), 2 bad usage or configuration, 3 the API could not be reached
//! or answered something that is not the API's JSON.

use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The environment variable holding the admin token for the client.
pub const TOKEN_ENV: &str = "BFFGATE_ADMIN_TOKEN";

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `bffgate admin`: talk to a running bffgate's admin API.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: AdminAction,
    /// The admin API's base URL (default: the config's `admin.addr` when `-c` is given,
    /// else http://127.0.0.1:9191).
    #[arg(long, global = true)]
    pub url: Option<url::Url>,
    /// A file holding the admin token (default: `BFFGATE_ADMIN_TOKEN`, else the config's
    /// `admin.token` when `-c` is given).
    #[arg(long, global = true)]
    pub token_file: Option<PathBuf>,
}

/// The admin operations.
#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// List a user's live sessions (handle, created, last seen, client, user agent, expiry).
    List {
        /// The user (`sub` claim).
        #[arg(long)]
        sub: String,
    },
    /// Revoke sessions: one by handle, all of a user's, or all of a provider session's.
    Revoke(RevokeArgs),
}

/// Which sessions to revoke: exactly one of the three.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RevokeArgs {
    /// Every session of this user (`sub` claim).
    #[arg(long)]
    pub sub: Option<String>,
    /// Every session of this provider session (OIDC `sid`).
    #[arg(long)]
    pub sid: Option<String>,
    /// The one session with this handle (from `bffgate admin list`).
    #[arg(long)]
    pub session: Option<String>,
}

/// Why a call did not succeed.
enum Failure {
    /// Bad usage or configuration (exit 2).
    Usage(String),
    /// The API refused the call (exit 1).
    Refused(u16, String, String),
    /// The API could not be reached or did not answer JSON (exit 3).
    Unreachable(String),
}

/// Runs `bffgate admin …`. `config` is the config file when one was named explicitly.
pub fn run(args: &AdminArgs, config: Option<&Path>) -> ExitCode {
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Unreachable(format!("cannot start the runtime: {e}")))
        .and_then(|rt| rt.block_on(call(args, config)));
    match outcome {
        Ok(answer) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string())
            );
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(why)) => {
            eprintln!("bffgate admin: {why}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(status, code, message)) => {
            eprintln!("bffgate admin: refused ({status} {code}): {message}");
            ExitCode::from(1)
        }
        Err(Failure::Unreachable(why)) => {
            eprintln!("bffgate admin: {why}");
            ExitCode::from(3)
        }
    }
}

/// The base URL and token to use.
fn target(args: &AdminArgs, config: Option<&Path>) -> Result<(url::Url, String), Failure> {
    let loaded = match config {
        Some(path) => Some(crate::config::load(path).map_err(|e| Failure::Usage(e.to_string()))?),
        None => None,
    };
    let admin = loaded.as_ref().and_then(|c| c.admin.as_ref());
    let url = match (&args.url, admin) {
        (Some(url), _) => url.clone(),
        (None, Some(a)) => {
            let mut addr = a.addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            url::Url::parse(&format!("http://{addr}"))
                .map_err(|e| Failure::Usage(format!("admin.addr: {e}")))?
        }
        (None, None) if loaded.is_some() => {
            return Err(Failure::Usage(
                "the config has no `admin` section; pass --url".into(),
            ))
        }
        (None, None) => url::Url::parse(crate::config::ADMIN_CLI_URL)
            .map_err(|e| Failure::Usage(e.to_string()))?,
    };
    let token = match (&args.token_file, std::env::var(TOKEN_ENV).ok(), admin) {
        (Some(file), _, _) => std::fs::read_to_string(file)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", file.display())))?
            .trim()
            .to_string(),
        (None, Some(t), _) => t.trim().to_string(),
        (None, None, Some(a)) => a.token.clone(),
        (None, None, None) => {
            return Err(Failure::Usage(format!(
                "no admin token: pass --token-file, set {TOKEN_ENV}, or name the config with -c"
            )))
        }
    };
    if token.is_empty() {
        return Err(Failure::Usage("the admin token is empty".into()));
    }
    Ok((url, token))
}

/// The path and JSON body of an action.
fn request(action: &AdminAction) -> (&'static str, serde_json::Value) {
    match action {
        AdminAction::List { sub } => ("/admin/v1/sessions/list", serde_json::json!({ "sub": sub })),
        AdminAction::Revoke(r) => {
            let body = match (&r.sub, &r.sid, &r.session) {
                (Some(sub), _, _) => serde_json::json!({ "sub": sub }),
                (None, Some(sid), _) => serde_json::json!({ "sid": sid }),
                (None, None, handle) => serde_json::json!({ "handle": handle }),
            };
            ("/admin/v1/sessions/revoke", body)
        }
    }
}

async fn call(args: &AdminArgs, config: Option<&Path>) -> Result<serde_json::Value, Failure> {
    let (base, token) = target(args, config)?;
    let (path, body) = request(&args.action);
    let url = base
        .join(path)
        .map_err(|e| Failure::Usage(format!("--url: {e}")))?;
    let client = reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .build()
        .map_err(|e| Failure::Unreachable(format!("cannot build the HTTP client: {e}")))?;
    let resp = client
        .post(url.clone())
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| Failure::Unreachable(format!("cannot reach the admin API at {url}: {e}")))?;
    let status = resp.status().as_u16();
    let answer: serde_json::Value = resp
        .json()
        .await
        .map_err(|e| Failure::Unreachable(format!("{url} answered {status} without JSON: {e}")))?;
    if status == 200 {
        return Ok(answer);
    }
    let text = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    Err(Failure::Refused(status, text("code"), text("message")))
}
