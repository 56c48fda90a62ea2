//! `arbiter check`: decide a stream of AuthZEN requests, one JSON line out per line in.

use crate::bundle::BundleArgs;
use crate::command::options_now;
use anyhow::{Context, Result};
use arbiter_core::{parse_request, Decision, Outcome, RequestLimits};
use arbiter_engine::Snapshot;
use serde_json::json;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    bundle: BundleArgs,
    /// JSON Lines of AuthZEN evaluation requests; standard input when absent.
    #[arg(long, short = 'r')]
    requests: Option<PathBuf>,
    /// Decide as of this time (seconds since the Unix epoch) instead of now.
    #[arg(long)]
    now: Option<i64>,
    /// Leave out the condition-level explanation (faster, smaller output).
    #[arg(long)]
    no_explain: bool,
    /// Largest accepted request line, in bytes.
    #[arg(long, default_value_t = RequestLimits::default().max_bytes)]
    max_request_bytes: usize,
    /// Deepest accepted JSON nesting in a request.
    #[arg(long, default_value_t = RequestLimits::default().max_depth)]
    max_request_depth: usize,
}

/// Counts for the closing summary.
#[derive(Debug, Default)]
struct Tally {
    allow: usize,
    deny: usize,
    approval_required: usize,
    invalid: usize,
}

pub(crate) fn run(args: CheckArgs) -> Result<ExitCode> {
    let snapshot = args.bundle.read()?.load()?;
    let limits = RequestLimits {
        max_bytes: args.max_request_bytes,
        max_depth: args.max_request_depth,
    };
    let input: Box<dyn BufRead> = match &args.requests {
        Some(path) => Box::new(std::io::BufReader::new(
            std::fs::File::open(path)
                .with_context(|| format!("cannot open `{}`", path.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut out = BufWriter::new(std::io::stdout().lock());
    let started = Instant::now();
    let tally = check_lines(
        &snapshot,
        input,
        &mut out,
        limits,
        args.now,
        !args.no_explain,
    )?;
    out.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let total = tally.allow + tally.deny + tally.approval_required + tally.invalid;
    eprintln!(
        "checked {total} requests in {:.3} s ({:.0} decisions/s): {} allow, {} deny, {} approval_required, {} invalid",
        elapsed,
        if elapsed > 0.0 { total as f64 / elapsed } else { 0.0 },
        tally.allow,
        tally.deny,
        tally.approval_required,
        tally.invalid,
    );
    Ok(ExitCode::SUCCESS)
}

fn check_lines(
    snapshot: &Snapshot,
    input: impl BufRead,
    out: &mut impl Write,
    limits: RequestLimits,
    now: Option<i64>,
    explain: bool,
) -> Result<Tally> {
    let mut tally = Tally::default();
    for (idx, line) in input.lines().enumerate() {
        let line_number = idx + 1;
        let line = match line {
            Ok(line) => line,
            Err(err) => {
                // Not UTF-8, or unreadable: report it and go on with the next line.
                tally.invalid += 1;
                write_error(out, line_number, "$", &format!("unreadable line: {err}"))?;
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match parse_request(&line, limits) {
            Ok(request) => {
                let decision = snapshot.decide(&request, &options_now(now, explain));
                match decision.outcome {
                    Outcome::Allow => tally.allow += 1,
                    Outcome::Deny => tally.deny += 1,
                    Outcome::ApprovalRequired => tally.approval_required += 1,
                }
                serde_json::to_writer(&mut *out, &authzen_response(&decision))?;
                out.write_all(b"\n")?;
            }
            Err(err) => {
                tally.invalid += 1;
                write_error(out, line_number, &err.field, &err.reason)?;
            }
        }
    }
    Ok(tally)
}

/// AuthZEN's response shape, with Arbiter's decision in `context`.
pub(crate) fn authzen_response(decision: &Decision) -> serde_json::Value {
    json!({"decision": decision.is_allowed(), "context": decision})
}

fn write_error(out: &mut impl Write, line: usize, field: &str, reason: &str) -> Result<()> {
    // `decision: false` so that a script reading only `.decision` still fails closed.
    let error =
        json!({"decision": false, "error": {"line": line, "field": field, "reason": reason}});
    serde_json::to_writer(&mut *out, &error)?;
    out.write_all(b"\n")?;
    Ok(())
}
