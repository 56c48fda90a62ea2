//! Integration tests for the test kit: the generator itself, and the differential test of
//! Arbiter's engine against Cedar's reference authorizer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

mod differential;
mod generator;
