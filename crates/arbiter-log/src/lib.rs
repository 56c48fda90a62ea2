//! Arbiter's decision log: every decision and governance change, kept append-only, provably
//! untouched, searchable and replayable.
//!
//! - [`record`]: what an entry holds, and its leaf hash.
//! - [`merkle`]: the Certificate Transparency Merkle tree over the entries.
//! - [`checkpoint`]: signed tree heads and the Ed25519 key that signs them.
//! - [`db`]: the SQLite file the entries live in.
//! - [`writer`]: the group-commit writer and the [`DecisionLog`] handle callers append through.
//! - [`verify`](mod@verify): full verification, and inclusion proofs for one entry.
//! - [`postings`]: the block index searches use.
//! - [`query`]: searching entries.
//! - [`usage`]: decisions read from the search columns alone, for usage analysis.
//!
//! Invariants: an entry is never changed or removed once written; entry `n` has seq `n` with no
//! gaps; after every commit the latest checkpoint covers every entry, and its signature is made
//! with a key the database does not hold.

#![warn(missing_docs)]

pub mod checkpoint;
pub mod db;
pub mod merkle;
pub mod postings;
pub mod query;
pub mod record;
pub mod usage;
pub mod verify;
pub mod writer;

pub use checkpoint::{Checkpoint, LogKey};
pub use db::LogDb;
pub use query::{EntryQuery, StoredEntry};
pub use record::{ApprovalNote, CallerInfo, ChangeEntry, DecisionEntry, Entry, NoticeEntry};
pub use usage::DecisionColumns;
pub use verify::{verify, InclusionProof, Problem, VerifyOptions, VerifyReport};
pub use writer::{DecisionLog, Durability, LogConfig, LogHealth, Retention, RetentionReport};

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The database failed.
    #[error("log database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A file could not be read or written.
    #[error("log file: {0}")]
    Io(#[from] std::io::Error),
    /// An entry could not be (de)serialised.
    #[error("log entry JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The signing key could not be loaded.
    #[error("log key: {0}")]
    Key(String),
    /// The stored log is inconsistent.
    #[error("log is damaged: {0}")]
    Corrupt(String),
    /// The log file does not exist.
    #[error("no decision log at {0}")]
    Missing(String),
    /// The writer is failing: decisions are denied until it recovers.
    #[error("decision log unavailable: {0}")]
    Unavailable(String),
    /// The writer has stopped.
    #[error("decision log writer has stopped")]
    Closed,
    /// A search asked for something invalid.
    #[error("`{field}`: {message}")]
    InvalidQuery {
        /// The parameter at fault.
        field: String,
        /// Why.
        message: String,
    },
}
