//! Deciding and recording without HTTP, for an enforcement point that runs in the same process
//! as the server's state (the MCP gateway's in-process mode).
//!
//! The answers are exactly what `POST /access/v1/evaluation` answers, through the same code:
//! the engine decides on the published snapshot, `approval_required` opens or spends an
//! approval, and every decision is recorded in the log before it is answered (a decision the
//! log could not keep is a deny). A state without a decision log denies everything: an
//! in-process enforcement point must never decide unrecorded.

use crate::audit::{self, Decided};
use crate::auth::{Caller, Role};
use crate::{approvals, authzen, AppState};
use arbiter_core::{DecisionRequest, EntityRef};
use serde_json::{json, Value};
use std::sync::Arc;

/// Decides `requests` as the enforcement point `caller_name` and records them, answering each
/// with AuthZEN's response (`decision` and Arbiter's `context`: id, outcome, reasons, approval).
///
/// With `settle_approvals` off, an `approval_required` decision neither opens an approval request
/// nor spends a grant: that is for filtering lists, which must not ask people for anything.
pub async fn evaluate(
    state: &Arc<AppState>,
    caller_name: &str,
    requests: Vec<DecisionRequest>,
    settle_approvals: bool,
) -> Vec<Value> {
    if state.audit.is_none() {
        return requests
            .iter()
            .map(|_| {
                json!({"decision": false, "context": {
                    "outcome": "deny",
                    "reason_admin": {"en": "denied: this server keeps no decision log, so nothing is decided in process (fail closed)"},
                    "reason_user": {"en": "Access denied: decisions cannot be recorded right now."},
                }})
            })
            .collect();
    }
    let caller = Caller {
        principal: EntityRef::new("ApiKey", format!("in-process:{caller_name}")),
        role: Some(Role::EnforcementPoint),
        name: caller_name.to_owned(),
        acts_for: None,
    };
    let snapshot = state.decisions.load();
    let mut decided: Vec<Decided> = requests
        .into_iter()
        .map(|request| authzen::decide_timed(&snapshot, request, "in-process"))
        .collect();
    if settle_approvals {
        approvals::settle(state, &snapshot, &mut decided).await;
    }
    audit::record(state, &caller, "in-process", &snapshot, &mut decided).await;
    decided
        .iter()
        .map(|item| approvals::answer(item, authzen::response(&item.decision)))
        .collect()
}

/// The snapshot decisions are made against now, for an in-process enforcement point that must
/// notice a change between decisions. Nothing decided on it is recorded, so it may only restrict
/// (the MCP gateway closes the sessions of an agent once it is contained), never let through.
pub fn snapshot(state: &AppState) -> Arc<arbiter_engine::Snapshot> {
    state.decisions.load()
}

/// The state of approval request `id` (`pending`, `approved`, `denied` or `expired`), as
/// `GET /admin/v1/approvals/{id}` reports it.
pub async fn approval_state(state: &Arc<AppState>, id: &str) -> Result<String, String> {
    let store = state.store.clone();
    let wanted = id.to_owned();
    let record = tokio::task::spawn_blocking(move || store.get_approval(&wanted))
        .await
        .map_err(|err| err.to_string())?
        .map_err(|err| err.to_string())?;
    let expired = record.state == "pending" && record.expires_at <= crate::now();
    Ok(if expired {
        "expired".to_owned()
    } else {
        record.state
    })
}
