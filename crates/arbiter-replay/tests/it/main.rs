//! Replay and what-if on real SQLite files: a store changed over time, decisions made on the
//! snapshots a server would have held, logged through the real writer, then replayed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests fail loudly by design"
)]

mod fixture;
mod large;
mod membership;
mod scenario;
mod server;
mod walker;
