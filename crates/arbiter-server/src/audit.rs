//! The decision log as the server uses it.
//!
//! Every decision is recorded before it is answered; in the default durable mode that means
//! committed and fsynced. A decision that cannot be recorded is answered deny, with the reason,
//! so a broken log never lets anything through unrecorded. Governance changes reach the log from
//! the store's change feed, which is gap-free: a change stored while the log was failing is
//! copied when it recovers, and none is copied twice.

use crate::auth::Caller;
use crate::problem::ApiError;
use crate::{now, AppStateRef};
use arbiter_core::{Decision, DecisionError, DecisionRequest, Outcome};
use arbiter_engine::Snapshot;
use arbiter_log::{
    CallerInfo, ChangeEntry, DecisionEntry, DecisionLog, Entry, EntryQuery, LogDb, LogError,
};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::path::PathBuf;

/// A decision with what the log needs besides it.
pub(crate) struct Decided {
    pub(crate) request: DecisionRequest,
    /// The engine's decision (a log failure turns it into a deny).
    pub(crate) decision: Decision,
    pub(crate) latency_us: u64,
    /// The approval it asked for or used (see `approvals::settle`).
    pub(crate) approval: Option<arbiter_log::ApprovalNote>,
}

/// Which request fields are sensitive and how to keep them.
#[derive(Debug, Clone, Default)]
pub struct Redaction {
    /// JSON pointers into the AuthZEN request, e.g. `/context/ssn` or
    /// `/resource/properties/token`.
    pub pointers: Vec<String>,
    /// With a key, a redacted value is kept as its HMAC-SHA-256, so equal values can still be
    /// matched; without one it is dropped.
    pub key: Option<Vec<u8>>,
}

/// The log, its reader, and where the change feed has been copied up to.
pub(crate) struct Audit {
    pub(crate) log: DecisionLog,
    pub(crate) path: PathBuf,
    pub(crate) redaction: Redaction,
    /// Serialises copying the change feed; holds the last change seq copied.
    pub(crate) copied: tokio::sync::Mutex<u64>,
}

impl Audit {
    pub(crate) fn new(
        log: DecisionLog,
        path: PathBuf,
        redaction: Redaction,
    ) -> Result<Self, String> {
        let copied = LogDb::open_read_only(&path)
            .and_then(|db| last_change_copied(&db))
            .map_err(|err| err.to_string())?;
        Ok(Self {
            log,
            path,
            redaction,
            copied: tokio::sync::Mutex::new(copied),
        })
    }

    fn reader(&self) -> Result<LogDb, ApiError> {
        LogDb::open_read_only(&self.path).map_err(ApiError::internal)
    }
}

fn last_change_copied(db: &LogDb) -> Result<u64, LogError> {
    let found = db.search(&EntryQuery {
        kind: Some("change".into()),
        newest_first: true,
        limit: Some(1),
        ..EntryQuery::default()
    })?;
    Ok(found
        .first()
        .and_then(|entry| entry.entry.get("change_seq"))
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

/// Records decisions; if they cannot be recorded, turns every one into a deny that says why.
pub(crate) async fn record(
    state: &AppStateRef,
    caller: &Caller,
    endpoint: &str,
    snapshot: &Snapshot,
    decided: &mut [Decided],
) {
    let Some(audit) = &state.audit else {
        return;
    };
    if decided.is_empty() {
        return;
    }
    let mut entries: Vec<Entry> = decided
        .iter()
        .map(|item| entry(audit, caller, endpoint, snapshot, item))
        .collect();
    entries.extend(crate::shadow::differences(state, snapshot, decided));
    if let Err(error) = audit.log.append(&entries).await {
        metrics::counter!("arbiter_decisions_unrecorded_total").increment(decided.len() as u64);
        for item in decided.iter_mut() {
            deny_unrecorded(&mut item.decision, &error);
            item.approval = None;
        }
    }
}

fn entry(
    audit: &Audit,
    caller: &Caller,
    endpoint: &str,
    snapshot: &Snapshot,
    item: &Decided,
) -> Entry {
    let mut request = item.request.to_value();
    let mut decision = item.decision.clone();
    let redacted = redact(&audit.redaction, &mut request, &mut decision);
    let owner = snapshot
        .inventory()
        .governance(&item.request.subject.entity)
        .and_then(|governance| governance.owner.as_ref())
        .map(arbiter_engine::from_uid);
    Entry::Decision(Box::new(DecisionEntry {
        endpoint: endpoint.to_owned(),
        caller: Some(CallerInfo {
            key_id: caller.principal.id.clone(),
            name: caller.name.clone(),
            role: caller
                .role
                .map_or("anonymous", crate::auth::Role::as_str)
                .to_owned(),
        }),
        request,
        owner,
        decision,
        latency_us: item.latency_us,
        redacted,
        approval: item.approval.clone(),
    }))
}

/// Fail closed: a decision the log could not keep is a deny.
fn deny_unrecorded(decision: &mut Decision, error: &LogError) {
    decision.outcome = Outcome::Deny;
    decision.determining.clear();
    decision.reason_admin = format!(
        "denied: the decision could not be recorded ({error}); every decision is denied until the decision log can be written again"
    );
    decision.reason_user = "Access denied: decisions cannot be recorded right now.".to_owned();
    decision.errors.push(DecisionError {
        policy: None,
        message: error.to_string(),
    });
}

/// Replaces sensitive request values (and the same values wherever the decision repeats them:
/// the enriched context and the values explanations saw) by a keyed hash or a marker. Returns
/// the pointers that were present and redacted.
fn redact(redaction: &Redaction, request: &mut Value, decision: &mut Decision) -> Vec<String> {
    let mut done = Vec::new();
    for pointer in &redaction.pointers {
        let Some(value) = request.pointer_mut(pointer) else {
            continue;
        };
        let original = std::mem::take(value);
        let replacement = match &redaction.key {
            Some(key) => {
                let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
                    Ok(mac) => mac,
                    Err(_) => continue,
                };
                mac.update(original.to_string().as_bytes());
                json!({"redacted": format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))})
            }
            None => json!({"redacted": true}),
        };
        *value = replacement.clone();
        if let Some(in_context) = pointer
            .strip_prefix("/context")
            .and_then(|rest| decision.context.pointer_mut(rest))
        {
            *in_context = replacement;
        }
        let needle = original.to_string();
        for hop in &mut decision.hops {
            for policy in &mut hop.explanation.policies {
                scrub(&mut policy.conditions, &needle);
            }
        }
        done.push(pointer.clone());
    }
    done
}

