//! `arbiter`: the command line. Thin: parse arguments, call a command, report errors.

mod bundle;
mod command;
mod render;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

// A decision allocates many small, short-lived objects (Cedar values, the slice, the trace);
// with glibc's allocator a third of a decision's CPU went to malloc and free. mimalloc makes a
// decision about a quarter cheaper, for about 80 MiB more resident memory at 100k identities
// and 10k policies (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runtime authorization and governance for AI agents and other non-human identities.
#[derive(Debug, Parser)]
#[command(name = "arbiter", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decide requests (AuthZEN JSON Lines) against policies and an inventory; one JSON line out per request.
    Check(command::check::CheckArgs),
    /// Decide one request and explain it for a person.
    Explain(command::explain::ExplainArgs),
    /// Run the AuthZEN decision API and the administration API on an embedded SQLite store.
    Serve(command::serve::ServeArgs),
    /// Walk through a demo: allow, deny with its explanation, approval required, quarantine.
    Demo(command::demo::DemoArgs),
    /// List, show, create and delete identities on a server; quarantine, suspend, revoke, reinstate.
    Identities(command::identities::IdentitiesArgs),
    /// Policy versions on a server: list, show, validate, upload, activate, roll back.
    Policies(command::policies::PoliciesArgs),
    /// API keys on a server: list, create (shown once), revoke.
    Keys(command::keys::KeysArgs),
    /// The server's change feed: who changed what, when and why.
    Changes(command::changes::ChangesArgs),
    /// Runtime controls on a server: observe, require approval, downgrade, quarantine; list; lift.
    Controls(command::controls::ControlsArgs),
    /// Quarantine an identity, owner, tool or MCP server on a server (all but `--safe-action`s denied).
    Quarantine(command::controls::QuarantineArgs),
    /// Approval requests on a server: list, show (and wait), approve, deny.
    Approvals(command::approvals::ApprovalsArgs),
    /// The decision log on a server: search, show, export, follow, prove.
    Decisions(command::decisions::DecisionsArgs),
    /// Verify the decision log's files against its signed checkpoints; export checkpoints; check proofs.
    Audit(command::audit::AuditArgs),
    /// Decide logged decisions again on the state they were made on and report any that differ; with candidate policies, what they would change.
    Replay(command::replay::ReplayArgs),
    /// Trust debt: identities ranked by score, findings mapped to the OWASP NHI Top 10 with evidence and fixes, least-privilege suggestions checked by replay (`apply` applies one); `--json`, `--html FILE`.
    Debt(command::debt::DebtArgs),
    /// The MCP gateway: agents reach tools only through Arbiter's decisions (`run`, `token`).
    Gateway(command::gateway::GatewayArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => command::check::run(args),
        Command::Explain(args) => command::explain::run(args),
        Command::Demo(args) => command::demo::run(args),
        Command::Serve(args) => command::serve::run(args),
        Command::Identities(args) => command::identities::run(args),
        Command::Policies(args) => command::policies::run(args),
        Command::Keys(args) => command::keys::run(args),
        Command::Changes(args) => command::changes::run(args),
        Command::Replay(args) => command::replay::run(args),
        Command::Decisions(args) => command::decisions::run(args),
        Command::Approvals(args) => command::approvals::run(args),
        Command::Controls(args) => command::controls::run(args),
        Command::Quarantine(args) => command::controls::run_quarantine(args),
        Command::Audit(args) => command::audit::run(args),
        Command::Debt(args) => command::debt::run(args),
        Command::Gateway(args) => command::gateway::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
