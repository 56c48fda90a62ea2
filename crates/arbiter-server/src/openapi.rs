//! The OpenAPI document, served at `/openapi.json`.

use crate::auth::authorize;
use crate::problem::ApiError;
use crate::{now, AppStateRef};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde_json::Value;

/// Kept as a file beside the code so that it is reviewed like code.
const DOCUMENT: &str = include_str!("../openapi.json");

pub(crate) async fn document(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    authorize(
        &state.governance,
        &state.keys.load(),
        &headers,
        "discovery.read",
        now(),
    )?;
    serde_json::from_str(DOCUMENT)
        .map(Json)
        .map_err(ApiError::internal)
}
