//! `arbiter gateway`: an MCP gateway through which agents reach tools only with Arbiter's
//! decision.
//!
//! What it is: an MCP server to agents (over stdio or Streamable HTTP) and an MCP client to one
//! or more upstream MCP servers. Every `tools/call`, `resources/read` and `prompts/get` is
//! decided by Arbiter's engine, with the arguments and the tool's annotations as the server
//! listed them, and recorded in the decision log before it is forwarded; `tools/list`,
//! `resources/list` and `prompts/list` show only what the agent may use. What it is not: a
//! policy engine. Decisions come from a running `arbiter serve` (AuthZEN) or from the server's
//! state in this process, through the same code that records them.
//!
//! Key design decision: fail closed. No decision (Arbiter unreachable, an error, a timeout,
//! a log that cannot be written) means the call is refused with an MCP error; nothing is ever
//! forwarded without an `allow` that was recorded. See docs/gateway.md.

#![warn(missing_docs)]

pub mod config;
pub mod decider;
pub mod gateway;
pub mod http;
mod mapping;
mod upstream;

pub use config::{AgentIdentity, GatewayConfig};
pub use decider::{Decider, RemoteArbiter};
pub use gateway::{Gateway, Session};
pub use upstream::UpstreamError;

use rmcp::ServiceExt;

/// Serves one MCP session over `transport` (stdin and stdout for `arbiter gateway --stdio`) as
/// `identity`, until the client closes it.
pub async fn serve_session<T, E, A>(
    gateway: &Gateway,
    identity: AgentIdentity,
    transport: T,
) -> Result<(), String>
where
    T: rmcp::transport::IntoTransport<rmcp::RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let running = gateway
        .session(Some(identity))
        .serve(transport)
        .await
        .map_err(|err| err.to_string())?;
    running.waiting().await.map_err(|err| err.to_string())?;
    Ok(())
}
