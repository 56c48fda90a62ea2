//! `arbiter serve`: the decision and administration APIs on an embedded SQLite store.

use crate::bundle::{BundleArgs, BundleTexts};
use crate::command::unix_now;
use anyhow::{anyhow, Context, Result};
use arbiter_core::InventoryDocument;
use arbiter_log::{DecisionLog, Durability, LogConfig};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Redaction, Role, ServerConfig};
use arbiter_store::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Folder for the SQLite database; created if missing.
    #[arg(long, default_value = "arbiter-data")]
    data_dir: PathBuf,
    /// Address to listen on. Loopback by default: exposing Arbiter is a deliberate choice.
    #[arg(long, default_value = "127.0.0.1:8181")]
    listen: SocketAddr,
    /// On first start, load the demo: agents, tools, datasets and policies with allow, deny and approval_required.
    #[arg(long, conflicts_with = "policies")]
    demo: bool,
    /// On first start, load these policies (a `.cedar` file or a folder).
    #[arg(long, short = 'p')]
    policies: Option<PathBuf>,
    /// A Cedar schema to validate policies, entities and requests against (read at every start).
    #[arg(long, short = 's')]
    schema: Option<PathBuf>,
    /// On first start, load plain Cedar entities JSON. Repeatable.
    #[arg(long, short = 'e')]
    entities: Vec<PathBuf>,
    /// On first start, load an Arbiter inventory document. Repeatable.
    #[arg(long, short = 'i')]
    inventory: Vec<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs `--tls-key`).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key for `--tls-cert`.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mutual TLS).
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// When a decision counts as recorded: `durable` answers only after its log entry is on
    /// disk (group commit); `buffered` answers once it is queued and may lose the entries of one
    /// commit group (about one fsync's worth) in a crash.
    #[arg(long, value_enum, default_value_t = LogDurability::Durable)]
    log_durability: LogDurability,
    /// The Ed25519 key that signs the decision log's checkpoints; created if missing. Keep it
    /// off the database's disk in production. Default: `<data-dir>/log-key/ed25519.key`.
    #[arg(long)]
    log_key: Option<PathBuf>,
    /// A request field to keep out of the decision log, as a JSON pointer into the AuthZEN
    /// request (e.g. `/context/ssn`). Repeatable.
    #[arg(long = "redact")]
    redact: Vec<String>,
    /// A file whose bytes key the HMAC that redacted values are kept as (so equal values can
    /// still be matched); without it they are dropped.
    #[arg(long, requires = "redact")]
    redaction_key_file: Option<PathBuf>,
    /// Keep whole log entries this many days; older ones keep only their hashes and search
    /// columns (checked hourly; the log still verifies). Default: keep everything.
    #[arg(long)]
    log_keep_days: Option<u32>,
    /// Ship every log entry, once committed, to `stdout`, `file:<path>` or an `http://`
    /// webhook (at least once, in order, resuming after restarts). Repeatable.
    #[arg(long = "log-sink")]
    log_sinks: Vec<arbiter_server::sinks::SinkTarget>,
    /// What happens to a non-human identity whose owner is not an active human: `deny` every
    /// decision until it has one (the default), `allow` it (it stays reported as orphaned), or
    /// `downgrade:<overlay>` it to the forbid policies annotated `@overlay("<overlay>")`.
    #[arg(long, default_value = "deny", value_parser = parse_orphans)]
    orphans: arbiter_engine::OrphanRule,
    /// Do not contain the identities a contained identity sponsors (by default they are).
    #[arg(long)]
    no_sponsor_cascade: bool,
    /// Turn a reported signal into a control on its subject, e.g.
    /// `anomaly_score >= 80 => quarantined` (or `=> suspended`, `=> observe`,
    /// `=> require_approval`, `=> downgrade:<overlay>`). Repeatable; the first rule that matches
    /// applies, and the change records the signal that triggered it.
    #[arg(long = "signal-rule")]
    signal_rules: Vec<arbiter_server::signal_rules::SignalRule>,
}

fn parse_orphans(text: &str) -> Result<arbiter_engine::OrphanRule, String> {
    match text.split_once(':') {
        None if text == "deny" => Ok(arbiter_engine::OrphanRule::Deny),
        None if text == "allow" => Ok(arbiter_engine::OrphanRule::Allow),
        Some(("downgrade", overlay)) if !overlay.is_empty() => {
            Ok(arbiter_engine::OrphanRule::Downgrade {
                overlay: overlay.to_owned(),
            })
        }
        _ => Err(format!("`{text}`: use deny, allow or downgrade:<overlay>")),
    }
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogDurability {
    Durable,
    Buffered,
}

/// Where the log and its key live, inside the data folder.
pub(crate) struct LogPaths {
    pub(crate) database: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) witness: PathBuf,
}

impl LogPaths {
    pub(crate) fn new(data_dir: &std::path::Path, key: Option<PathBuf>) -> Self {
        Self {
            database: data_dir.join("decisions.sqlite3"),
            key: key.unwrap_or_else(|| data_dir.join("log-key").join("ed25519.key")),
            witness: data_dir.join("checkpoints.jsonl"),
        }
    }
}

