//! The gateway end to end over loopback with real parts: an Arbiter server with a durable
//! decision log, an MCP server written for the tests with rmcp, the public
//! `@modelcontextprotocol/server-filesystem` from npm, and rmcp clients.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

mod fail_closed;
mod filesystem;
mod sessions;
mod support;
mod test_server;
