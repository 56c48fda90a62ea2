//! `arbiter replay`: decide the logged decisions again, each on the state it was made on, and
//! report any that come out differently (a bug); or, with a candidate policy set, report which
//! recorded decisions it would change before it is activated.

use crate::command::admin::{clean, emit, facts, format_time, Table};
use anyhow::{anyhow, Context, Result};
use arbiter_engine::{PolicySource, Schema};
use arbiter_log::LogDb;
use arbiter_replay::{
    impact, replay, Candidate, Grouped, ImpactReport, ReplayOptions, ReplayReport, Tally,
    Unreplayable, Verdict,
};
use arbiter_store::SqliteStore;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Runs with fewer decisions than this show no progress.
const PROGRESS_FROM: u64 = 10_000;

#[derive(Debug, clap::Args)]
pub(crate) struct ReplayArgs {
    /// The server's data folder: its store (`arbiter.sqlite3`) and decision log (`decisions.sqlite3`).
    #[arg(long, default_value = "arbiter-data")]
    data_dir: PathBuf,
    /// What-if: decide with these policies instead (a `.cedar` file, or a folder whose `.cedar` files are read in name order), named by file name as `arbiter policies upload` names them.
    #[arg(long, value_name = "DIR", conflicts_with = "with_version")]
    with_policies: Option<PathBuf>,
    /// What-if: decide with this stored policy version instead (e.g. one uploaded but not activated).
    #[arg(long, value_name = "N")]
    with_version: Option<u64>,
    /// The Cedar schema the server runs with, if any.
    #[arg(long, short = 's')]
    schema: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// What-if: examples shown for each change of outcome.
    #[arg(long, default_value_t = 5, value_name = "N")]
    examples: usize,
    /// Only decisions made at or after this time (seconds since the Unix epoch).
    #[arg(long, value_name = "UNIX_SECONDS")]
    since: Option<i64>,
    /// Only decisions made before this time (seconds since the Unix epoch).
    #[arg(long, value_name = "UNIX_SECONDS")]
    until: Option<i64>,
}

/// Exit codes: 0 when every decision is reproduced (replay) or the report was produced
/// (what-if); 1 when a decision is not reproduced, mismatched or not replayable; 2 on errors.
pub(crate) fn run(args: ReplayArgs) -> Result<ExitCode> {
    let store_path = args.data_dir.join("arbiter.sqlite3");
    let log_path = args.data_dir.join("decisions.sqlite3");
    // Opening a store creates it when missing; a replay must not invent an empty one.
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
    let options = ReplayOptions {
        schema: read_schema(args.schema.as_deref())?,
        since: args.since,
        until: args.until,
        examples: args.examples,
        ..ReplayOptions::default()
    };
    let candidate = match (&args.with_policies, args.with_version) {
        (Some(path), _) => Some(Candidate::Sources(policy_sources(path)?)),
        (None, Some(version)) => Some(Candidate::Version(version)),
        (None, None) => None,
    };
    let progress = Progress::new();
    let report_progress = |done: u64, total: u64| progress.show(done, total);
    let started = Instant::now();
    match candidate {
        None => {
            let report =
                replay(&store, &log, &options, Some(&report_progress)).context("replay failed")?;
            progress.finish();
            if args.json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&render_replay(&report, &log_path, started.elapsed()))?;
            }
            Ok(if report.all_reproduced() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Some(candidate) => {
            let report = impact(&store, &log, &candidate, &options, Some(&report_progress))
                .context("what-if failed")?;
            progress.finish();
            if args.json {
                emit(&format!("{}\n", serde_json::to_string_pretty(&report)?))?;
            } else {
                emit(&render_impact(&report, started.elapsed()))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_schema(path: Option<&Path>) -> Result<Option<Schema>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    Schema::parse(&path.display().to_string(), &text)
        .map(Some)
        .map_err(|errors| {
            anyhow!(
                "invalid schema:\n{}",
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
}

/// `.cedar` files named by file name, the way `arbiter policies upload` stores them, so that
/// policy ids (which include the source name when there are several) match the uploaded set.
fn policy_sources(path: &Path) -> Result<Vec<PolicySource>> {
    let files = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read folder `{}`", path.display()))?
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|file| file.extension().is_some_and(|ext| ext == "cedar"))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(anyhow!("no `.cedar` files in `{}`", path.display()));
        }
        files
    } else {
        vec![path.to_path_buf()]
    };
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string());
            Ok(PolicySource { name, text })
        })
        .collect()
}

