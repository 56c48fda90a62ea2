//! The server over loopback, with a real SQLite store: the AuthZEN interop suites, the
//! administration API, who may call what, and hostile input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

mod admin;
mod approvals;
mod controls;
mod debt;
mod hostile;
mod interop;
mod log;
mod race;
mod support;
mod timeouts;
mod tls;
