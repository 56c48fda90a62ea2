//! `arbiter identities`: list, show, create, delete identities on a running server, and move
//! them through their lifecycle (quarantine, suspend, revoke, reinstate), always with a reason.

use crate::command::admin::{
    clean, emit, emit_json, exit_code, facts, parse_reason, view, Api, ConnectionArgs, Reason,
    Table,
};
use anyhow::{bail, Context, Result};
use arbiter_core::IdentityKind;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct IdentitiesArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: IdentitiesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum IdentitiesCommand {
    /// List identities in kind and id order, one page or all of them.
    List(ListArgs),
    /// Show one identity, e.g. `ai_agent/support-copilot`.
    Get {
        /// `<kind>/<id>`; the kind is `human`, `service_account`, `workload`, `ai_agent` or
        /// `credential` (or its Cedar type, e.g. `Agent`).
        #[arg(value_parser = parse_identity_name)]
        identity: IdentityName,
    },
    /// Create an identity from a JSON file, in the inventory's identity format.
    Create {
        /// The identity as JSON; `-` reads standard input.
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Why, for the change feed.
        #[arg(long, value_parser = parse_reason)]
        reason: Option<Reason>,
    },
    /// Contain an identity after suspicious behaviour: it is denied everything.
    Quarantine(ChangeArgs),
    /// Stop an identity for now: it is denied everything.
    Suspend(ChangeArgs),
    /// Disable an identity for good: it is denied everything.
    Revoke(ChangeArgs),
    /// Make an identity active again.
    Reinstate(ChangeArgs),
    /// Delete an identity from the inventory.
    Delete(ChangeArgs),
}

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Only this kind: human, service_account, workload, ai_agent or credential.
    #[arg(long, value_parser = parse_kind)]
    kind: Option<IdentityKind>,
    /// Only identities in this lifecycle state.
    #[arg(long, value_parser = ["active", "suspended", "quarantined", "revoked", "expired"])]
    lifecycle: Option<String>,
    /// Only identities owned by this human (a `human` id).
    #[arg(long)]
    owner: Option<String>,
    /// Only identities whose id starts with this.
    #[arg(long)]
    prefix: Option<String>,
    /// At most this many identities per page.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(arbiter_store::MAX_PAGE_LIMIT)))]
    limit: u32,
    /// Follow the pages to the end instead of stopping after the first.
    #[arg(long, conflicts_with = "after")]
    all: bool,
    /// Start after this cursor, the `next` of a previous page.
    #[arg(long, value_name = "CURSOR")]
    after: Option<String>,
}

#[derive(Debug, clap::Args)]
struct ChangeArgs {
    /// `<kind>/<id>`, e.g. `ai_agent/support-copilot`.
    #[arg(value_parser = parse_identity_name)]
    identity: IdentityName,
    /// Why, for the change feed. Required.
    #[arg(long, value_parser = parse_reason)]
    reason: Reason,
}

/// `<kind>/<id>`: how operators name an identity on the command line.
#[derive(Debug, Clone)]
struct IdentityName {
    kind: IdentityKind,
    id: String,
}

impl fmt::Display for IdentityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.id)
    }
}

/// Parses `ai_agent/support-copilot`, `Agent/support-copilot`, or `Agent::"support-copilot"`
/// as the change feed writes subjects. The id is everything after the first `/`, so ids that
/// hold slashes (SPIFFE ids) work.
fn parse_identity_name(text: &str) -> Result<IdentityName, String> {
    let (kind, id) = if let Some((cedar_type, quoted)) = text.split_once("::") {
        let id: String = serde_json::from_str(quoted)
            .map_err(|_| format!("`{text}`: the id after `::` must be a quoted string"))?;
        (cedar_type, id)
    } else {
        let (kind, id) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: write `<kind>/<id>`, e.g. `ai_agent/{text}`"))?;
        (kind, id.to_owned())
    };
    if id.is_empty() {
        return Err(format!("`{text}`: the id is empty"));
    }
    Ok(IdentityName {
        kind: parse_kind(kind)?,
        id,
    })
}

