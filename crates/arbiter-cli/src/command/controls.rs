//! `arbiter controls` and `arbiter quarantine`: graduated containment on a running server.
//! Observe, require approval, downgrade to an overlay, quarantine with a safe set; list; lift.

use crate::command::admin::{
    emit, emit_json, exit_code, format_time, parse_reason, text_at as text, Api, ConnectionArgs,
    Reason, Table,
};
use anyhow::{anyhow, Result};
use arbiter_core::{EntityRef, IdentityKind};
use serde_json::{json, Value};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct ControlsArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: ControlsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ControlsCommand {
    /// Controls in force (`--all` adds lifted ones).
    List {
        /// Include lifted controls.
        #[arg(long)]
        all: bool,
    },
    /// Flag only: decisions go on as usual and name the control.
    Observe(Place),
    /// What policy allows needs a person's approval first.
    RequireApproval(Place),
    /// Apply a restricted overlay (forbid policies annotated `@overlay("NAME")`).
    Downgrade {
        #[command(flatten)]
        place: Place,
        /// The overlay's name.
        #[arg(long)]
        overlay: String,
    },
    /// Deny everything except the safe actions.
    Quarantine(QuarantineArgs),
    /// Lift a control; the next decision no longer applies it.
    Lift {
        /// The control id (`ctl_…`).
        id: String,
        /// Why, in your words. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
}

/// What every placement names: a target, a reason, an optional expiry.
#[derive(Debug, clap::Args)]
pub(crate) struct Place {
    /// What to contain: `Type:id` (`Agent:build-bot`, `McpServer:files`, `Tool:files/delete`) or
    /// an identity kind (`ai_agent:build-bot`, `human:alice`).
    target: String,
    /// Why, in your words. Required.
    #[arg(long, value_parser = parse_reason)]
    reason: Reason,
    /// Lift it by itself after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    expires_in: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct QuarantineArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(flatten)]
    place: Place,
    /// An action that stays open (repeat for several); policies must still allow it.
    #[arg(long = "safe-action", value_name = "ACTION")]
    safe_actions: Vec<String>,
}

pub(crate) fn run(args: ControlsArgs) -> Result<ExitCode> {
    exit_code(dispatch(args))
}

/// `arbiter quarantine …`, the shortcut for `arbiter controls quarantine …`.
pub(crate) fn run_quarantine(args: QuarantineArgs) -> Result<ExitCode> {
    exit_code((|| {
        let api = Api::new(&args.connection)?;
        let answer = place(
            &api,
            &args.place,
            json!({"level": "quarantine", "safe_actions": args.safe_actions}),
        )?;
        report(&answer, args.connection.json)
    })())
}

fn dispatch(args: ControlsArgs) -> Result<ExitCode> {
    let api = Api::new(&args.connection)?;
    let json = args.connection.json;
    let answer = match &args.command {
        ControlsCommand::List { all } => {
            let mut url = api.url(&["controls"]);
            if *all {
                url.query_pairs_mut().append_pair("all", "true");
            }
            let answer = api.get(url)?;
            if !json {
                list(&answer)?;
                return Ok(ExitCode::SUCCESS);
            }
            answer
        }
        ControlsCommand::Observe(target) => place(&api, target, json!({"level": "observe"}))?,
        ControlsCommand::RequireApproval(target) => {
            place(&api, target, json!({"level": "require_approval"}))?
        }
        ControlsCommand::Downgrade {
            place: target,
            overlay,
        } => place(
            &api,
            target,
            json!({"level": "downgrade", "overlay": overlay}),
        )?,
        ControlsCommand::Quarantine(args) => place(
            &api,
            &args.place,
            json!({"level": "quarantine", "safe_actions": args.safe_actions}),
        )?,
        ControlsCommand::Lift { id, reason } => api.post(
            api.url(&["controls", id, "lift"]),
            &json!({"reason": reason.as_str()}),
            None,
        )?,
    };
    report(&answer, json)
}

fn place(api: &Api, target: &Place, mut body: Value) -> Result<Value> {
    let entity = parse_target(&target.target)?;
    if let Some(fields) = body.as_object_mut() {
        fields.insert(
            "target".into(),
            json!({"type": entity.entity_type, "id": entity.id}),
        );
        fields.insert("reason".into(), json!(target.reason.as_str()));
        if let Some(seconds) = target.expires_in {
            fields.insert("expires_in".into(), json!(seconds));
        }
    }
    api.post(api.url(&["controls"]), &body, None)
}

/// `Type:id`, where `Type` is a Cedar type or an identity kind (`ai_agent`, `agent`, `human`…).
fn parse_target(text: &str) -> Result<EntityRef> {
    let (kind, id) = text
        .split_once(':')
        .filter(|(kind, id)| !kind.is_empty() && !id.is_empty())
        .ok_or_else(|| anyhow!("target `{text}`: write it as Type:id, e.g. Agent:build-bot"))?;
    let kind = if kind == "agent" { "ai_agent" } else { kind };
    let entity_type = match serde_json::from_value::<IdentityKind>(json!(kind)) {
        Ok(identity_kind) => identity_kind.cedar_type().to_owned(),
        Err(_) => kind.to_owned(),
    };
    Ok(EntityRef::new(entity_type, id))
}

fn report(answer: &Value, json: bool) -> Result<ExitCode> {
    if json {
        emit_json(answer)?;
        return Ok(ExitCode::SUCCESS);
    }
    let control = answer
        .get("control")
        .or_else(|| answer.get("lifted"))
        .unwrap_or(answer);
    let verb = if answer.get("lifted").is_some() {
        "lifted"
    } else {
        "placed"
    };
    emit(&format!(
        "{verb} {} ({}) on {}: {}\n",
        text(control, "/id"),
        text(control, "/level"),
        target_text(control),
        text(control, "/reason")
    ))?;
    Ok(ExitCode::SUCCESS)
}

fn target_text(control: &Value) -> String {
    format!(
        "{}::\"{}\"",
        text(control, "/target/type"),
        text(control, "/target/id")
    )
}

fn list(answer: &Value) -> Result<()> {
    let mut table = Table::new(&[
        "ID", "LEVEL", "TARGET", "DETAIL", "PLACED", "EXPIRES", "REASON",
    ]);
    for control in answer.as_array().map(Vec::as_slice).unwrap_or_default() {
        let detail = match text(control, "/level").as_str() {
            "downgrade" => format!("overlay {}", text(control, "/overlay")),
            "quarantine" => format!("safe: {}", text(control, "/safe_actions")),
            _ => String::new(),
        };
        let time = |pointer: &str| {
            control
                .pointer(pointer)
                .and_then(Value::as_i64)
                .map(format_time)
                .unwrap_or_default()
        };
        let lifted = control.get("lifted_at").and_then(Value::as_i64).is_some();
        table.row(vec![
            text(control, "/id"),
            if lifted {
                format!("{} (lifted)", text(control, "/level"))
            } else {
                text(control, "/level")
            },
            target_text(control),
            detail,
            time("/placed_at"),
            time("/expires_at"),
            text(control, "/reason"),
        ]);
    }
    emit(&table.render())
}
