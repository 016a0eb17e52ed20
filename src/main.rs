//! The `bffgate` command: parse flags, load and validate the config, run the server; or,
//! with `admin …`, call a running server's admin API.

use bffgate::app::{self, RunOptions};
use bffgate::config;
use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the proxy allocates and frees many small buffers per request, and glibc's
/// allocator showed as ~15% of CPU in profiles of the authenticated path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// bffgate: an OAuth token-handler (backend-for-frontend) edge proxy.
///
/// Browsers hold only a sealed, HttpOnly session cookie; bffgate keeps the tokens and
/// forwards API calls upstream with `Authorization: Bearer`.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Configuration file (YAML).
    #[arg(
        short,
        long,
        env = "BFFGATE_CONFIG",
        default_value = "conf/bff.yaml",
        global = true
    )]
    config: PathBuf,

    /// Validate the configuration, print a summary, and exit (0 valid, 2 invalid). Then
    /// look up each upstream host name once and report it (a name that does not resolve is
    /// a warning, not a config error: bffgate resolves in the background).
    #[arg(long)]
    check: bool,

    /// With --check: skip the upstream name lookups (no network; e.g. a cluster's config
    /// checked outside the cluster).
    #[arg(long, requires = "check")]
    no_resolve: bool,

    /// Listen address(es), replacing the file's `listen` (comma-separated ip:port).
    #[arg(long, env = "BFFGATE_LISTEN", value_delimiter = ',')]
    listen: Vec<std::net::SocketAddr>,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives.
    #[arg(long, env = "BFFGATE_LOG", default_value = "info")]
    log: String,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "BFFGATE_LOG_JSON")]
    log_json: bool,

    /// Take the listening sockets over from a running bffgate (graceful upgrade).
    #[arg(short, long)]
    upgrade: bool,

    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,

    /// Print a fresh random 32-byte key (base64) for cookie.keys, at_rest_key or
    /// admin.token, and exit.
    #[arg(long)]
    gen_key: bool,

    /// A command instead of running the proxy.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Commands besides running the proxy.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Call a running bffgate's admin API (list and revoke sessions).
    Admin(bffgate::admin::client::AdminArgs),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(Command::Admin(args)) = &cli.command {
        // The config's admin section is a default only when the config was named.
        let named = matches!(
            matches.value_source("config"),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        return bffgate::admin::client::run(args, named.then_some(cli.config.as_path()));
    }
    if cli.gen_key {
        use base64::Engine;
        let key: [u8; 32] = bffgate::random::os_bytes();
        println!("{}", base64::engine::general_purpose::STANDARD.encode(key));
        return ExitCode::SUCCESS;
    }
    let mut config = match config::load(&cli.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "bffgate: configuration refused ({} problem(s))",
                e.problems.len()
            );
            return ExitCode::from(2);
        }
    };
    if !cli.listen.is_empty() {
        config.listen = cli.listen.clone();
    }
    if cli.check {
        println!("{}: ok: {}", cli.config.display(), app::describe(&config));
        if !cli.no_resolve {
            report_resolution(&config);
        }
        return ExitCode::SUCCESS;
    }
    // After the config, which says whether traces are exported (loading logs nothing: its
    // problems are printed above).
    bffgate::logging::init(&cli.log, cli.log_json, config.otel.as_ref());
    if !config.cookie.secure {
        tracing::warn!("cookie.secure is false: the session cookie travels over plain HTTP; use this only for local development");
    }
    let opts = RunOptions {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        listen_override: cli.listen.clone(),
    };
    let server = match app::build_server(&config, &opts) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bffgate: {e}");
            return ExitCode::from(1);
        }
    };
    tracing::info!(
        "bffgate {} starting: {}",
        env!("CARGO_PKG_VERSION"),
        app::describe(&config)
    );
    server.run_forever()
}

/// `--check`'s second section: each upstream host name looked up once, printed with its
/// addresses or as a warning saying why it does not resolve (the config stays valid).
fn report_resolution(config: &config::Config) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: upstream names not looked up: {e}");
            return;
        }
    };
    for (name, answer) in runtime.block_on(bffgate::service::check_names(config)) {
        match answer {
            Ok(addrs) => {
                let addrs: Vec<String> = addrs.iter().map(ToString::to_string).collect();
                println!("resolve {name}: {}", addrs.join(", "));
            }
            Err(why) => eprintln!(
                "warning: resolve {name}: {why} (bffgate keeps trying in the background; its routes answer 502 until it resolves)"
            ),
        }
    }
}
