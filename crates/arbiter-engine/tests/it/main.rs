//! Integration tests for the decision engine, through its public API only.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

mod cascade;
mod controls;
mod decide;
mod inventory;
mod loading;
mod properties;
mod snapshots;
