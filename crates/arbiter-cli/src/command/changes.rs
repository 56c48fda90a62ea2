//! `arbiter changes`: the server's change feed, oldest first: who changed what, when, and why.

use crate::command::admin::{
    emit, emit_json, exit_code, format_time, view, Api, ConnectionArgs, Table,
};
use anyhow::Result;
use serde::Deserialize;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct ChangesArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Only changes after this sequence number.
    #[arg(long, default_value_t = 0, value_name = "SEQ")]
    since: u64,
    /// At most this many changes.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(arbiter_store::MAX_PAGE_LIMIT)))]
    limit: u32,
}

/// An entry of `GET /changes`.
#[derive(Deserialize)]
struct ChangeView {
    seq: u64,
    at: i64,
    actor: ActorView,
    #[serde(default)]
    reason: String,
    kind: String,
    subject: String,
}

#[derive(Deserialize)]
struct ActorView {
    id: String,
    role: String,
}

pub(crate) fn run(args: ChangesArgs) -> Result<ExitCode> {
    exit_code(changes(&args).map(|()| ExitCode::SUCCESS))
}

fn changes(args: &ChangesArgs) -> Result<()> {
    let api = Api::new(&args.connection)?;
    let mut url = api.url(&["changes"]);
    url.query_pairs_mut()
        .append_pair("since", &args.since.to_string())
        .append_pair("limit", &args.limit.to_string());
    let answer = api.get(url)?;
    if args.connection.json {
        return emit_json(&answer);
    }
    let changes: Vec<ChangeView> = view(answer)?;
    let last_seq = changes.last().map(|change| change.seq);
    let n_changes = changes.len();
    let mut table = Table::new(&["SEQ", "AT", "ACTOR", "KIND", "SUBJECT", "REASON"]);
    for change in changes {
        table.row(vec![
            change.seq.to_string(),
            format_time(change.at),
            format!("{} ({})", change.actor.id, change.actor.role),
            change.kind,
            change.subject,
            change.reason,
        ]);
    }
    if table.is_empty() {
        eprintln!("no changes after {}", args.since);
        return Ok(());
    }
    emit(&table.render())?;
    if let (Some(last_seq), true) = (last_seq, n_changes == args.limit as usize) {
        eprintln!("more changes may follow: run with --since {last_seq}");
    }
    Ok(())
}
