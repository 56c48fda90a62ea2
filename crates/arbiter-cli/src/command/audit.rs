//! `arbiter audit`: verify the decision log, export its checkpoints, check an inclusion proof.
//!
//! These read the log's files directly, never through the server: a verifier should not have
//! to trust the process it is checking.

use crate::command::serve::LogPaths;
use anyhow::{bail, Context, Result};
use arbiter_log::checkpoint::{public_key_path, read_public_key};
use arbiter_log::{verify, Checkpoint, InclusionProof, LogDb, VerifyOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// Check every entry against the signed checkpoints; name each entry that is wrong.
    Verify {
        #[command(flatten)]
        log: LogArgs,
        /// Checkpoints kept elsewhere (JSON Lines, as `audit checkpoints` writes them); any that
        /// is newer than the log reveals a truncation or a restored older copy. Repeatable. The
        /// witness file in the data folder is always used.
        #[arg(long)]
        checkpoints: Vec<PathBuf>,
        /// Recompute entries from this seq on (earlier ones are still bound by the checkpoints).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// … up to this seq.
        #[arg(long)]
        to: Option<u64>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the log's signed checkpoints as JSON Lines, for a third party to keep.
    Checkpoints {
        #[command(flatten)]
        log: LogArgs,
    },
    /// Check an inclusion proof (from `arbiter decisions proof`) with the log's public key.
    CheckProof {
        /// The proof, as JSON.
        proof: PathBuf,
        /// The log's public key file (`ed25519.key.pub`).
        #[arg(long)]
        public_key: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The server's data folder.
    #[arg(long, default_value = "arbiter-data")]
    data_dir: PathBuf,
    /// The log's public key. Default: the one beside the server's signing key.
    #[arg(long)]
    public_key: Option<PathBuf>,
}

impl LogArgs {
    fn paths(&self) -> LogPaths {
        LogPaths::new(&self.data_dir, None)
    }

    fn public_key(&self) -> PathBuf {
        self.public_key
            .clone()
            .unwrap_or_else(|| public_key_path(&self.paths().key))
    }
}

pub(crate) fn run(args: AuditArgs) -> Result<ExitCode> {
    match args.command {
        AuditCommand::Verify {
            log,
            checkpoints,
            from,
            to,
            json,
        } => verify_log(&log, &checkpoints, from, to, json),
        AuditCommand::Checkpoints { log } => {
            let db = LogDb::open_read_only(&log.paths().database)?;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for checkpoint in db.checkpoints()? {
                writeln!(out, "{}", serde_json::to_string(&checkpoint)?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckProof { proof, public_key } => {
            let text = std::fs::read_to_string(&proof)
                .with_context(|| format!("cannot read `{}`", proof.display()))?;
            let proof: InclusionProof =
                serde_json::from_str(&text).context("not an inclusion proof")?;
            let key = read_public_key(&public_key)?;
            match proof.check(&key) {
                Ok(()) => {
                    println!(
                        "ok: entry {} is in the log of {} entries whose root {} was signed at {}",
                        proof.seq,
                        proof.checkpoint.size,
                        proof.checkpoint.root,
                        proof.checkpoint.at
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(problem) => {
                    println!("FAILED: {problem}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn verify_log(
    log: &LogArgs,
    kept: &[PathBuf],
    from: u64,
    to: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let paths = log.paths();
    let db = LogDb::open_read_only(&paths.database)?;
    let public_key = read_public_key(&log.public_key())?;
    let mut external = Vec::new();
    if paths.witness.exists() {
        external.extend(read_checkpoints(&paths.witness)?);
    }
    for path in kept {
        external.extend(read_checkpoints(path)?);
    }
    let progress = |done: u64, total: u64| eprintln!("verified {done} of {total} entries");
    let started = std::time::Instant::now();
    let report = verify(
        &db,
        &VerifyOptions {
            public_key,
            external,
            from,
            to,
            progress: Some(&progress),
        },
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.ok() {
        println!(
            "ok: {} entries, {} recomputed, {} checkpoint checks, in {:.2} s",
            report.entries,
            report.rehashed,
            report.checkpoints_checked,
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "FAILED: {} problems in {} entries",
            report.problem_count, report.entries
        );
        for problem in &report.problems {
            match problem.seq {
                Some(seq) => println!("  entry {seq}: {}", problem.message),
                None => println!("  {}", problem.message),
            }
        }
    }
    Ok(if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_checkpoints(path: &Path) -> Result<Vec<Checkpoint>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut checkpoints = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(checkpoint) => checkpoints.push(checkpoint),
            // A torn last line (a crash mid-append) is expected; anything else is not.
            Err(_) if number + 1 == text.lines().count() => {}
            Err(err) => bail!("{}:{}: not a checkpoint: {err}", path.display(), number + 1),
        }
    }
    Ok(checkpoints)
}
