//! `arbiter gateway`: the MCP gateway (see docs/gateway.md). `run` serves agents over stdio or
//! Streamable HTTP; `token` issues an agent's bearer credential.

use crate::command::serve::LogPaths;
use crate::command::unix_now;
use anyhow::{anyhow, bail, Context, Result};
use arbiter_gateway::{Decider, Gateway, GatewayConfig, RemoteArbiter};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Redaction, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(crate) struct GatewayArgs {
    #[command(subcommand)]
    command: GatewayCommand,
}

#[derive(Debug, clap::Subcommand)]
enum GatewayCommand {
    /// Serve agents: over stdio as the configured `stdio_agent`, or over Streamable HTTP.
    Run(RunArgs),
    /// Issue a bearer credential for an agent: prints it once, and the line for the config.
    Token(TokenArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The gateway's configuration (JSON; see docs/gateway.md).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// Serve one session on stdin and stdout, as the configuration's `stdio_agent`.
    #[arg(long, conflicts_with = "listen")]
    stdio: bool,
    /// Serve Streamable HTTP at `/mcp` on this address. Loopback by default.
    #[arg(long, default_value = "127.0.0.1:8282")]
    listen: SocketAddr,
    /// Decide through a running `arbiter serve` at this URL (with an enforcement_point key in
    /// ARBITER_API_KEY).
    #[arg(long, env = "ARBITER_SERVER", conflicts_with = "data_dir")]
    server: Option<String>,
    /// The enforcement_point API key for `--server`. Prefer the environment variable.
    #[arg(long, env = "ARBITER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Decide in this process on the data folder of an `arbiter serve` (store and decision log),
    /// which must not be running: this process serves its API instead, on `--arbiter-listen`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// With `--data-dir`: where Arbiter's own API (administration, approvals) listens.
    #[arg(long, default_value = "127.0.0.1:8181")]
    arbiter_listen: SocketAddr,
    /// With `--data-dir`: the Cedar schema `arbiter serve` was given (read at every start).
    #[arg(long, short = 's', requires = "data_dir")]
    schema: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct TokenArgs {
    /// The agent, as `Type::id`, e.g. `Agent::support-copilot`.
    #[arg(long)]
    subject: String,
    /// Who the agent acts for, as `Type::id`, origin first. Repeatable.
    #[arg(long = "acts-for")]
    acts_for: Vec<String>,
    /// Days until the credential expires.
    #[arg(long, default_value_t = 30)]
    valid_days: i64,
}

pub(crate) fn run(args: GatewayArgs) -> Result<ExitCode> {
    match args.command {
        GatewayCommand::Run(args) => run_gateway(args),
        GatewayCommand::Token(args) => token(&args),
    }
}

fn entity(text: &str) -> Result<serde_json::Value> {
    let (entity_type, id) = text
        .split_once("::")
        .ok_or_else(|| anyhow!("`{text}`: write an entity as `Type::id`"))?;
    let id = id.trim_matches('"');
    if entity_type.is_empty() || id.is_empty() {
        bail!("`{text}`: write an entity as `Type::id`");
    }
    Ok(serde_json::json!({"type": entity_type, "id": id}))
}

fn token(args: &TokenArgs) -> Result<ExitCode> {
    let secret = arbiter_gateway::config::new_token().context("no randomness for a credential")?;
    let acts_for = args
        .acts_for
        .iter()
        .map(|text| entity(text))
        .collect::<Result<Vec<_>>>()?;
    let line = serde_json::json!({
        "token_sha256": arbiter_gateway::config::token_hash(&secret),
        "subject": entity(&args.subject)?,
        "acts_for": acts_for,
        "expires_at": unix_now() + args.valid_days * 86_400,
    });
    println!("credential (shown once; give it to the agent as its bearer token): {secret}");
    println!("add to `agents` in the gateway's configuration:");
    println!("{line}");
    Ok(ExitCode::SUCCESS)
}

fn run_gateway(args: RunArgs) -> Result<ExitCode> {
    // stdout may be the MCP channel: logs go to stderr.
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBITER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = GatewayConfig::load(&args.config)?;
    let stdio_identity = match (args.stdio, &config.stdio_agent) {
        (true, Some(identity)) => Some(identity.clone()),
        (true, None) => bail!("`--stdio` needs `stdio_agent` in the configuration"),
        (false, _) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let decider = match (&args.server, &args.data_dir) {
            (Some(server), None) => {
                let key = args
                    .api_key
                    .as_deref()
                    .ok_or_else(|| anyhow!("give the enforcement_point key in ARBITER_API_KEY"))?;
                Decider::Remote(RemoteArbiter::new(server, key)?)
            }
            (None, Some(data_dir)) => {
                let state = open_in_process(data_dir, args.schema.as_deref())?;
                let listener = tokio::net::TcpListener::bind(args.arbiter_listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.arbiter_listen))?;
                eprintln!(
                    "Arbiter's API (in this process) is on http://{}",
                    listener.local_addr()?
                );
                let served = state.clone();
                tokio::spawn(async move {
                    if let Err(error) =
                        arbiter_server::serve(listener, served, std::future::pending()).await
                    {
                        tracing::error!(%error, "Arbiter's API stopped");
                    }
                });
                Decider::InProcess(state)
            }
            _ => bail!("decide through `--server URL` or in process with `--data-dir DIR`"),
        };
        let gateway = Gateway::start(config, decider).await?;
        // Removing a credential from the file revokes it while running (see docs/gateway.md).
        gateway.reload_credentials_from(&args.config);
        match stdio_identity {
            Some(identity) => {
                arbiter_gateway::serve_session(&gateway, identity, rmcp_stdio())
                    .await
                    .map_err(|err| anyhow!("stdio session: {err}"))?;
            }
            None => {
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.listen))?;
                eprintln!(
                    "the MCP gateway is on http://{}/mcp",
                    listener.local_addr()?
                );
                arbiter_gateway::http::serve(listener, gateway, async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn rmcp_stdio() -> (tokio::io::Stdin, tokio::io::Stdout) {
    (tokio::io::stdin(), tokio::io::stdout())
}

/// The server's state over an existing data folder, with its decision log: the same store and
/// log `arbiter serve` uses, so every decision is recorded there.
fn open_in_process(
    data_dir: &std::path::Path,
    schema: Option<&std::path::Path>,
) -> Result<Arc<AppState>> {
    let schema = match schema {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read `{}`", path.display()))?;
            let parsed = arbiter_engine::Schema::parse(&path.display().to_string(), &text)
                .map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    anyhow!("invalid schema:\n{}", lines.join("\n"))
                })?;
            Some(parsed)
        }
        None => None,
    };
    let database = data_dir.join("arbiter.sqlite3");
    if !database.is_file() {
        bail!(
            "`{}` does not exist: start `arbiter serve --data-dir {}` once first",
            database.display(),
            data_dir.display()
        );
    }
    let store = arbiter_store::SqliteStore::open(&database)
        .with_context(|| format!("cannot open `{}`", database.display()))?;
    let (state, new_keys) = AppState::open(
        Arc::new(store),
        schema,
        Bootstrap::default(),
        ServerConfig::default(),
        metrics_handle(),
        unix_now(),
    )
    .map_err(|err| anyhow!("cannot start: {err}"))?;
    for (name, role, key) in &new_keys.keys {
        eprintln!("  new API key `{name}` (role {role}), shown once; keep it: {key}");
    }
    let paths = LogPaths::new(data_dir, None);
    let mut log_config = arbiter_log::LogConfig::new(paths.database.clone(), paths.key.clone());
    log_config.witness_path = Some(paths.witness.clone());
    let (log, _writer) = arbiter_log::DecisionLog::open(log_config).with_context(|| {
        format!(
            "cannot open the decision log `{}`",
            paths.database.display()
        )
    })?;
    let state = state
        .with_log(log, paths.database, Redaction::default())
        .map_err(|err| anyhow!("cannot start: {err}"))?;
    Ok(Arc::new(state))
}