/// Progress on standard error for long runs: one line rewritten in place on a terminal, a
/// line every tenth otherwise.
struct Progress {
    terminal: bool,
    last: std::cell::Cell<Option<Instant>>,
    last_tenth: std::cell::Cell<u64>,
    shown: std::cell::Cell<bool>,
}

impl Progress {
    fn new() -> Self {
        Self {
            terminal: std::io::stderr().is_terminal(),
            last: std::cell::Cell::new(None),
            last_tenth: std::cell::Cell::new(0),
            shown: std::cell::Cell::new(false),
        }
    }

    fn show(&self, done: u64, total: u64) {
        if total < PROGRESS_FROM {
            return;
        }
        let percent = done * 100 / total.max(1);
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let due = self
                .last
                .get()
                .is_none_or(|last| last.elapsed() >= Duration::from_millis(100));
            if due || done == total {
                self.last.set(Some(Instant::now()));
                let _ = write!(err, "\rreplaying: {done} of {total} decisions ({percent}%)");
                let _ = err.flush();
                self.shown.set(true);
            }
        } else {
            let tenth = done * 10 / total.max(1);
            if tenth > self.last_tenth.get() {
                self.last_tenth.set(tenth);
                let _ = writeln!(err, "replaying: {done} of {total} decisions ({percent}%)");
            }
        }
    }

    fn finish(&self) {
        if self.shown.get() {
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

fn render_replay(report: &ReplayReport, log_path: &Path, elapsed: Duration) -> String {
    let versions = report
        .policy_versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "replayed {} decisions from `{}` in {:.1} s ({} states, policy versions {})\n",
        report.total,
        log_path.display(),
        elapsed.as_secs_f64(),
        report.states,
        if versions.is_empty() { "-" } else { &versions },
    );
    out.push_str(&facts(&[
        ("reproduced", report.reproduced.to_string()),
        ("mismatched", report.mismatched.to_string()),
        ("not replayable", report.unreplayable.to_string()),
    ]));
    render_pruned(&mut out, report.pruned);
    if report.mismatched > 0 {
        out.push_str(&format!(
            "\nMISMATCH: {} decisions came out differently on the state they were made on. \
             A decision is a function of its state, request and time, so this is a bug: \
             please report it with this output.\n",
            report.mismatched
        ));
        let mut table = Table::new(&[
            "SEQ",
            "DECISION",
            "DECIDED AT",
            "SUBJECT",
            "ACTION",
            "RESOURCE",
            "RECORDED",
            "REPLAYED",
        ]);
        for mismatch in &report.mismatches {
            table.row(vec![
                mismatch.seq.to_string(),
                mismatch.decision_id.clone(),
                format_time(mismatch.decided_at),
                mismatch.subject.clone(),
                mismatch.action.clone(),
                mismatch.resource.clone(),
                mismatch.recorded.outcome.as_str().to_owned(),
                mismatch.replayed.outcome.as_str().to_owned(),
            ]);
        }
        out.push_str(&table.render());
        for mismatch in &report.mismatches {
            out.push_str(&format!(
                "\n{} (policy version {}, change {}):\n{}{}",
                clean(&mismatch.decision_id),
                mismatch.policy_version,
                mismatch.change_seq,
                verdict_line("recorded", &mismatch.recorded),
                verdict_line("replayed", &mismatch.replayed),
            ));
        }
        if report.mismatched > report.mismatches.len() as u64 {
            out.push_str(&format!(
                "… and {} more (use --json, or narrow with --since/--until)\n",
                report.mismatched - report.mismatches.len() as u64
            ));
        }
    }
    render_unreplayable(
        &mut out,
        report.unreplayable,
        &report.unreplayable_reasons,
        &report.unreplayable_entries,
    );
    if report.all_reproduced() {
        out.push_str(&format!("\nall {} decisions reproduced\n", report.total));
    }
    out
}

fn render_impact(report: &ImpactReport, elapsed: Duration) -> String {
    let candidate = match report.candidate.version {
        Some(version) => format!("policy version {version}"),
        None => "the given policies".to_owned(),
    };
    let mut out = format!(
        "what-if: {candidate} ({} policies, digest {}…) against {} recorded decisions, in {:.1} s\n",
        report.candidate.policies,
        report.candidate.digest.get(..12).unwrap_or(&report.candidate.digest),
        report.total,
        elapsed.as_secs_f64(),
    );
    let percent = if report.evaluated == 0 {
        0.0
    } else {
        report.changed as f64 * 100.0 / report.evaluated as f64
    };
    out.push_str(&facts(&[
        (
            "would change",
            format!("{} ({percent:.2}%)", report.changed),
        ),
        ("unchanged", report.unchanged.to_string()),
        (
            "  decided by other policies",
            report.determining_changed.to_string(),
        ),
        ("not replayable", report.unreplayable.to_string()),
    ]));
    render_pruned(&mut out, report.pruned);
    if report.redacted > 0 {
        out.push_str(&format!(
            "note: {} requests were recorded with redacted fields; the candidate saw keyed hashes instead of their values\n",
            report.redacted
        ));
    }
    if report.changed > 0 {
        let mut table = Table::new(&["RECORDED", "CANDIDATE", "DECISIONS"]);
        for transition in &report.transitions {
            table.row(vec![
                transition.from.as_str().to_owned(),
                transition.to.as_str().to_owned(),
                transition.count.to_string(),
            ]);
        }
        out.push('\n');
        out.push_str(&table.render());
        for (title, grouped) in [
            ("IDENTITY", &report.by_subject),
            ("ACTION", &report.by_action),
            ("RESOURCE", &report.by_resource),
        ] {
            out.push('\n');
            out.push_str(&render_grouped(title, grouped));
        }
        for transition in &report.transitions {
            out.push_str(&format!(
                "\n{} → {}: {} decisions, for example:\n",
                transition.from.as_str(),
                transition.to.as_str(),
                transition.count
            ));
            for example in &transition.examples {
                out.push_str(&format!(
                    "  seq {}  {}  {}  {} {} {}\n{}{}",
                    example.seq,
                    clean(&example.decision_id),
                    format_time(example.decided_at),
                    clean(&example.subject),
                    clean(&example.action),
                    clean(&example.resource),
                    verdict_line("was", &example.recorded),
                    verdict_line("now", &example.candidate),
                ));
            }
        }
    }
    render_unreplayable(
        &mut out,
        report.unreplayable,
        &report.unreplayable_reasons,
        &report.unreplayable_entries,
    );
    out
}

fn render_pruned(out: &mut String, pruned: u64) {
    if pruned > 0 {
        out.push_str(&format!(
            "note: {pruned} more decisions in range were pruned by retention (their requests are gone) and are not counted\n"
        ));
    }
}

fn render_grouped(title: &'static str, grouped: &Grouped) -> String {
    let mut table = Table::new(&[title, "CHANGES"]);
    for tally in &grouped.top {
        table.row(vec![tally.key.clone(), tally.count.to_string()]);
    }
    let mut out = table.render();
    let listed = grouped.top.len() as u64;
    if grouped.distinct > listed {
        out.push_str(&format!(
            "… and {} more (use --json)\n",
            grouped.distinct - listed
        ));
    }
    out
}

fn verdict_line(label: &str, verdict: &Verdict) -> String {
    let policies = if verdict.determining.is_empty() {
        String::new()
    } else {
        format!(" [{}]", verdict.determining.join(", "))
    };
    format!(
        "    {label:<8} {}{}: {}\n",
        verdict.outcome.as_str(),
        clean(&policies),
        clean(&verdict.reason_admin)
    )
}

fn render_unreplayable(out: &mut String, count: u64, reasons: &[Tally], entries: &[Unreplayable]) {
    if count == 0 {
        return;
    }
    out.push_str(&format!(
        "\nNOT REPLAYABLE: {count} decisions could not be decided again:\n"
    ));
    let mut table = Table::new(&["DECISIONS", "REASON"]);
    for tally in reasons {
        table.row(vec![tally.count.to_string(), tally.key.clone()]);
    }
    out.push_str(&table.render());
    let mut table = Table::new(&["SEQ", "DECISION", "REASON"]);
    for entry in entries.iter().take(20) {
        table.row(vec![
            entry.seq.to_string(),
            entry.decision_id.clone(),
            entry.reason.clone(),
        ]);
    }
    out.push('\n');
    out.push_str(&table.render());
    if count > 20 {
        out.push_str(&format!("… and {} more (use --json)\n", count - 20));
    }
}
