//! The gateway over Streamable HTTP, at `/mcp`.
//!
//! Every HTTP request must carry an agent's bearer credential; one that does not is answered
//! 401 before MCP sees it. The identity is attached to the request and read by the session for
//! each message, so a session has no identity of its own to outlive a revocation: quarantining
//! or revoking the agent in Arbiter denies its very next message, in every open session.

use crate::config::AgentIdentity;
use crate::gateway::Gateway;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::future::Future;
use std::sync::Arc;

/// The router: MCP's Streamable HTTP endpoint at `/mcp`, behind the credential check.
pub fn router(gateway: Gateway) -> Router {
    let sessions = gateway.clone();
    let mut config = StreamableHttpServerConfig::default();
    if !gateway.allowed_hosts().is_empty() {
        config = config.with_allowed_hosts(gateway.allowed_hosts().iter().cloned());
    }
    let service = StreamableHttpService::new(
        move || Ok(sessions.session(None)),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(gateway, authenticate))
}

/// Serves on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(gateway))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn authenticate(
    State(gateway): State<Gateway>,
    mut request: Request,
    next: Next,
) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let identity: Option<AgentIdentity> =
        token.and_then(|token| gateway.authenticate(token, now()));
    match identity {
        Some(identity) => {
            request.extensions_mut().insert(identity);
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid agent credential is required\n",
        )
            .into_response(),
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
