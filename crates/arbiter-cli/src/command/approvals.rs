//! `arbiter approvals`: the queue of approval requests; approve or deny one as the person your
//! key acts for; wait for one to be decided.

use crate::command::admin::{
    emit, emit_json, exit_code, facts, format_time, parse_reason, text_at as text, Api,
    ConnectionArgs, Reason, Table,
};
use anyhow::Result;
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct ApprovalsArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ApprovalsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ApprovalsCommand {
    /// Approval requests, newest first (pending ones by default).
    List {
        /// pending, approved or denied; `all` for every state.
        #[arg(long, default_value = "pending")]
        state: String,
    },
    /// One request: what is asked, why, who may approve, and its outcome.
    Show {
        /// The request id (`apr_…`).
        id: String,
        /// Wait up to this many seconds (at most 60) for it to be decided.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
    /// Approve a request, as the person your key acts for: a grant for exactly that request.
    Approve {
        /// The request id.
        id: String,
        /// Why, in your words. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
        /// How many times the grant may be used.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long the grant lives, in seconds.
        #[arg(long, default_value_t = 900)]
        valid_for: i64,
    },
    /// Deny a request; it can never be approved afterwards.
    Deny {
        /// The request id.
        id: String,
        /// Why, in your words. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
}

pub(crate) fn run(args: ApprovalsArgs) -> Result<ExitCode> {
    exit_code(dispatch(args))
}

fn dispatch(args: ApprovalsArgs) -> Result<ExitCode> {
    let api = Api::new(&args.connection)?;
    let json = args.connection.json;
    let answer = match &args.command {
        ApprovalsCommand::List { state } => {
            let mut url = api.url(&["approvals"]);
            if state != "all" {
                url.query_pairs_mut().append_pair("state", state);
            }
            let answer = api.get(url)?;
            if !json {
                list(&answer)?;
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        ApprovalsCommand::Show { id, wait } => {
            let mut url = api.url(&["approvals", id]);
            url.query_pairs_mut().append_pair("wait", &wait.to_string());
            api.get(url)?
        }
        ApprovalsCommand::Approve {
            id,
            reason,
            uses,
            valid_for,
        } => api.post(
            api.url(&["approvals", id, "approve"]),
            &json!({"reason": reason.as_str(), "uses": uses, "valid_for_seconds": valid_for}),
            None,
        )?,
        ApprovalsCommand::Deny { id, reason } => api.post(
            api.url(&["approvals", id, "deny"]),
            &json!({"reason": reason.as_str()}),
            None,
        )?,
    };
    if json {
        emit_json(&answer)?;
    } else {
        show(&answer)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn asked(approval: &Value) -> String {
    format!(
        "{} {} {}::{}",
        text(approval, "/principal"),
        text(approval, "/asked/request/action/name"),
        text(approval, "/asked/request/resource/type"),
        text(approval, "/asked/request/resource/id")
    )
}

fn list(answer: &Value) -> Result<()> {
    let mut table = Table::new(&["ID", "STATE", "CREATED", "ASKED", "WHY"]);
    for approval in answer
        .get("approvals")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        table.row(vec![
            text(approval, "/id"),
            text(approval, "/state"),
            approval
                .get("created_at")
                .and_then(Value::as_i64)
                .map(format_time)
                .unwrap_or_default(),
            asked(approval),
            text(approval, "/asked/why/0/approval"),
        ]);
    }
    if table.is_empty() {
        eprintln!("no approval requests");
        return Ok(());
    }
    emit(&table.render())
}

fn show(approval: &Value) -> Result<()> {
    let approvers = format!(
        "owner {}; groups {}",
        text(approval, "/asked/approvers/owner"),
        text(approval, "/asked/approvers/groups")
    );
    emit(&facts(&[
        ("approval", text(approval, "/id")),
        ("state", text(approval, "/state")),
        ("asked", asked(approval)),
        ("chain", text(approval, "/asked/chain")),
        ("why", text(approval, "/asked/reason")),
        ("who may approve", approvers),
        ("decided by", text(approval, "/decided_by")),
        ("their reason", text(approval, "/decision_reason")),
        ("uses left", text(approval, "/uses_left")),
        ("grant live", text(approval, "/grant_live")),
        ("digest", text(approval, "/asked/digest")),
    ]))
}
