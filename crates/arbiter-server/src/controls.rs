//! Runtime controls over the API: place graduated containment (observe, require approval,
//! downgrade to an overlay, quarantine with a safe set) on an identity, owner, credential, tool
//! or MCP server, with a reason and an optional expiry; list; lift.
//!
//! Placing and lifting need `lifecycle.write` (the same authority as quarantining an identity);
//! listing needs `identities.read`. A control takes effect on the very next decision: it is
//! published in the same write that stores it, under the writer lock.

use crate::admin::{blocking, check, ok, parse, ApiResult};
use crate::problem::ApiError;
use crate::{now, read_json, AppStateRef};
use arbiter_core::{Control, ControlLevel, EntityRef};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

/// `POST /admin/v1/controls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceControl {
    target: EntityRef,
    level: ControlLevel,
    #[serde(default)]
    overlay: Option<String>,
    #[serde(default)]
    safe_actions: Vec<String>,
    /// Seconds from now until it lifts itself.
    #[serde(default)]
    expires_in: Option<u64>,
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LiftControl {
    reason: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// Include lifted controls (history).
    #[serde(default)]
    all: bool,
}

pub(crate) async fn list(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> ApiResult {
    check(&state, &headers, "identities.read")?;
    let store = state.store.clone();
    ok(blocking(move || Ok(store.list_controls(query.all)?)).await?)
}

pub(crate) async fn place(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "lifecycle.write")?;
    let request: PlaceControl = parse(read_json(body, &state)?, "control")?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason", "a control needs a reason"));
    }
    let at = now();
    let expires_at = match request.expires_in {
        None => None,
        Some(0) => {
            return Err(ApiError::bad_request(
                "expires_in",
                "must be at least 1 second",
            ))
        }
        Some(seconds) => Some(
            i64::try_from(seconds)
                .ok()
                .and_then(|seconds| at.checked_add(seconds))
                .ok_or_else(|| ApiError::bad_request("expires_in", "too large"))?,
        ),
    };
    let actor = caller.actor();
    let control = Control {
        id: format!("ctl_{}", uuid::Uuid::now_v7().simple()),
        target: request.target,
        level: request.level,
        overlay: request.overlay,
        safe_actions: request.safe_actions,
        reason: request.reason,
        placed_by: actor.id.clone(),
        placed_at: at,
        expires_at,
    };
    let state2 = state.clone();
    let placed = blocking(move || {
        state2.write(|snapshot| {
            if !snapshot.inventory().contains(&control.target) {
                return Err(ApiError::not_found(format!(
                    "unknown target `{}`: controls apply to identities, groups and resources in \
                     the inventory",
                    control.target
                )));
            }
            if let Some(overlay) = &control.overlay {
                if !snapshot.policies().has_overlay(overlay) {
                    let known: Vec<&str> = snapshot.policies().overlay_names().collect();
                    return Err(ApiError::bad_request(
                        "overlay",
                        format!(
                            "no overlay `{overlay}` in the active policy set (known: {})",
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ),
                    ));
                }
            }
            // The store validates the rest (a downgrade names an overlay, only a quarantine has
            // a safe set) before anything is published.
            let seq = state2
                .store
                .place_control(&control, &actor, &control.reason)?;
            snapshot.inventory_mut().set_control(control.clone())?;
            tracing::warn!(control = %control.id, target = %control.target, level = control.level.as_str(), "control placed");
            Ok((control, seq))
        })
    })
    .await?;
    let (control, seq) = placed;
    ok(json!({"control": control, "change_seq": seq}))
}

pub(crate) async fn lift(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "lifecycle.write")?;
    let request: LiftControl = parse(read_json(body, &state)?, "lift")?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "lifting a control needs a reason",
        ));
    }
    let state2 = state.clone();
    let (control, seq) = blocking(move || {
        state2.write(|snapshot| {
            let lifted = state2
                .store
                .lift_control(&id, &caller.actor(), &request.reason)?;
            snapshot.inventory_mut().lift_control(&id);
            Ok(lifted)
        })
    })
    .await?;
    ok(json!({"lifted": control, "change_seq": seq}))
}
