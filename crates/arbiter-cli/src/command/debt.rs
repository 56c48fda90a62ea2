//! `arbiter debt`: trust debt from the server's files — identities ranked by score with their
//! findings (OWASP NHI Top 10 items, evidence, fixes), least-privilege suggestions checked by
//! replay, the scores kept in `debt.sqlite3` for the trend — as a table, JSON or an HTML page.
//! `arbiter debt apply <id>` applies a suggestion through the API, as one reviewed step, on a
//! report the server computes for it in a background run (its progress on stderr).

use crate::command::admin::{
    clean, emit, emit_json, parse_reason, Api, ConnectionArgs, Reason, RemoteError, Table,
};
use anyhow::{anyhow, Context, Result};
use arbiter_debt::{compute, html, History, Report, RunOptions, Thresholds};
use arbiter_log::LogDb;
use arbiter_store::SqliteStore;
use serde_json::{json, Value};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct DebtArgs {
    #[command(subcommand)]
    command: Option<DebtCommand>,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, clap::Subcommand)]
enum DebtCommand {
    /// Apply a least-privilege suggestion on a running server: a policy suggestion (`ls-…`) is uploaded and activated as a new version, a membership suggestion (`lm-…`) removes the roles from the identity as one identity change; both with your reason and the suggestion id (the server recomputes the report first, so only a suggestion that is still current applies).
    Apply {
        /// The suggestion id (`ls-…` or `lm-…`), from `arbiter debt`.
        id: String,
        /// Why, for the change feed. Required.
        #[arg(long, value_parser = parse_reason)]
        reason: Reason,
        /// Apply even if the replay found decisions it would change.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        connection: ConnectionArgs,
    },
}

#[derive(Debug, clap::Args)]
struct ReportArgs {
    /// The server's data folder: its store (`arbiter.sqlite3`) and decision log (`decisions.sqlite3`); the score history goes to `debt.sqlite3` there.
    #[arg(long, default_value = "arbiter-data")]
    data_dir: PathBuf,
    /// Thresholds as JSON (any subset of the fields; see docs/debt.md). Default: `debt.json` in the data folder if present.
    #[arg(long, value_name = "FILE")]
    thresholds: Option<PathBuf>,
    /// Print the whole report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the report as a self-contained HTML page to this file.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Identities shown in the table.
    #[arg(long, default_value_t = 20, value_name = "N")]
    top: usize,
    /// Least-privilege suggestions for at most this many over-privileged identities (each checked by replaying the usage window; 0 for none).
    #[arg(long, default_value_t = 10, value_name = "N")]
    suggestions: usize,
    /// Do not keep this report's scores in the history.
    #[arg(long)]
    no_record: bool,
    /// Compute as of this time (seconds since the Unix epoch) instead of now.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<i64>,
}

pub(crate) fn run(args: DebtArgs) -> Result<ExitCode> {
    match args.command {
        Some(DebtCommand::Apply {
            id,
            reason,
            force,
            connection,
        }) => apply(&id, &reason, force, &connection),
        None => report(&args.report),
    }
}

fn thresholds(args: &ReportArgs) -> Result<Thresholds> {
    let (path, required) = match &args.thresholds {
        Some(path) => (path.clone(), true),
        None => (args.data_dir.join("debt.json"), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("invalid thresholds in `{}`", path.display())),
        Err(err) if !required && err.kind() == std::io::ErrorKind::NotFound => {
            Ok(Thresholds::default())
        }
        Err(err) => Err(err).with_context(|| format!("cannot read `{}`", path.display())),
    }
}

/// Progress on stderr, at most about once a second per phase.
struct Progress {
    started: Instant,
    last: Mutex<(String, Instant)>,
    show: bool,
}

