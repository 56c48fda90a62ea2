//! Shadow evaluation: a candidate policy version decides alongside the active one on live
//! traffic, is never enforced, and every decision where the two differ is recorded in the log
//! (a `shadow_difference` notice) and counted.

use crate::admin::{check, policy_problem};
use crate::audit::Decided;
use crate::problem::ApiError;
use crate::state::compile;
use crate::{now, read_json, AppStateRef};
use arbiter_engine::{DecideOptions, PolicySet, Snapshot};
use arbiter_log::{Entry, NoticeEntry};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The version in shadow and what it has seen so far.
pub(crate) struct Shadow {
    pub(crate) version: u64,
    pub(crate) policies: Arc<PolicySet>,
    pub(crate) decided: AtomicU64,
    pub(crate) differing: AtomicU64,
    pub(crate) since: i64,
}

/// Decides `decided` again under the shadow version, if one runs, and returns a notice for each
/// decision whose outcome differs. Never changes the decisions themselves.
pub(crate) fn differences(
    state: &AppStateRef,
    snapshot: &Snapshot,
    decided: &[Decided],
) -> Vec<Entry> {
    let Some(shadow) = state.shadow.load_full() else {
        return Vec::new();
    };
    let candidate = snapshot.with_policies(Arc::clone(&shadow.policies));
    let mut notices = Vec::new();
    for item in decided {
        let active = &item.decision;
        let shadowed = candidate.decide(
            &item.request,
            &DecideOptions {
                now: active.decided_at,
                decision_id: active.id.clone(),
                explain: true,
            },
        );
        shadow.decided.fetch_add(1, Ordering::Relaxed);
        let differs = shadowed.outcome != active.outcome;
        metrics::counter!("arbiter_shadow_decisions_total", "differs" => if differs { "true" } else { "false" })
            .increment(1);
        if !differs {
            continue;
        }
        shadow.differing.fetch_add(1, Ordering::Relaxed);
        notices.push(Entry::Notice(NoticeEntry {
            kind: "shadow_difference".into(),
            at: active.decided_at,
            message: format!(
                "policy version {} in shadow would have answered {} where version {} answered {}",
                shadow.version,
                shadowed.outcome.as_str(),
                active.snapshot.policy_version,
                active.outcome.as_str()
            ),
            detail: json!({
                "decision_id": active.id,
                "request": item.request.to_value(),
                "active": {"version": active.snapshot.policy_version, "outcome": active.outcome, "reason_admin": active.reason_admin},
                "shadow": {
                    "version": shadow.version,
                    "outcome": shadowed.outcome,
                    "determining": shadowed.determining.iter().map(|policy| policy.id.as_str()).collect::<Vec<_>>(),
                    "reason_admin": shadowed.reason_admin,
                },
            }),
        }));
    }
    notices
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShadowChange {
    reason: String,
}

/// `POST /admin/v1/policies/{version}/shadow`: run `version` in shadow from now on.
pub(crate) async fn start(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(version): Path<u64>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "policies.activate")?;
    let change: ShadowChange = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("shadow", err.to_string()))?;
    if change.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "running a version in shadow needs a reason",
        ));
    }
    state.audit_or_404()?;
    let state2 = state.clone();
    let policies = tokio::task::spawn_blocking(move || {
        let stored = state2.store.get_policy_version(version)?;
        compile(&stored.sources, state2.schema.as_deref(), version).map_err(policy_problem)
    })
    .await
    .map_err(ApiError::internal)??;
    state.shadow.store(Some(Arc::new(Shadow {
        version,
        policies: Arc::new(policies),
        decided: AtomicU64::new(0),
        differing: AtomicU64::new(0),
        since: now(),
    })));
    note(
        &state,
        "shadow_started",
        version,
        &caller.principal.id,
        &change.reason,
    )
    .await;
    Ok(Json(json!({"shadow_version": version})))
}

/// `DELETE /admin/v1/policies/shadow`: stop shadow evaluation; returns its final counts.
pub(crate) async fn stop(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "policies.activate")?;
    let Some(shadow) = state.shadow.swap(None) else {
        return Err(ApiError::not_found("no policy version runs in shadow"));
    };
    let status = status_of(&shadow);
    note(
        &state,
        "shadow_stopped",
        shadow.version,
        &caller.principal.id,
        "stopped",
    )
    .await;
    Ok(Json(status))
}

/// `GET /admin/v1/policies/shadow`: which version runs in shadow, how many decisions it has
/// seen and how many it would have answered differently.
pub(crate) async fn status(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    check(&state, &headers, "policies.read")?;
    match state.shadow.load_full() {
        Some(shadow) => Ok(Json(status_of(&shadow))),
        None => Ok(Json(json!({"shadow_version": null}))),
    }
}

fn status_of(shadow: &Shadow) -> Value {
    json!({
        "shadow_version": shadow.version,
        "since": shadow.since,
        "decided": shadow.decided.load(Ordering::Relaxed),
        "differing": shadow.differing.load(Ordering::Relaxed),
    })
}

async fn note(state: &AppStateRef, kind: &str, version: u64, actor: &str, reason: &str) {
    let Some(audit) = &state.audit else {
        return;
    };
    let notice = Entry::Notice(NoticeEntry {
        kind: kind.into(),
        at: now(),
        message: format!("policy version {version}: {kind} by {actor}: {reason}"),
        detail: json!({"version": version, "actor": actor, "reason": reason}),
    });
    if let Err(error) = audit.log.append(&[notice]).await {
        tracing::error!(%error, "could not record the shadow change in the decision log");
    }
}
