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
mod containment;
pub mod decider;
pub mod gateway;
pub mod http;
mod mapping;
mod sessions;
mod upstream;

pub use config::{AgentIdentity, GatewayConfig};
pub use decider::{Decider, RemoteArbiter};
pub use gateway::{Gateway, Session};
pub use upstream::UpstreamError;

use rmcp::ServiceExt;

/// Serves one MCP session over `transport` (stdin and stdout for `arbiter gateway --stdio`) as
/// `identity`, until the client closes it or the agent is contained.
///
/// A contained agent gets no session, and an open session ends once its agent is contained
/// (within `session_check_ms` of the change); both are errors that say why.
pub async fn serve_session<T, E, A>(
    gateway: &Gateway,
    identity: AgentIdentity,
    transport: T,
) -> Result<(), String>
where
    T: rmcp::transport::IntoTransport<rmcp::RoleServer, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let version = match gateway.admit(&identity).await {
        Ok(version) => version,
        Err(gateway::Refusal::Contained(reason)) => {
            return Err(format!(
                "agent `{}` is contained, so no session is opened: {reason}",
                identity.subject
            ))
        }
        Err(gateway::Refusal::Unavailable(error)) => {
            return Err(format!("no session is opened (fail closed): {error}"))
        }
    };
    let (key, mut closed) = gateway.opened_stdio(identity.clone(), version);
    let running = match gateway.session(Some(identity)).serve(transport).await {
        Ok(running) => running,
        Err(err) => {
            gateway.forget(&key);
            return Err(err.to_string());
        }
    };
    let cancel = running.cancellation_token();
    let waiting = running.waiting();
    tokio::pin!(waiting);
    // Why the gateway ends the session (the guard of `wait_for` is not held across an await).
    let told = async {
        closed
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|reason| reason.clone())
            .unwrap_or_else(|| "the gateway stopped".to_owned())
    };
    let ended = tokio::select! {
        quit = &mut waiting => quit.map(|_| ()).map_err(|err| err.to_string()),
        reason = told => {
            // Stop serving and let the transport close before saying why.
            cancel.cancel();
            let _ = waiting.await;
            Err(format!("session closed: {reason}"))
        }
    };
    gateway.forget(&key);
    ended
}
