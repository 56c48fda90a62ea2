//! The gateway over Streamable HTTP, at `/mcp`.
//!
//! Every HTTP request must carry an agent's bearer credential; one that does not is answered
//! 401 before MCP sees it. The identity is attached to the request and read by the session for
//! each message, so every message is decided as the credential's agent now.
//!
//! Sessions are tracked here: a session is opened only for an agent that is not contained
//! (403 otherwise), it is bound to the credential that opened it (a request into it with any
//! other credential is answered 404, as for a session that does not exist), and the gateway
//! closes it when its agent is contained or its credential removed (then 404, and a new
//! session is refused while the agent stays contained).

use crate::config::AgentIdentity;
use crate::gateway::{Gateway, Refusal};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use std::future::Future;
use std::sync::Arc;

/// MCP's session header.
const SESSION_HEADER: &str = "mcp-session-id";

#[derive(Clone)]
struct Endpoint {
    gateway: Gateway,
    sessions: Arc<LocalSessionManager>,
}

/// The router: MCP's Streamable HTTP endpoint at `/mcp`, behind the credential check.
pub fn router(gateway: Gateway) -> Router {
    let handlers = gateway.clone();
    let mut config = StreamableHttpServerConfig::default();
    if !gateway.allowed_hosts().is_empty() {
        config = config.with_allowed_hosts(gateway.allowed_hosts().iter().cloned());
    }
    let sessions = Arc::new(LocalSessionManager::default());
    let service =
        StreamableHttpService::new(move || Ok(handlers.session(None)), sessions.clone(), config);
    Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            Endpoint { gateway, sessions },
            authenticate,
        ))
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
    State(endpoint): State<Endpoint>,
    mut request: Request,
    next: Next,
) -> Response {
    let gateway = &endpoint.gateway;
    let credential = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| crate::config::token_hash(token.trim()));
    let Some((credential, identity)) = credential.and_then(|credential| {
        let identity = gateway.identity_for(&credential, now())?;
        Some((credential, identity))
    }) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid agent credential is required\n",
        )
            .into_response();
    };
    let session = request
        .headers()
        .get(SESSION_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    match session {
        Some(session) => {
            if !gateway.is_session_of(&session, &credential) {
                // Closed, unknown, or another credential's: as MCP says for a session that
                // ended, 404 (the client may open a new one, if it is still admitted).
                return (StatusCode::NOT_FOUND, "no such session\n").into_response();
            }
            let closing = request.method() == Method::DELETE;
            request.extensions_mut().insert::<AgentIdentity>(identity);
            let response = next.run(request).await;
            if closing && response.status().is_success() {
                gateway.forget(&session);
            }
            response
        }
        // Without a session, only a POST can open one (or be answered without one).
        None if request.method() == Method::POST => {
            let version = match gateway.admit(&identity).await {
                Ok(version) => version,
                Err(Refusal::Contained(reason)) => {
                    tracing::warn!(subject = %identity.subject, %reason, "session refused: the agent is contained");
                    return (
                        StatusCode::FORBIDDEN,
                        "this agent is contained in Arbiter (quarantined, suspended or revoked): no session is opened\n",
                    )
                        .into_response();
                }
                Err(Refusal::Unavailable(error)) => {
                    tracing::error!(%error, "session refused: no answer on containment (fail closed)");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "authorization unavailable: no session is opened (fail closed)\n",
                    )
                        .into_response();
                }
            };
            request
                .extensions_mut()
                .insert::<AgentIdentity>(identity.clone());
            let response = next.run(request).await;
            if let Some(opened) = response
                .headers()
                .get(SESSION_HEADER)
                .and_then(|value| value.to_str().ok())
            {
                gateway.opened_http(
                    opened.to_owned(),
                    identity,
                    credential,
                    endpoint.sessions.clone(),
                    version,
                );
            }
            response
        }
        None => {
            request.extensions_mut().insert::<AgentIdentity>(identity);
            next.run(request).await
        }
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