fn scrub(conditions: &mut [arbiter_core::ConditionTrace], needle: &str) {
    for condition in conditions {
        for seen in &mut condition.seen {
            if seen.value.contains(needle) {
                seen.value = "<redacted>".to_owned();
            }
        }
        scrub(&mut condition.parts, needle);
    }
}

/// Copies changes from the store's change feed into the log, from where it was left.
pub(crate) async fn copy_changes(state: &AppStateRef) -> Result<(), String> {
    let Some(audit) = &state.audit else {
        return Ok(());
    };
    let mut copied = audit.copied.lock().await;
    loop {
        let store = state.store.clone();
        let after = *copied;
        let changes = tokio::task::spawn_blocking(move || store.changes_since(after, 500))
            .await
            .map_err(|err| err.to_string())?
            .map_err(|err| err.to_string())?;
        let Some(last) = changes.last().map(|change| change.seq) else {
            return Ok(());
        };
        let entries: Vec<Entry> = changes
            .into_iter()
            .map(|change| {
                Entry::Change(ChangeEntry {
                    change_seq: change.seq,
                    at: change.at,
                    kind: change.kind,
                    subject: change.subject,
                    actor: change.actor.id,
                    actor_role: change.actor.role,
                    reason: change.reason,
                    detail: change.detail,
                })
            })
            .collect();
        audit
            .log
            .append(&entries)
            .await
            .map_err(|err| err.to_string())?;
        *copied = last;
    }
}

/// After an administration write, copy its change into the log. A failure here loses
/// nothing: the change is in the store's feed and is copied once the log recovers.
pub(crate) async fn after_admin_write(
    State(state): State<AppStateRef>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let writes =
        request.method() != axum::http::Method::GET && request.uri().path().starts_with("/admin/");
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        if let Err(error) = copy_changes(&state).await {
            tracing::error!(%error, "could not copy the change into the decision log; it will be copied once the log recovers");
        }
    }
    response
}

/// `GET /admin/v1/decisions`: search the log.
pub(crate) async fn search(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<EntryQuery>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "decisions.read")?;
    let audit = state.audit_or_404()?;
    let reader = audit.reader()?;
    let found = tokio::task::spawn_blocking(move || reader.search(&query))
        .await
        .map_err(ApiError::internal)?
        .map_err(|err| match err {
            LogError::InvalidQuery { field, message } => ApiError::bad_request(&field, message),
            other => ApiError::internal(other),
        })?;
    let next_after = found.last().map(|entry| entry.seq);
    Ok(Json(json!({"entries": found, "last_seq": next_after})))
}