fn parse_kind(text: &str) -> Result<IdentityKind, String> {
    serde_json::from_value::<IdentityKind>(Value::String(text.to_owned()))
        .ok()
        .or_else(|| IdentityKind::from_cedar_type(text))
        .ok_or_else(|| {
            format!("unknown kind `{text}`: use human, service_account, workload, ai_agent or credential")
        })
}

pub(crate) fn run(args: IdentitiesArgs) -> Result<ExitCode> {
    exit_code(dispatch(args))
}

fn dispatch(args: IdentitiesArgs) -> Result<ExitCode> {
    let api = Api::new(&args.connection)?;
    let json = args.connection.json;
    match args.command {
        IdentitiesCommand::List(list_args) => list(&api, list_args, json)?,
        IdentitiesCommand::Get { identity } => get(&api, &identity, json)?,
        IdentitiesCommand::Create { file, reason } => create(&api, &file, reason.as_ref(), json)?,
        IdentitiesCommand::Quarantine(change) => set_lifecycle(&api, change, "quarantined", json)?,
        IdentitiesCommand::Suspend(change) => set_lifecycle(&api, change, "suspended", json)?,
        IdentitiesCommand::Revoke(change) => set_lifecycle(&api, change, "revoked", json)?,
        IdentitiesCommand::Reinstate(change) => set_lifecycle(&api, change, "active", json)?,
        IdentitiesCommand::Delete(change) => delete(&api, change, json)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn identity_url(api: &Api, identity: &IdentityName, rest: &[&str]) -> reqwest::Url {
    let mut segments = vec!["identities", identity.kind.as_str(), identity.id.as_str()];
    segments.extend(rest);
    api.url(&segments)
}

/// A page of `GET /identities`.
#[derive(Deserialize)]
struct IdentityPage {
    items: Vec<Value>,
    next: Option<String>,
}

/// What a table shows of an identity.
#[derive(Deserialize)]
struct IdentityView {
    id: String,
    kind: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    sponsor: Option<EntityView>,
    #[serde(default = "active")]
    lifecycle: String,
    #[serde(default)]
    member_of: Vec<EntityView>,
    #[serde(default)]
    credential: Option<Map<String, Value>>,
    #[serde(default)]
    attributes: Map<String, Value>,
}

fn active() -> String {
    "active".to_owned()
}

#[derive(Deserialize)]
struct EntityView {
    #[serde(rename = "type")]
    entity_type: String,
    id: String,
}

impl fmt::Display for EntityView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.entity_type, self.id)
    }
}

