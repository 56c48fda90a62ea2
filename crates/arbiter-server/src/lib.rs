//! `arbiter serve`: the OpenID AuthZEN 1.0 decision API and Arbiter's administration API over
//! HTTP, on top of the decision engine and a store.
//!
//! What it is: a thin axum layer. Each handler authenticates, asks Arbiter's own engine whether
//! the caller may use the route (Arbiter governs itself), parses, calls the engine or the store,
//! and maps the result. What it is not: a place for decision logic.
//!
//! Key design decision: decisions read the published snapshot and never touch the store; an
//! administration change is stored first and published second, one writer at a time, so the
//! next decision after a 2xx sees it.

mod admin;
mod approvals;
mod audit;
mod auth;
mod authzen;
mod controls;
mod debt;
pub mod decide_api;
mod openapi;
mod problem;
mod shadow;
pub mod signal_rules;
pub mod sinks;
mod state;
mod tls;

pub use audit::Redaction;
pub use auth::{hash_key, Role, BUILT_IN_POLICIES};
pub use problem::ApiError;
pub use state::{AppState, Bootstrap, NewKeys, ServerConfig};
pub use tls::{TlsConfig, TlsListener};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, OnceLock};

pub(crate) type AppStateRef = Arc<AppState>;

/// The HTTP router over shared state.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.max_body_bytes;
    Router::new()
        .route("/access/v1/evaluation", post(authzen::evaluation))
        .route("/access/v1/evaluations", post(authzen::evaluations))
        .route("/access/v1/search/subject", post(authzen::search_subject))
        .route("/access/v1/search/resource", post(authzen::search_resource))
        .route("/access/v1/search/action", post(authzen::search_action))
        .route(
            "/.well-known/authzen-configuration",
            get(authzen::configuration),
        )
        .route(
            "/admin/v1/identities",
            get(admin::list_identities).post(admin::create_identity),
        )
        .route(
            "/admin/v1/identities/{kind}/{id}",
            get(admin::get_identity)
                .put(admin::put_identity)
                .delete(admin::delete_identity),
        )
        .route(
            "/admin/v1/identities/{kind}/{id}/lifecycle",
            post(admin::set_lifecycle),
        )
        .route(
            "/admin/v1/groups",
            get(admin::list_groups).put(admin::put_group),
        )
        .route(
            "/admin/v1/resources",
            get(admin::list_resources).put(admin::put_resource),
        )
        .route(
            "/admin/v1/signals",
            get(admin::list_signals).put(admin::put_signal),
        )
        .route(
            "/admin/v1/policies",
            get(admin::list_policies).post(admin::upload_policies),
        )
        .route(
            "/admin/v1/policies/validate",
            post(admin::validate_policies),
        )
        .route(
            "/admin/v1/policies/rollback",
            post(admin::rollback_policies),
        )
        .route(
            "/admin/v1/policies/shadow",
            get(shadow::status).delete(shadow::stop),
        )
        .route("/admin/v1/policies/{version}/shadow", post(shadow::start))
        .route("/admin/v1/policies/{version}/impact", post(audit::impact))
        .route("/admin/v1/policies/{version}", get(admin::get_policy))
        .route(
            "/admin/v1/policies/{version}/activate",
            post(admin::activate_policies),
        )
        .route(
            "/admin/v1/keys",
            get(admin::list_keys).post(admin::create_key),
        )
        .route(
            "/admin/v1/keys/{id}",
            axum::routing::delete(admin::revoke_key),
        )
        .route("/admin/v1/changes", get(admin::changes))
        .route("/admin/v1/decisions", get(audit::search))
        .route("/admin/v1/decisions/{id}", get(audit::get))
        .route("/admin/v1/decisions/{id}/proof", get(audit::proof))
        .route("/admin/v1/log/checkpoints", get(audit::checkpoints))
        .route("/admin/v1/approvals", get(approvals::list))
        .route("/admin/v1/approvals/{id}", get(approvals::get))
        .route("/admin/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/admin/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/admin/v1/log/retention", post(audit::retention))
        .route(
            "/admin/v1/controls",
            get(controls::list).post(controls::place),
        )
        .route("/admin/v1/controls/{id}/lift", post(controls::lift))
        .route("/admin/v1/debt", get(debt::get))
        .route("/admin/v1/debt/report.html", get(debt::page))
        .route("/admin/v1/debt/runs", post(debt::start))
        .route("/admin/v1/debt/runs/{id}", get(debt::run_status))
        .route("/admin/v1/debt/publish", post(debt::publish))
        .route("/admin/v1/debt/suggestions/{id}/apply", post(debt::apply))
        .route("/openapi.json", get(openapi::document))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::after_admin_write,
        ))
        .layer(axum::middleware::from_fn(echo_request_id))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    audit::copy_changes(&state)
        .await
        .map_err(std::io::Error::other)?;
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves over TLS until `shutdown` resolves.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: &TlsConfig,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.acceptor().map_err(std::io::Error::other)?;
    audit::copy_changes(&state)
        .await
        .map_err(std::io::Error::other)?;
    axum::serve(TlsListener::new(listener, acceptor)?, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The process-wide Prometheus recorder (metrics macros need a global one).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full(
                        "arbiter_decision_seconds".to_owned(),
                    ),
                    &[
                        1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 1e-2,
                    ],
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then this handle just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A body as strict JSON: size limit, nesting limit, no duplicate keys.
pub(crate) fn read_json(
    body: Result<Bytes, BytesRejection>,
    state: &AppState,
) -> Result<Value, problem::ApiError> {
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            problem::ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request too large",
                format!(
                    "the body is over the limit of {} bytes",
                    state.config.max_body_bytes
                ),
            )
        } else {
            problem::ApiError::bad_request("$", rejection.body_text())
        }
    })?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| problem::ApiError::bad_request("$", "body is not UTF-8"))?;
    arbiter_core::parse_strict_json(text, state.config.limits.max_depth)
        .map_err(|err| problem::ApiError::bad_request("$", format!("invalid JSON: {err}")))
}

