//! `arbiter policies`: the policy versions stored on a running server. Versions are never edited:
//! an upload makes a new one, and activating or rolling back chooses which one decisions use.

use crate::bundle::BundleArgs;
use crate::command::admin::{
    emit, emit_json, exit_code, facts, format_time, parse_reason, view, Api, ConnectionArgs,
    Problem, Reason, RemoteError, SourceError, Table,
};
use anyhow::{anyhow, Result};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct PoliciesArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: PoliciesCommand,
}

#[derive(Debug, clap::Subcommand)]
enum PoliciesCommand {
    /// List the stored policy versions, newest last; the active one is marked.
    List,
    /// Show one version: who made it, when, why, and its Cedar sources.
    Show {
        /// The version number.
        version: u64,
    },
    /// Store `.cedar` files as a new version, and optionally make it the active one.
    Upload {
        /// A `.cedar` file, or a folder whose `.cedar` files are read in name order.
        path: PathBuf,
        /// Make the new version active at once.
        #[arg(long)]
        activate: bool,
        /// Why, for the change feed. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
    /// Check `.cedar` files against the server's schema without storing anything; exits with 1
    /// when they are invalid.
    Validate {
        /// A `.cedar` file, or a folder whose `.cedar` files are read in name order.
        path: PathBuf,
    },
    /// Make a stored version the one decisions use.
    Activate {
        /// The version number.
        version: u64,
        /// Why, for the change feed. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
    /// Go back to an earlier version: the newest one before the active, or the one given.
    Rollback {
        /// The version to go back to.
        #[arg(long, value_name = "VERSION")]
        to: Option<u64>,
        /// Why, for the change feed. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
    },
}

pub(crate) fn run(args: PoliciesArgs) -> Result<ExitCode> {
    exit_code(dispatch(args))
}

fn dispatch(args: PoliciesArgs) -> Result<ExitCode> {
    let api = Api::new(&args.connection)?;
    let json = args.connection.json;
    match args.command {
        PoliciesCommand::List => list(&api, json)?,
        PoliciesCommand::Show { version } => show(&api, version, json)?,
        PoliciesCommand::Upload {
            path,
            activate,
            reason,
        } => upload(&api, &path, activate, &reason, json)?,
        PoliciesCommand::Validate { path } => return validate(&api, &path, json),
        PoliciesCommand::Activate { version, reason } => {
            let answer = api.post(
                api.url(&["policies", &version.to_string(), "activate"]),
                &json!({"reason": reason.as_str()}),
                None,
            )?;
            report_active(&answer, json, "")?;
        }
        PoliciesCommand::Rollback { to, reason } => {
            let mut body = json!({"reason": reason.as_str()});
            if let (Some(version), Some(object)) = (to, body.as_object_mut()) {
                object.insert("version".to_owned(), json!(version));
            }
            let answer = api.post(api.url(&["policies", "rollback"]), &body, None)?;
            report_active(&answer, json, "rolled back: ")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `.cedar` files read the way `arbiter check` reads them, named on the server by file name
/// (local folders are nobody else's business), with the way back to the local path for errors.
struct LocalSources {
    sources: Vec<Value>,
    local_paths: HashMap<String, String>,
}

impl LocalSources {
    fn read(path: &Path) -> Result<Self> {
        let bundle = BundleArgs {
            policies: path.to_path_buf(),
            schema: None,
            entities: Vec::new(),
            inventory: Vec::new(),
            max_delegation_hops: arbiter_engine::EngineConfig::default().max_delegation_hops,
        }
        .read()?;
        let mut sources = Vec::new();
        let mut local_paths = HashMap::new();
        for source in bundle.policies {
            let name = Path::new(&source.name)
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| source.name.clone());
            sources.push(json!({"name": name, "text": source.text}));
            local_paths.insert(name, source.name);
        }
        Ok(Self {
            sources,
            local_paths,
        })
    }

    fn render(&self, error: &SourceError) -> String {
        error.render(|name| {
            self.local_paths
                .get(name)
                .cloned()
                .unwrap_or_else(|| name.to_owned())
        })
    }
}

/// A row of `GET /policies`.
#[derive(Deserialize)]
struct VersionSummary {
    version: u64,
    #[serde(default)]
    source_names: Vec<String>,
    created_at: i64,
    created_by: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    active: bool,
}

/// `GET /policies/{version}`.
#[derive(Deserialize)]
struct VersionView {
    version: u64,
    sources: Vec<SourceView>,
    digest: String,
    created_at: i64,
    created_by: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
struct SourceView {
    name: String,
    text: String,
}

fn list(api: &Api, json: bool) -> Result<()> {
    let answer = api.get(api.url(&["policies"]))?;
    if json {
        return emit_json(&answer);
    }
    let versions: Vec<VersionSummary> = view(answer)?;
    let mut table = Table::new(&["VERSION", "ACTIVE", "CREATED", "BY", "SOURCES", "REASON"]);
    for version in versions {
        table.row(vec![
            version.version.to_string(),
            if version.active { "yes" } else { "no" }.to_owned(),
            format_time(version.created_at),
            version.created_by,
            version.source_names.join(","),
            version.reason,
        ]);
    }
    if table.is_empty() {
        eprintln!("no policy versions are stored");
        return Ok(());
    }
    emit(&table.render())
}

fn show(api: &Api, version: u64, json: bool) -> Result<()> {
    let answer = api.get(api.url(&["policies", &version.to_string()]))?;
    if json {
        return emit_json(&answer);
    }
    let stored: VersionView = view(answer)?;
    // The version's own answer does not say whether it is active; the listing does.
    let versions: Vec<VersionSummary> = view(api.get(api.url(&["policies"]))?)?;
    let active = versions
        .iter()
        .any(|summary| summary.version == stored.version && summary.active);
    let mut out = format!(
        "policy version {}{}\n",
        stored.version,
        if active { " (active)" } else { "" }
    );
    out.push_str(&facts(&[
        ("digest", stored.digest),
        (
            "created",
            format!(
                "{} by {}",
                format_time(stored.created_at),
                stored.created_by
            ),
        ),
        ("reason", stored.reason),
    ]));
    for source in stored.sources {
        // Cedar text is printed as stored, so that it can be copied back into a file.
        out.push_str(&format!("\n// {}\n{}", source.name, source.text));
        if !source.text.ends_with('\n') {
            out.push('\n');
        }
    }
    emit(&out)
}

fn upload(api: &Api, path: &Path, activate: bool, reason: &Reason, json: bool) -> Result<()> {
    let local = LocalSources::read(path)?;
    let n_sources = local.sources.len();
    let body = json!({"sources": local.sources, "reason": reason.as_str(), "activate": activate});
    let answer = match api.post(api.url(&["policies"]), &body, None) {
        Ok(answer) => answer,
        Err(err) => return Err(with_local_paths(err, &local)),
    };
    if json {
        return emit_json(&answer);
    }
    let version = answer
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("the server's answer has no version number"))?;
    let files = if n_sources == 1 { "file" } else { "files" };
    if answer.get("active").and_then(Value::as_bool) == Some(true) {
        emit(&format!(
            "uploaded policy version {version} ({n_sources} {files}); it is active\n"
        ))
    } else {
        emit(&format!(
            "uploaded policy version {version} ({n_sources} {files}); \
             activate it with `arbiter policies activate {version} --reason …`\n"
        ))
    }
}

/// A refused upload carries the policy errors in the problem's `errors`: print them as
/// `file:line:column: message` with local paths, and leave a one-line summary as the error.
fn with_local_paths(err: anyhow::Error, local: &LocalSources) -> anyhow::Error {
    let problem = match err.downcast_ref::<RemoteError>() {
        Some(RemoteError::Refused(problem)) => problem,
        _ => return err,
    };
    let Some(errors) = problem.source_errors() else {
        return err;
    };
    for error in &errors {
        eprintln!("{}", local.render(error));
    }
    RemoteError::Refused(Problem {
        detail: count_errors(errors.len()),
        field: None,
        ..problem.clone()
    })
    .into()
}

fn count_errors(n_errors: usize) -> String {
    match n_errors {
        1 => "1 error in the policies".to_owned(),
        n => format!("{n} errors in the policies"),
    }
}

/// The answer to `POST /policies/validate`.
#[derive(Deserialize)]
struct Validation {
    valid: bool,
    #[serde(default)]
    policies: Option<u64>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    errors: Vec<SourceError>,
}

fn validate(api: &Api, path: &Path, json: bool) -> Result<ExitCode> {
    let local = LocalSources::read(path)?;
    let answer = api.post(
        api.url(&["policies", "validate"]),
        &json!({"sources": local.sources}),
        None,
    )?;
    let validation: Validation = view(answer.clone())?;
    if json {
        emit_json(&answer)?;
    } else if validation.valid {
        emit(&format!(
            "valid: {} policies (digest {})\n",
            validation.policies.unwrap_or(0),
            validation.digest.unwrap_or_default()
        ))?;
    } else {
        let lines: Vec<String> = validation
            .errors
            .iter()
            .map(|error| local.render(error))
            .collect();
        emit(&format!("{}\n", lines.join("\n")))?;
        eprintln!("invalid: {}", count_errors(validation.errors.len()));
    }
    Ok(if validation.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn report_active(answer: &Value, json: bool, prefix: &str) -> Result<()> {
    if json {
        return emit_json(answer);
    }
    let version = answer
        .get("active_version")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow!("the server's answer has no active version"))?;
    emit(&format!("{prefix}policy version {version} is active\n"))
}