fn list(api: &Api, args: ListArgs, json: bool) -> Result<()> {
    let mut items: Vec<Value> = Vec::new();
    let mut after = args.after.clone();
    let next = loop {
        let mut url = api.url(&["identities"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(kind) = args.kind {
                query.append_pair("kind", kind.as_str());
            }
            if let Some(lifecycle) = &args.lifecycle {
                query.append_pair("lifecycle", lifecycle);
            }
            if let Some(owner) = &args.owner {
                query.append_pair("owner", owner);
            }
            if let Some(prefix) = &args.prefix {
                query.append_pair("id_prefix", prefix);
            }
            query.append_pair("limit", &args.limit.to_string());
            if let Some(after) = &after {
                query.append_pair("after", after);
            }
        }
        let page: IdentityPage = view(api.get(url)?)?;
        items.extend(page.items);
        match page.next {
            Some(cursor) if args.all => {
                if after.as_ref() == Some(&cursor) {
                    bail!("the server answered the same page cursor twice; stopping");
                }
                after = Some(cursor);
            }
            next => break next,
        }
    };
    if json {
        return emit_json(&json!({"items": items, "next": next}));
    }
    let mut table = Table::new(&["KIND", "ID", "LIFECYCLE", "OWNER", "NAME"]);
    for item in items {
        let identity: IdentityView = view(item)?;
        table.row(vec![
            identity.kind,
            identity.id,
            identity.lifecycle,
            identity.owner.unwrap_or_default(),
            identity.display_name.unwrap_or_default(),
        ]);
    }
    if table.is_empty() {
        eprintln!("no identities match");
    } else {
        emit(&table.render())?;
    }
    if let Some(cursor) = next {
        eprintln!("more identities follow: run with --all, or with --after {cursor}");
    }
    Ok(())
}

fn get(api: &Api, identity: &IdentityName, json: bool) -> Result<()> {
    let answer = api.get(identity_url(api, identity, &[]))?;
    if json {
        return emit_json(&answer);
    }
    let identity: IdentityView = view(answer)?;
    let mut lines = vec![
        ("name", identity.display_name.unwrap_or_default()),
        ("lifecycle", identity.lifecycle),
        ("owner", identity.owner.unwrap_or_default()),
        (
            "sponsor",
            identity
                .sponsor
                .map(|sponsor| sponsor.to_string())
                .unwrap_or_default(),
        ),
        (
            "member of",
            identity
                .member_of
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    if let Some(credential) = identity.credential {
        lines.push(("credential", Value::Object(credential).to_string()));
    }
    if !identity.attributes.is_empty() {
        lines.push(("attributes", Value::Object(identity.attributes).to_string()));
    }
    emit(&format!(
        "{}/{}\n{}",
        clean(&identity.kind),
        clean(&identity.id),
        facts(&lines)
    ))
}

fn create(api: &Api, file: &Path, reason: Option<&Reason>, json: bool) -> Result<()> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the identity from standard input")?;
        text
    } else {
        std::fs::read_to_string(file)
            .with_context(|| format!("cannot read `{}`", file.display()))?
    };
    // Say where the JSON is broken here, with the file's name, rather than as `$` from afar.
    serde_json::from_str::<Value>(&text)
        .with_context(|| format!("`{}` is not valid JSON", file.display()))?;
    let answer = api.post_text(api.url(&["identities"]), text, reason)?;
    if json {
        return emit_json(&answer);
    }
    let identity: IdentityView = view(answer)?;
    emit(&format!(
        "created {}/{}\n",
        clean(&identity.kind),
        clean(&identity.id)
    ))
}

/// The answer to `POST …/lifecycle`.
#[derive(Deserialize)]
struct LifecycleAnswer {
    lifecycle: String,
    change_seq: u64,
}

fn set_lifecycle(api: &Api, change: ChangeArgs, lifecycle: &str, json: bool) -> Result<()> {
    let answer = api.post(
        identity_url(api, &change.identity, &["lifecycle"]),
        &json!({"lifecycle": lifecycle, "reason": change.reason.as_str()}),
        None,
    )?;
    if json {
        return emit_json(&answer);
    }
    let answer: LifecycleAnswer = view(answer)?;
    emit(&format!(
        "{} is now {} (change {})\n",
        change.identity,
        clean(&answer.lifecycle),
        answer.change_seq
    ))
}

fn delete(api: &Api, change: ChangeArgs, json: bool) -> Result<()> {
    let answer = api.delete(identity_url(api, &change.identity, &[]), &change.reason)?;
    if json {
        return emit_json(&answer);
    }
    emit(&format!("deleted {}\n", change.identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expect: &str) {
        let parsed = parse_identity_name(text).map(|name| name.to_string());
        assert_eq!(parsed.unwrap_or_else(|err| err), expect, "{text}");
    }

    #[test]
    fn identity_names() {
        check("ai_agent/support-copilot", "ai_agent/support-copilot");
        check("Agent/support-copilot", "ai_agent/support-copilot");
        check(r#"Agent::"support-copilot""#, "ai_agent/support-copilot");
        check(
            "workload/spiffe://acme/ns/build",
            "workload/spiffe://acme/ns/build",
        );
        check(
            "robot/x",
            "unknown kind `robot`: use human, service_account, workload, ai_agent or credential",
        );
        check(
            "support-copilot",
            "`support-copilot`: write `<kind>/<id>`, e.g. `ai_agent/support-copilot`",
        );
        check("human/", "`human/`: the id is empty");
    }
}
