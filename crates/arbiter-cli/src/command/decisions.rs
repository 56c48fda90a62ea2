//! `arbiter decisions`: search, show, export and follow the server's decision log.

use crate::command::admin::{
    emit, emit_json, exit_code, facts, format_time, Api, ConnectionArgs, Table,
};
use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct DecisionsArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: DecisionsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DecisionsCommand {
    /// Search recorded decisions (newest first); a table, or JSON with `--json`.
    List(Filter),
    /// One decision's full entry: request, outcome, reasons, explanation.
    Show {
        /// The decision id.
        id: String,
    },
    /// Every matching entry as JSON Lines, oldest first, for scripts and SIEMs.
    Export(Filter),
    /// Print new matching entries as JSON Lines as they are recorded.
    Tail(Filter),
    /// The inclusion proof of one decision against the latest signed checkpoint.
    Proof {
        /// The decision id.
        id: String,
    },
}

#[derive(Debug, Clone, Default, clap::Args)]
struct Filter {
    /// An identity as subject or any hop of a delegation chain, e.g. `Agent::"build-bot"`.
    #[arg(long)]
    identity: Option<String>,
    /// The principal's owner, e.g. `Human::"alice"`.
    #[arg(long)]
    owner: Option<String>,
    /// allow, deny or approval_required.
    #[arg(long)]
    outcome: Option<String>,
    /// An action name.
    #[arg(long)]
    action: Option<String>,
    /// A resource, e.g. `Tool::"crm.delete"`.
    #[arg(long)]
    resource: Option<String>,
    /// A determining policy id.
    #[arg(long)]
    policy: Option<String>,
    /// From this time (seconds since the Unix epoch).
    #[arg(long)]
    since: Option<i64>,
    /// Before this time (seconds since the Unix epoch).
    #[arg(long)]
    until: Option<i64>,
    /// Include governance changes and the log's notices, not only decisions.
    #[arg(long)]
    all_kinds: bool,
    /// At most this many (list only).
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

pub(crate) fn run(args: DecisionsArgs) -> Result<ExitCode> {
    exit_code(decisions(&args).map(|()| ExitCode::SUCCESS))
}

fn decisions(args: &DecisionsArgs) -> Result<()> {
    let api = Api::new(&args.connection)?;
    match &args.command {
        DecisionsCommand::List(filter) => {
            let answer = search(&api, filter, None, true, filter.limit)?;
            if args.connection.json {
                return emit_json(&answer);
            }
            list_table(&answer)
        }
        DecisionsCommand::Show { id } => {
            let answer = api.get(api.url(&["decisions", id]))?;
            if args.connection.json {
                return emit_json(&answer);
            }
            show(&answer)
        }
        DecisionsCommand::Proof { id } => {
            let answer = api.get(api.url(&["decisions", id, "proof"]))?;
            emit_json(&answer)
        }
        DecisionsCommand::Export(filter) => {
            let mut after = 0;
            loop {
                let answer = search(&api, filter, Some(after), false, 1000)?;
                let entries = entries(&answer);
                if entries.is_empty() {
                    return Ok(());
                }
                after = write_lines(entries, after)?;
            }
        }
        DecisionsCommand::Tail(filter) => {
            // Start from the newest entry, then poll for what follows.
            let newest = search(&api, filter, None, true, 1)?;
            let mut after = entries(&newest)
                .first()
                .and_then(|entry| entry.get("seq"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            loop {
                let answer = search(&api, filter, Some(after), false, 1000)?;
                let entries = entries(&answer);
                if entries.is_empty() {
                    std::thread::sleep(std::time::Duration::from_millis(500));
                    continue;
                }
                after = write_lines(entries, after)?;
            }
        }
    }
}

fn search(
    api: &Api,
    filter: &Filter,
    after: Option<u64>,
    newest_first: bool,
    limit: u32,
) -> Result<Value> {
    let mut url = api.url(&["decisions"]);
    {
        let mut query = url.query_pairs_mut();
        let mut pair = |name: &str, value: &Option<String>| {
            if let Some(value) = value {
                query.append_pair(name, value);
            }
        };
        pair("entity", &filter.identity);
        pair("owner", &filter.owner);
        pair("outcome", &filter.outcome);
        pair("action", &filter.action);
        pair("resource", &filter.resource);
        pair("policy", &filter.policy);
        pair("since", &filter.since.map(|at| at.to_string()));
        pair("until", &filter.until.map(|at| at.to_string()));
        pair("after", &after.map(|seq| seq.to_string()));
        if !filter.all_kinds {
            query.append_pair("kind", "decision");
        }
        query.append_pair("newest_first", &newest_first.to_string());
        query.append_pair("limit", &limit.to_string());
    }
    api.get(url)
}

fn entries(answer: &Value) -> &[Value] {
    answer
        .get("entries")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Writes entries as JSON Lines and returns the last seq written.
fn write_lines(entries: &[Value], mut after: u64) -> Result<u64> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for entry in entries {
        writeln!(out, "{}", serde_json::to_string(entry)?).context("cannot write to stdout")?;
        after = entry.get("seq").and_then(Value::as_u64).unwrap_or(after);
    }
    out.flush().context("cannot write to stdout")?;
    Ok(after)
}

fn text(value: &Value, path: &str) -> String {
    match value.pointer(path) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn list_table(answer: &Value) -> Result<()> {
    let mut table = Table::new(&[
        "SEQ",
        "AT",
        "DECISION",
        "OUTCOME",
        "PRINCIPAL",
        "ACTION",
        "RESOURCE",
        "REASON",
    ]);
    for stored in entries(answer) {
        let entry = stored.get("entry").cloned().unwrap_or_default();
        let principal = format!(
            "{}::{}",
            text(&entry, "/request/subject/type"),
            text(&entry, "/request/subject/id")
        );
        let resource = format!(
            "{}::{}",
            text(&entry, "/request/resource/type"),
            text(&entry, "/request/resource/id")
        );
        table.row(vec![
            text(stored, "/seq"),
            entry
                .pointer("/decision/decided_at")
                .and_then(Value::as_i64)
                .map(format_time)
                .unwrap_or_default(),
            text(&entry, "/decision/id"),
            text(&entry, "/decision/outcome"),
            principal,
            text(&entry, "/request/action/name"),
            resource,
            text(&entry, "/decision/reason_admin"),
        ]);
    }
    if table.is_empty() {
        eprintln!("no decisions match");
        return Ok(());
    }
    emit(&table.render())
}

fn show(stored: &Value) -> Result<()> {
    let entry = stored.get("entry").cloned().unwrap_or_default();
    let chain: Vec<String> = entry
        .pointer("/decision/hops")
        .and_then(Value::as_array)
        .map(|hops| {
            hops.iter()
                .map(|hop| {
                    format!(
                        "{}::{} ({})",
                        text(hop, "/principal/type"),
                        text(hop, "/principal/id"),
                        text(hop, "/outcome")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = [
        ("decision", text(&entry, "/decision/id")),
        ("seq", text(stored, "/seq")),
        (
            "at",
            entry
                .pointer("/decision/decided_at")
                .and_then(Value::as_i64)
                .map(format_time)
                .unwrap_or_default(),
        ),
        ("outcome", text(&entry, "/decision/outcome")),
        ("chain", chain.join(" → ")),
        ("action", text(&entry, "/request/action/name")),
        (
            "resource",
            format!(
                "{}::{}",
                text(&entry, "/request/resource/type"),
                text(&entry, "/request/resource/id")
            ),
        ),
        ("owner", text(&entry, "/owner/id")),
        ("reason", text(&entry, "/decision/reason_admin")),
        ("user reason", text(&entry, "/decision/reason_user")),
        (
            "policy version",
            text(&entry, "/decision/snapshot/policy_version"),
        ),
        ("asked by", text(&entry, "/caller/name")),
        ("latency", format!("{} µs", text(&entry, "/latency_us"))),
    ];
    emit(&facts(&rows))?;
    emit(&format!(
        "\nexplanation (JSON):\n{}\n",
        serde_json::to_string_pretty(entry.pointer("/decision/hops").unwrap_or(&Value::Null))?
    ))
}
