//! Replay and what-if over Arbiter's decision log.
//!
//! What it is: [`replay`] decides every recorded decision again, with the policy version it was
//! made with and the inventory as of the change-feed position it was made at, and reports any
//! decision whose outcome or determining policies come out differently (a bug, by definition:
//! a decision is a function of its snapshot, request and time). [`impact`] does the same walk
//! with a candidate policy set instead, or with a candidate inventory change made on top of each
//! recorded state ([`InventoryChange`], e.g. an identity taken out of a role), and reports which
//! recorded decisions it would change — the impact of a change, measured on real traffic
//! before it is made.
//! [`StateWalker`] is the part that rebuilds the inventory as of any position of the feed.
//!
//! What it is not: not on the decision path, and not a verifier of the log (that is
//! `arbiter_log::verify`; replay trusts the entries it reads). It writes nothing, to the log or
//! to the store.
//!
//! Key design decision: the walk goes forward only. Decisions are sorted by (change-feed
//! position, log position) and the inventory is advanced incrementally, with the engine's own
//! O(log n) operations, from one position to the next, so replaying a hundred thousand
//! decisions reads the feed once; each recorded policy version is compiled once; and the
//! decisions made on one state are decided on every core.

#![warn(missing_docs)]

mod report;
mod state;
mod walk;

pub use report::{
    impact, replay, Candidate, CandidateInfo, Changed, Example, Grouped, ImpactReport, Mismatch,
    ReplayReport, Tally, Transition, Unreplayable, Verdict,
};
pub use state::{InventoryChange, StateError, StateWalker};

use arbiter_engine::{EngineConfig, PolicyError, Schema};
use arbiter_log::LogError;
use arbiter_store::StoreError;

/// What can stop a replay or a what-if. A decision that cannot be replayed is not an error: it
/// is counted and listed in the report.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The decision log could not be read.
    #[error("decision log: {0}")]
    Log(#[from] LogError),
    /// The governance store could not be read.
    #[error("governance store: {0}")]
    Store(#[from] StoreError),
    /// The candidate policy set does not compile.
    #[error("the candidate policies do not compile:\n{0}")]
    Candidate(#[source] PolicyError),
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The Cedar schema the server ran with, if any: policies, inventories and requests are
    /// checked against it as the server checked them.
    pub schema: Option<Schema>,
    /// The engine configuration the server ran with.
    pub engine: EngineConfig,
    /// Only decisions made at or after this time (seconds since the Unix epoch).
    pub since: Option<i64>,
    /// Only decisions made before this time.
    pub until: Option<i64>,
    /// Examples kept per outcome transition in a what-if.
    pub examples: usize,
    /// Mismatches and unreplayable entries listed in full (all are counted).
    pub list_limit: usize,
    /// Subjects, actions and resources listed per grouping in a what-if (all are counted).
    pub group_limit: usize,
    /// Threads deciding; 0 for one per core.
    pub threads: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            schema: None,
            engine: EngineConfig::default(),
            since: None,
            until: None,
            examples: 5,
            list_limit: 100,
            group_limit: 20,
            threads: 0,
        }
    }
}
