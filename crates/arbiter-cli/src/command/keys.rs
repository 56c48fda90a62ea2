//! `arbiter keys`: the server's API keys. A new key is shown once, when it is made; the server
//! keeps only its hash, so listings show ids, names and roles.

use crate::command::admin::{
    clean, emit, emit_json, exit_code, format_time, parse_reason, view, Api, ConnectionArgs,
    Reason, Table,
};
use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct KeysArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, clap::Subcommand)]
enum KeysCommand {
    /// List API keys, revoked ones included; never the keys themselves.
    List,
    /// Create a key. It is printed once, on standard output, and cannot be shown again.
    Create {
        /// A label for people, e.g. `ci-pipeline`.
        #[arg(long)]
        name: String,
        /// admin, operator, approver, auditor or enforcement_point.
        #[arg(long)]
        role: String,
        /// For approver keys: the person (a human of the inventory, by id) approvals are made
        /// as. Only a key that acts for a person can approve.
        #[arg(long, value_name = "HUMAN_ID")]
        acts_for: Option<String>,
        /// Why, for the change feed.
        #[arg(long, value_parser = parse_reason)]
        reason: Option<Reason>,
    },
    /// Revoke a key: requests made with it are refused from now on.
    Revoke {
        /// The key's id, as `keys list` shows it.
        id: String,
        /// Why, for the change feed. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
}

pub(crate) fn run(args: KeysArgs) -> Result<ExitCode> {
    exit_code(dispatch(args))
}

fn dispatch(args: KeysArgs) -> Result<ExitCode> {
    let api = Api::new(&args.connection)?;
    let json = args.connection.json;
    match args.command {
        KeysCommand::List => list(&api, json)?,
        KeysCommand::Create {
            name,
            role,
            acts_for,
            reason,
        } => {
            let body = match acts_for {
                Some(person) => json!({
                    "name": name,
                    "role": role,
                    "acts_for": {"type": "Human", "id": person},
                }),
                None => json!({"name": name, "role": role}),
            };
            create(&api, &body, reason.as_ref(), json)?;
        }
        KeysCommand::Revoke { id, reason } => {
            let answer = api.delete(api.url(&["keys", &id]), &reason)?;
            if json {
                emit_json(&answer)?;
            } else {
                emit(&format!("revoked key {}\n", clean(&id)))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A row of `GET /keys`.
#[derive(Deserialize)]
struct KeyView {
    id: String,
    name: String,
    role: String,
    created_at: i64,
    created_by: String,
    #[serde(default)]
    revoked_at: Option<i64>,
}

fn list(api: &Api, json: bool) -> Result<()> {
    let answer = api.get(api.url(&["keys"]))?;
    if json {
        return emit_json(&answer);
    }
    let keys: Vec<KeyView> = view(answer)?;
    let mut table = Table::new(&["ID", "NAME", "ROLE", "CREATED", "BY", "REVOKED"]);
    for key in keys {
        table.row(vec![
            key.id,
            key.name,
            key.role,
            format_time(key.created_at),
            key.created_by,
            key.revoked_at.map(format_time).unwrap_or_default(),
        ]);
    }
    if table.is_empty() {
        eprintln!("no API keys");
        return Ok(());
    }
    emit(&table.render())
}

fn create(api: &Api, body: &Value, reason: Option<&Reason>, json: bool) -> Result<()> {
    let answer = api.post(api.url(&["keys"]), body, reason)?;
    let warning = "warning: this is the only time the key is shown; store it now, \
                   it cannot be shown again";
    if json {
        emit_json(&answer)?;
        eprintln!("{warning}");
        return Ok(());
    }
    let field = |name: &str| {
        answer
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the server's answer has no `{name}`"))
    };
    // Only the key goes to standard output, so that `KEY=$(arbiter keys create …)` keeps it
    // out of the terminal's scrollback.
    eprintln!(
        "created key `{}` (id {}, role {})",
        clean(field("name")?),
        clean(field("id")?),
        clean(field("role")?)
    );
    emit(&format!("{}\n", field("key")?))?;
    eprintln!("{warning}");
    Ok(())
}
