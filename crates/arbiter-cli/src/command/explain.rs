//! `arbiter explain`: one decision, explained for a person.

use crate::bundle::BundleArgs;
use crate::command::options_now;
use crate::render::render_decision;
use anyhow::{anyhow, Context, Result};
use arbiter_core::{parse_request, RequestLimits};
use std::io::Read;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub(crate) struct ExplainArgs {
    #[command(flatten)]
    bundle: BundleArgs,
    /// The AuthZEN evaluation request as JSON; read from standard input when absent.
    #[arg(long, short = 'r')]
    request: Option<String>,
    /// Decide as of this time (seconds since the Unix epoch) instead of now.
    #[arg(long)]
    now: Option<i64>,
    /// Print the decision as JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: ExplainArgs) -> Result<ExitCode> {
    let snapshot = args.bundle.read()?.load()?;
    let text = match args.request {
        Some(text) => text,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read the request from standard input")?;
            text
        }
    };
    let request = parse_request(text.trim(), RequestLimits::default())
        .map_err(|err| anyhow!("invalid request: {err}"))?;
    let decision = snapshot.decide(&request, &options_now(args.now, true));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&decision)?);
    } else {
        print!(
            "{}",
            render_decision(&request, &decision, snapshot.policies().len())
        );
    }
    Ok(ExitCode::SUCCESS)
}