impl Progress {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: Mutex::new((String::new(), now)),
            show: std::io::stderr().is_terminal() || std::env::var_os("ARBITER_PROGRESS").is_some(),
        }
    }

    fn show(&self, phase: &str, done: u64, total: u64) {
        if !self.show {
            return;
        }
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let finished = total > 0 && done >= total;
        if last.0 == phase && !finished && now.duration_since(last.1) < Duration::from_secs(1) {
            return;
        }
        *last = (phase.to_owned(), now);
        if total == 0 {
            // Nothing counted yet (a server's run that is starting).
            eprintln!(
                "debt: {phase} after {:.1} s",
                self.started.elapsed().as_secs_f64()
            );
            return;
        }
        let percent = done as f64 * 100.0 / total as f64;
        eprintln!(
            "debt: {phase} {done}/{total} ({percent:.0}%) after {:.1} s",
            self.started.elapsed().as_secs_f64()
        );
    }
}

fn report(args: &ReportArgs) -> Result<ExitCode> {
    let store_path = args.data_dir.join("arbiter.sqlite3");
    let log_path = args.data_dir.join("decisions.sqlite3");
    if !store_path.exists() {
        return Err(anyhow!(
            "no governance store at `{}`: give the server's `--data-dir`",
            store_path.display()
        ));
    }
    let store = SqliteStore::open(&store_path)
        .with_context(|| format!("cannot open `{}`", store_path.display()))?;
    let log = LogDb::open_read_only(&log_path)
        .with_context(|| format!("cannot open `{}`", log_path.display()))?;
    let thresholds = thresholds(args)?;
    let now = args.now.unwrap_or_else(unix_now);
    let progress = Progress::new();
    let show = |phase: &str, done: u64, total: u64| progress.show(phase, done, total);
    let options = RunOptions {
        suggestions: args.suggestions,
        check: true,
    };
    let mut report = compute(&store, &log, &thresholds, now, options, Some(&show))
        .context("trust-debt report failed")?;
    let mut history = History::open(&args.data_dir.join("debt.sqlite3"))
        .context("cannot open the score history")?;
    if !args.no_record {
        history.record(&report)?;
    }
    report.history = history.trend("overall", "", 90)?;
    history.add_group_trends(&mut report, 90)?;
    if let Some(path) = &args.html {
        std::fs::write(path, html::render(&report))
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    } else {
        emit(&render(&report, args.top))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(report: &Report, top: usize) -> String {
    let scores = &report.scores;
    let mut out = format!(
        "Trust debt on {}: overall {:.1} (mean score of {} active non-human identities), {} findings on {} identities; {} decisions read ({} in the last {} days)\n",
        arbiter_debt::date(report.generated_at),
        scores.overall,
        report.identities_analysed,
        report.findings.len(),
        scores.identities_with_debt,
        report.usage.decisions,
        report.usage.window_decisions,
        report.thresholds.usage_window_days
    );
    if let [.., before, _] = report.history.as_slice() {
        out.push_str(&format!(
            "Trend: {:.1} on {} → {:.1} now\n",
            before.score,
            arbiter_debt::date(before.at),
            scores.overall
        ));
    }
    let owasp: Vec<String> = scores
        .by_owasp
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(item, count)| format!("{item} {count}"))
        .collect();
    out.push_str(&format!("By OWASP NHI item: {}\n\n", owasp.join(", ")));
    let mut table = Table::new(&["#", "IDENTITY", "SCORE", "OWNER", "TEAM", "FINDINGS"]);
    for (rank, debt) in report.ranking.iter().take(top).enumerate() {
        let findings: Vec<String> = report
            .findings
            .iter()
            .filter(|finding| finding.identity == debt.identity)
            .map(|finding| {
                format!(
                    "{} {} ({})",
                    finding.owasp,
                    finding.kind.as_str(),
                    finding.severity.as_str()
                )
            })
            .collect();
        table.row(vec![
            (rank + 1).to_string(),
            debt.identity.clone(),
            debt.score.to_string(),
            debt.owner.clone().unwrap_or_default(),
            debt.team.clone().unwrap_or_default(),
            findings.join(", "),
        ]);
    }
    if table.is_empty() {
        out.push_str("No trust debt found.\n");
    } else {
        out.push_str(&table.render());
        if report.ranking.len() > top {
            out.push_str(&format!(
                "… and {} more (--top N, or --json)\n",
                report.ranking.len() - top
            ));
        }
    }
    let shown: Vec<&str> = report
        .ranking
        .iter()
        .take(top)
        .map(|debt| debt.identity.as_str())
        .collect();
    let details: Vec<String> = report
        .findings
        .iter()
        .filter(|finding| shown.contains(&finding.identity.as_str()))
        .map(|finding| {
            format!(
                "  [{} {}] {}\n      fix: {}\n",
                finding.severity.as_str(),
                finding.owasp,
                clean(&finding.summary),
                clean(&finding.fix)
            )
        })
        .collect();
    if !details.is_empty() {
        out.push_str("\nFindings:\n");
        out.push_str(&details.concat());
    }
    if !report.suggestions.is_empty() {
        out.push_str(
            "\nLeast-privilege suggestions (apply with `arbiter debt apply <id> --reason …`):\n",
        );
        for suggestion in &report.suggestions {
            out.push_str(&format!(
                "  {}  {}\n      removes: {}\n",
                suggestion.id,
                clean(&suggestion.summary),
                suggestion.removes.join(", ")
            ));
        }
    }
    for (title, column, groups) in [
        ("Owners", "OWNER", &scores.owners),
        ("Teams", "TEAM", &scores.teams),
    ] {
        if groups.is_empty() {
            continue;
        }
        let mut table = Table::new(&[column, "POINTS", "Δ", "IDENTITIES", "WORST"]);
        for group in groups.iter().take(top) {
            table.row(vec![
                group.key.clone(),
                group.total.to_string(),
                delta(group.delta),
                group.identities.to_string(),
                group.max.to_string(),
            ]);
        }
        out.push_str(&format!(
            "\n{title} by debt points (Δ: since the last kept report):\n"
        ));
        out.push_str(&table.render());
        if groups.len() > top {
            out.push_str(&format!("… and {} more\n", groups.len() - top));
        }
    }
    out
}

/// A change of debt points for the table: `+5`, `-10`, `0`, or `new` with nothing kept before.
fn delta(delta: Option<i64>) -> String {
    match delta {
        None => "new".to_owned(),
        Some(delta) if delta > 0 => format!("+{delta}"),
        Some(delta) => delta.to_string(),
    }
}

fn apply(id: &str, reason: &Reason, force: bool, connection: &ConnectionArgs) -> Result<ExitCode> {
    let api = Api::new(connection)?;
    if id.starts_with("lm-") {
        return apply_membership(&api, id, reason, force, connection);
    }
    let report = fresh_report(&api, 100)?;
    let suggestion = report
        .get("suggestions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|suggestion| suggestion.get("id").and_then(Value::as_str) == Some(id))
        .ok_or_else(|| {
            anyhow!("no current suggestion `{id}`: run `arbiter debt` again (the policies or the usage may have changed)")
        })?;
    let changed = suggestion.pointer("/check/changed").and_then(Value::as_u64);
    if changed != Some(0) && !force {
        return Err(anyhow!(
            "suggestion `{id}` would change {} recorded decisions: review them, then pass --force to apply anyway",
            changed.map_or("an unknown number of".to_owned(), |n| n.to_string())
        ));
    }
    // Activated only if the version it was built from is still the active one: otherwise it
    // would undo whatever was activated since.
    let body = json!({
        "sources": suggestion.get("sources"),
        "reason": format!("{} (least-privilege suggestion {id})", reason.as_str()),
        "activate": true,
        "expected_active": suggestion.get("base_version"),
    });
    let answer = api.post(api.url(&["policies"]), &body, None)?;
    if connection.json {
        emit_json(&json!({"suggestion": suggestion, "applied": answer}))?;
    } else {
        emit(&format!(
            "applied {id}: policy version {} is active\n  {}\n  removed: {}\n",
            answer.get("version").unwrap_or(&Value::Null),
            clean(
                suggestion
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            suggestion
                .get("removes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A report the server computes from now on, in a run of its own (a big log takes longer than
/// a request may), followed to its end with its progress on stderr.
fn fresh_report(api: &Api, suggestions: usize) -> Result<Value> {
    let progress = Progress::new();
    let body = json!({"suggestions": suggestions});
    let mut waited = 0;
    let run = loop {
        match api.post(api.url(&["debt", "runs"]), &body, None) {
            Ok(run) => break run,
            // Someone else's run, on older data and maybe with fewer suggestions: let it end,
            // then start ours.
            Err(err)
                if waited < 3
                    && matches!(err.downcast_ref::<RemoteError>(),
                                Some(RemoteError::Refused(problem)) if problem.status == 409) =>
            {
                waited += 1;
                let running = api.get(api.url(&["debt", "runs", "latest"]))?;
                eprintln!(
                    "debt: waiting for the server's run {} to finish first",
                    running.get("id").and_then(Value::as_str).unwrap_or("?")
                );
                follow(api, running, &progress)?;
            }
            Err(err) => return Err(err.context("cannot start a trust-debt run on the server")),
        }
    };
    let run = follow(api, run, &progress)?;
    let id = run.get("id").and_then(Value::as_str).unwrap_or_default();
    if run.get("status").and_then(Value::as_str) != Some("succeeded") {
        return Err(anyhow!(
            "the server's trust-debt run `{id}` failed: {}",
            clean(
                run.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            )
        ));
    }
    let mut url = api.url(&["debt"]);
    url.query_pairs_mut().append_pair("run", id);
    api.get(url)
}

/// Polls a run until it is no longer running, showing its progress; its last status.
fn follow(api: &Api, mut run: Value, progress: &Progress) -> Result<Value> {
    let id = run
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("the server answered a run without an id"))?
        .to_owned();
    while run.get("status").and_then(Value::as_str) == Some("running") {
        let number = |field: &str| {
            run.pointer(&format!("/progress/{field}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let phase = run
            .pointer("/progress/phase")
            .and_then(Value::as_str)
            .unwrap_or("running");
        progress.show(&clean(phase), number("done"), number("total"));
        std::thread::sleep(Duration::from_millis(500));
        run = api.get(api.url(&["debt", "runs", &id]))?;
    }
    Ok(run)
}

/// A membership suggestion is applied by the server in one step: it recomputes the report,
/// checks the suggestion is current and harmless (unless `force`), and changes the identity
/// under its writer lock, refusing if its memberships moved on since.
fn apply_membership(
    api: &Api,
    id: &str,
    reason: &Reason,
    force: bool,
    connection: &ConnectionArgs,
) -> Result<ExitCode> {
    let body = json!({"reason": reason.as_str(), "force": force});
    let answer = api.post(api.url(&["debt", "suggestions", id, "apply"]), &body, None)?;
    if connection.json {
        emit_json(&answer)?;
    } else {
        let text = |pointer: &str| {
            answer
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let member_of: Vec<String> = answer
            .pointer("/applied/member_of")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|group| {
                format!(
                    "{}::{}",
                    group
                        .get("type")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    group.get("id").unwrap_or(&Value::Null)
                )
            })
            .collect();
        emit(&format!(
            "applied {id}: {} changed\n  {}\n  removed: {}\n  member of now: {}\n",
            text("/applied/identity"),
            clean(&text("/suggestion/summary")),
            answer
                .pointer("/suggestion/removes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            if member_of.is_empty() {
                "nothing".to_owned()
            } else {
                member_of.join(", ")
            }
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