pub(crate) fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_json);
    let now = unix_now();
    let (texts, extra_keys) = if args.demo {
        let texts = crate::command::demo::demo_bundle(now)?;
        (
            texts,
            vec![("demo-gateway".to_owned(), Role::EnforcementPoint)],
        )
    } else {
        let texts = match &args.policies {
            Some(policies) => BundleArgs {
                policies: policies.clone(),
                schema: args.schema.clone(),
                entities: args.entities.clone(),
                inventory: args.inventory.clone(),
                max_delegation_hops: arbiter_engine::EngineConfig::default().max_delegation_hops,
            }
            .read()?,
            None => BundleTexts {
                policies: Vec::new(),
                schema: match &args.schema {
                    Some(path) => {
                        Some((path.display().to_string(), std::fs::read_to_string(path)?))
                    }
                    None => None,
                },
                entities: Vec::new(),
                inventories: Vec::new(),
                config: arbiter_engine::EngineConfig::default(),
            },
        };
        (texts, Vec::new())
    };
    let schema = texts.schema()?;
    let mut bootstrap = Bootstrap {
        policies: texts.policies,
        extra_keys,
        ..Bootstrap::default()
    };
    for (name, text) in &texts.inventories {
        let document: InventoryDocument =
            serde_json::from_str(text).with_context(|| format!("{name}: invalid inventory"))?;
        bootstrap.inventory.push(document);
    }
    for (name, text) in &texts.entities {
        bootstrap
            .cedar_entities
            .push(serde_json::from_str(text).with_context(|| format!("{name}: invalid JSON"))?);
    }

    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create `{}`", args.data_dir.display()))?;
    let database = args.data_dir.join("arbiter.sqlite3");
    let store = SqliteStore::open(&database)
        .with_context(|| format!("cannot open `{}`", database.display()))?;
    let (state, new_keys) = AppState::open(
        Arc::new(store),
        schema,
        bootstrap,
        ServerConfig {
            tls: args.tls_cert.is_some(),
            signal_rules: args.signal_rules.clone(),
            engine: arbiter_engine::EngineConfig {
                orphans: args.orphans.clone(),
                contain_sponsored: !args.no_sponsor_cascade,
                ..arbiter_engine::EngineConfig::default()
            },
            ..ServerConfig::default()
        },
        metrics_handle(),
        now,
    )
    .map_err(|err| anyhow!("cannot start: {err}"))?;
    let paths = LogPaths::new(&args.data_dir, args.log_key.clone());
    let mut log_config = LogConfig::new(paths.database.clone(), paths.key.clone());
    log_config.witness_path = Some(paths.witness.clone());
    log_config.durability = match args.log_durability {
        LogDurability::Durable => Durability::Durable,
        LogDurability::Buffered => Durability::Buffered,
    };
    let (log, _writer) = DecisionLog::open(log_config).with_context(|| {
        format!(
            "cannot open the decision log `{}`",
            paths.database.display()
        )
    })?;
    let redaction = Redaction {
        pointers: args.redact.clone(),
        key: match &args.redaction_key_file {
            Some(path) => Some(
                std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?,
            ),
            None => None,
        },
    };
    let retention_log = log.clone();
    let state = state
        .with_log(log, paths.database.clone(), redaction)
        .map_err(|err| anyhow!("cannot start: {err}"))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert_chain), Some(private_key)) => Some(arbiter_server::TlsConfig {
                cert_chain: cert_chain.clone(),
                private_key: private_key.clone(),
                client_ca: args.tls_client_ca.clone(),
            }),
            _ => None,
        };
        for target in args.log_sinks.clone() {
            tokio::spawn(arbiter_server::sinks::follow(
                target,
                paths.database.clone(),
                args.data_dir.join("sinks"),
            ));
        }
        if let Some(days) = args.log_keep_days {
            tokio::spawn(async move {
                let mut hourly = tokio::time::interval(std::time::Duration::from_secs(3600));
                loop {
                    hourly.tick().await;
                    let rule = arbiter_log::Retention {
                        keep_seconds: Some(i64::from(days) * 86_400),
                        keep_entries: None,
                    };
                    match retention_log.retain(rule).await {
                        Ok(report) if report.pruned > 0 => tracing::info!(
                            through = report.pruned_through,
                            pruned = report.pruned,
                            "decision log retention"
                        ),
                        Ok(_) => {}
                        Err(error) => tracing::error!(%error, "decision log retention failed"),
                    }
                }
            });
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        println!(
            "Arbiter is listening on {scheme}://{address} (data in {}, decision log in {})",
            database.display(),
            paths.database.display()
        );
        for (name, role, key) in &new_keys.keys {
            println!("  new API key `{name}` (role {role}), shown once; keep it: {key}");
        }
        if args.demo {
            if let Some((_, _, key)) = new_keys
                .keys
                .iter()
                .find(|(_, role, _)| *role == Role::EnforcementPoint)
            {
                print_demo_requests(&address.to_string(), key);
            } else {
                println!("  (demo data was loaded on an earlier start; its keys were shown then)");
            }
        }
        match &tls {
            Some(tls) => {
                arbiter_server::serve_tls(listener, tls, Arc::new(state), shutdown_signal()).await?
            }
            None => arbiter_server::serve(listener, Arc::new(state), shutdown_signal()).await?,
        }
        println!("Arbiter stopped");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_demo_requests(address: &str, key: &str) {
    let ask = |label: &str, body: &str| {
        println!("\n  # {label}");
        println!(
            "  curl -s http://{address}/access/v1/evaluation -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{body}'"
        );
    };
    println!("\nTry it (each answer carries the decision id, outcome and reasons):");
    ask(
        "allow: the support copilot looks up a customer",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#,
    );
    ask(
        "deny, with the reason: the triage agent's live risk score is too high",
        r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#,
    );
    ask(
        "approval_required: a destructive tool",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.delete_customer"}}"#,
    );
    println!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ARBITER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
