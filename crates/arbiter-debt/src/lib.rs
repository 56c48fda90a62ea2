//! Trust debt: how much more trust Arbiter's identities carry than their use justifies, where it
//! sits, and how to pay it back.
//!
//! What it is: an analysis over three inputs — the governed inventory (identities, owners,
//! credentials, signals), the active policy sources, and usage aggregated from the decision
//! log's search columns ([`Usage`]) — that produces [`Finding`]s (each with its identity,
//! severity, evidence with numbers and dates, its OWASP Non-Human Identity Top 10 (2025) item
//! and a concrete fix), scores per identity, owner, team and overall ([`score`]), the figures
//! policies read as `principal.debt` ([`DebtFigures`]), and least-privilege suggestions that
//! the what-if replay checks against recorded decisions ([`suggest`]). [`History`] keeps the
//! scores over time in `debt.sqlite3`; [`html`] renders the report for a browser.
//!
//! What it is not: not on the decision path. The server publishes the figures into the
//! inventory as an ordinary identity attribute (`debt`), so a decision that reads them stays a
//! function of its snapshot and replays like any other.
//!
//! Key design decision: usage comes from the log's indexed columns, never from entry bodies,
//! and is interned as it streams, so ten million decisions cost one table walk and memory in
//! proportion to distinct identities, actions, resources and policies, not to decisions.

#![warn(missing_docs)]

mod config;
mod findings;
mod grants;
mod history;
pub mod html;
mod report;
mod run;
pub mod score;
pub mod suggest;
mod usage;

pub use config::Thresholds;
pub use findings::{Finding, FindingKind, Owasp, Severity};
pub use grants::{Grant, Grants};
pub use history::{History, HistoryPoint};
pub use report::{analyse, set_figures, DebtFigures, IdentityDebt, Inputs, Report, DEBT_ATTRIBUTE};
pub use run::{active_sources, compute, RunOptions};
pub use score::{GroupPoint, GroupScore, Scores};
pub use suggest::{MembershipBase, Suggestion, SuggestionChange, SuggestionKind};
pub use usage::{PrincipalUsage, Usage};

/// What can stop a report. Findings are never errors.
#[derive(Debug, thiserror::Error)]
pub enum DebtError {
    /// The decision log could not be read.
    #[error("decision log: {0}")]
    Log(#[from] arbiter_log::LogError),
    /// The governance store could not be read.
    #[error("governance store: {0}")]
    Store(#[from] arbiter_store::StoreError),
    /// The what-if replay failed.
    #[error("what-if: {0}")]
    Replay(#[from] arbiter_replay::ReplayError),
    /// The active policies do not parse.
    #[error("policy `{source_name}`: {message}")]
    Policy {
        /// The source file.
        source_name: String,
        /// Cedar's message.
        message: String,
    },
    /// The score history database failed.
    #[error("score history: {0}")]
    History(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One step of a long computation: `phase` (`usage`, `findings`, `suggestions`), how much of
/// it is done and how much there is.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) + Sync);

/// Seconds in a day: thresholds are in days, time is in seconds.
pub const DAY: i64 = 86_400;

/// `YYYY-MM-DD` (UTC) for a time in seconds since the Unix epoch.
pub fn date(at: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(at)
        .map(|moment| moment.date().to_string())
        .unwrap_or_else(|_| at.to_string())
}