/// `GET /admin/v1/decisions/{id}`: one decision's entry.
pub(crate) async fn get(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "decisions.read")?;
    let reader = state.audit_or_404()?.reader()?;
    let found = tokio::task::spawn_blocking(move || {
        reader.search(&EntryQuery {
            decision_id: Some(id),
            limit: Some(1),
            ..EntryQuery::default()
        })
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    match found.into_iter().next() {
        Some(entry) => Ok(Json(
            serde_json::to_value(entry).map_err(ApiError::internal)?,
        )),
        None => Err(ApiError::not_found("decision")),
    }
}

/// `GET /admin/v1/decisions/{id}/proof`: an inclusion proof against the latest checkpoint.
pub(crate) async fn proof(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "decisions.read")?;
    let reader = state.audit_or_404()?.reader()?;
    let proof = tokio::task::spawn_blocking(move || {
        let seq = reader
            .seq_of_decision(&id)
            .map_err(ApiError::internal)?
            .ok_or_else(|| ApiError::not_found("decision"))?;
        arbiter_log::verify::prove(&reader, seq).map_err(ApiError::internal)
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(
        serde_json::to_value(proof).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionRequest {
    keep_days: Option<u32>,
    keep_entries: Option<u64>,
    reason: String,
}

/// `POST /admin/v1/log/retention`: drop the bodies of old entries (their hashes and search
/// columns stay, so the log still verifies); the run is itself a signed entry.
pub(crate) async fn retention(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "log.manage")?;
    let request: RetentionRequest = serde_json::from_value(crate::read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("retention", err.to_string()))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason", "retention needs a reason"));
    }
    if request.keep_days.is_none() && request.keep_entries.is_none() {
        return Err(ApiError::bad_request(
            "keep_days",
            "give `keep_days`, `keep_entries` or both",
        ));
    }
    let audit = state.audit_or_404()?;
    let report = audit
        .log
        .retain(arbiter_log::Retention {
            keep_seconds: request.keep_days.map(|days| i64::from(days) * 86_400),
            keep_entries: request.keep_entries,
        })
        .await
        .map_err(|err| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "decision log unavailable",
                err.to_string(),
            )
        })?;
    tracing::info!(through = report.pruned_through, pruned = report.pruned, reason = %request.reason, "decision log retention");
    Ok(Json(
        serde_json::to_value(report).map_err(ApiError::internal)?,
    ))
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ImpactRequest {
    since: Option<i64>,
    until: Option<i64>,
    examples: Option<usize>,
}

/// Most changed decision ids an impact answer lists (all are counted).
const IMPACT_LIST_LIMIT: usize = 1000;

/// `POST /admin/v1/policies/{version}/impact`: what activating a stored version would change,
/// measured on the recorded decisions (each decided again on the inventory it was made on).
pub(crate) async fn impact(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(version): Path<u64>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "decisions.read")?;
    let request: ImpactRequest = match body {
        Ok(bytes) if bytes.is_empty() => ImpactRequest::default(),
        other => serde_json::from_value(crate::read_json(other, &state)?)
            .map_err(|err| ApiError::bad_request("impact", err.to_string()))?,
    };
    let reader = state.audit_or_404()?.reader()?;
    let state2 = state.clone();
    let report = tokio::task::spawn_blocking(move || {
        let options = arbiter_replay::ReplayOptions {
            schema: state2.schema.as_deref().cloned(),
            engine: state2.config.engine.clone(),
            since: request.since,
            until: request.until,
            examples: request.examples.unwrap_or(5).min(50),
            list_limit: 100,
            group_limit: 20,
            // One thread: an impact run must not take both cores from live decisions.
            threads: 1,
        };
        arbiter_replay::impact(
            state2.store.as_ref(),
            &reader,
            &arbiter_replay::Candidate::Version(version),
            &options,
            None,
        )
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(|err| match err {
        arbiter_replay::ReplayError::Candidate(error) => crate::admin::policy_problem(error),
        arbiter_replay::ReplayError::Store(error) => ApiError::from(error),
        other => ApiError::internal(other),
    })?;
    let mut answer = serde_json::to_value(&report).map_err(ApiError::internal)?;
    if let Some(Value::Array(changed)) = answer.get_mut("changed_decisions") {
        changed.truncate(IMPACT_LIST_LIMIT);
    }
    Ok(Json(answer))
}

/// `GET /admin/v1/log/checkpoints`: every kept signed checkpoint, for a third party to keep.
pub(crate) async fn checkpoints(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    crate::admin::check(&state, &headers, "decisions.read")?;
    let reader = state.audit_or_404()?.reader()?;
    let checkpoints = tokio::task::spawn_blocking(move || reader.checkpoints())
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::internal)?;
    Ok(Json(json!({"checkpoints": checkpoints, "at": now()})))
}