/// Bounds every request in time. A decision that cannot be made in time is a deny with a reason.
async fn time_limit(State(state): State<AppStateRef>, request: Request, next: Next) -> Response {
    let is_decision = request.uri().path().starts_with("/access/");
    match tokio::time::timeout(state.config.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) if is_decision => {
            metrics::counter!("arbiter_request_timeouts_total", "api" => "access").increment(1);
            Json(json!({
                "decision": false,
                "context": {
                    "outcome": "deny",
                    "reason_admin": {"en": "denied: the request did not complete within the time limit (fail closed)"},
                    "reason_user": {"en": "denied: request timed out"},
                }
            }))
            .into_response()
        }
        Err(_) => {
            metrics::counter!("arbiter_request_timeouts_total", "api" => "admin").increment(1);
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timed out",
                "the request did not complete within the time limit",
            )
            .into_response()
        }
    }
}

async fn echo_request_id(request: Request, next: Next) -> Response {
    let request_id: Option<HeaderValue> = request.headers().get("x-request-id").cloned();
    let mut response = next.run(request).await;
    if let Some(request_id) = request_id {
        response.headers_mut().insert("x-request-id", request_id);
    }
    response
}

async fn health(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(
        &state.governance,
        &state.keys.load(),
        &headers,
        "health.read",
        now(),
    )?;
    Ok(Json(json!({"status": "ok"})))
}

async fn ready(State(state): State<AppStateRef>, headers: HeaderMap) -> Result<Response, ApiError> {
    auth::authorize(
        &state.governance,
        &state.keys.load(),
        &headers,
        "health.read",
        now(),
    )?;
    let store = state.store.clone();
    let store_ok = tokio::task::spawn_blocking(move || store.latest_seq().is_ok())
        .await
        .unwrap_or(false);
    let snapshot = state.decisions.load();
    let log_failure = state.log_failure();
    let ready = store_ok && log_failure.is_none();
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "store": store_ok,
        "decision_log": match (&state.audit, &log_failure) {
            (None, _) => json!({"enabled": false}),
            (Some(audit), None) => json!({"enabled": true, "writable": true, "committed": audit.log.health().committed()}),
            (Some(audit), Some(error)) => json!({"enabled": true, "writable": false, "error": error, "failures": audit.log.health().failures()}),
        },
        "policy_version": snapshot.policies().version(),
        "policies": snapshot.policies().len(),
        "inventory_version": snapshot.inventory().version(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(body)).into_response())
}

async fn metrics_text(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<String, ApiError> {
    auth::authorize(
        &state.governance,
        &state.keys.load(),
        &headers,
        "metrics.read",
        now(),
    )?;
    let snapshot = state.decisions.load();
    metrics::gauge!("arbiter_policy_version").set(snapshot.policies().version() as f64);
    metrics::gauge!("arbiter_inventory_version").set(snapshot.inventory().version() as f64);
    metrics::gauge!("arbiter_inventory_entities").set(snapshot.inventory().len() as f64);
    Ok(state.metrics.render())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
