//! Human approvals: humans approve, machines enforce.
//!
//! An `approval_required` decision either spends a live grant for exactly that request (and is
//! answered `allow`, citing the approval) or opens an approval request (one per distinct
//! request while it is pending) that names what is asked, why, and who may approve. A person
//! approves or denies it through an approver key that acts for them. The rules: only a human of
//! the inventory, active, approves; never the subject or anyone in its delegation chain; only
//! the subject's owner or a member of a group a determining policy names in `@approvers`; a
//! grant covers only the request whose digest it carries, for a bounded time and number of uses
//! (one by default); a decided or lapsed request is never revived. Every step is a change in the
//! store's feed, and so an entry of the decision log.

use crate::admin::check;
use crate::audit::Decided;
use crate::problem::ApiError;
use crate::{now, read_json, AppStateRef};
use arbiter_core::{DecisionRequest, EntityRef, IdentityKind, Lifecycle, Outcome};
use arbiter_engine::Snapshot;
use arbiter_log::ApprovalNote;
use arbiter_store::{Actor, ApprovalRecord};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a request waits for a human before it lapses.
const PENDING_SECONDS: i64 = 24 * 3600;
/// A grant's default and largest lifetime.
const DEFAULT_GRANT_SECONDS: i64 = 15 * 60;
const MAX_GRANT_SECONDS: i64 = 7 * 24 * 3600;
/// Most uses one approval may grant.
const MAX_USES: u32 = 100;
/// Longest long-poll.
const MAX_WAIT_SECONDS: u64 = 60;

fn system() -> Actor {
    Actor::new("approvals", "system")
}

/// SHA-256 of the request in canonical JSON (object keys sorted, no spaces): subject, action and
/// resource with their properties, and the whole caller context with the delegation chain. A
/// grant covers exactly this; any other argument, resource or chain needs its own approval.
pub(crate) fn digest(request: &DecisionRequest) -> String {
    let mut text = String::new();
    canonical(&request.to_value(), &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Writes `value` as JSON with object keys in sorted order, so that equal requests hash alike
/// whatever order their keys arrived in. (serde_json keeps insertion order in this workspace.)
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (n, key) in keys.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(key) {
                    canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// For every `approval_required` decision: spend a live grant for exactly that request, or
/// open (or find) the approval request it waits on. A store failure leaves the decision as
/// `approval_required` without a request id: nothing is allowed that was not approved.
pub(crate) async fn settle(state: &AppStateRef, snapshot: &Snapshot, decided: &mut [Decided]) {
    let mut changed = false;
    for item in decided.iter_mut() {
        if item.decision.outcome != Outcome::ApprovalRequired {
            continue;
        }
        let digest = digest(&item.request);
        let store = state.store.clone();
        let at = now();
        let used = {
            let digest = digest.clone();
            tokio::task::spawn_blocking(move || store.use_grant(&digest, at, &system())).await
        };
        match used {
            Ok(Ok(Some(grant))) => {
                item.approval = Some(ApprovalNote {
                    id: grant.id,
                    status: "used".into(),
                    approved_by: grant.decided_by,
                    uses_left: Some(grant.uses_left),
                });
                changed = true;
            }
            Ok(Ok(None)) => {
                let record = new_request(snapshot, item, digest, at);
                let store = state.store.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    store.request_approval(&record, &system(), "approval required")
                })
                .await;
                match opened {
                    Ok(Ok((request, _))) => {
                        item.approval = Some(ApprovalNote {
                            id: request.id,
                            status: "requested".into(),
                            approved_by: None,
                            uses_left: None,
                        });
                        changed = true;
                    }
                    Ok(Err(error)) => tracing::error!(%error, "could not open an approval request"),
                    Err(error) => tracing::error!(%error, "approval request task failed"),
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "could not read approval grants"),
            Err(error) => tracing::error!(%error, "approval grant task failed"),
        }
    }
    if changed {
        // The request or the use is in the store's feed; copy it into the log now.
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(error) = crate::audit::copy_changes(&state).await {
                tracing::error!(%error, "could not copy approval changes into the decision log");
            }
        });
    }
}

/// The approval request for an `approval_required` decision: what, why, who may approve.
fn new_request(snapshot: &Snapshot, item: &Decided, digest: String, at: i64) -> ApprovalRecord {
    let request = &item.request;
    let owner = snapshot
        .inventory()
        .governance(&request.subject.entity)
        .and_then(|governance| governance.owner.as_ref())
        .map(arbiter_engine::from_uid);
    let mut groups: Vec<String> = Vec::new();
    let mut why = Vec::new();
    for policy in &item.decision.determining {
        if let Some(named) = policy.annotations.get("approvers") {
            groups.extend(
                named
                    .split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(str::to_owned),
            );
        }
        // Only the policies that ask for approval say why; a permit that a require-approval
        // control held back is not a reason.
        if let Some(approval) = policy.annotations.get("approval") {
            why.push(json!({"policy": policy.id, "approval": approval}));
        }
    }
    // A require-approval control asks on its own, whatever the policies say.
    for control in item.decision.hops.iter().flat_map(|hop| &hop.controls) {
        if control.level == arbiter_core::ControlLevel::RequireApproval {
            why.push(json!({"control": control.id, "target": control.target.to_string(), "reason": control.reason}));
        }
    }
    let mut chain: Vec<String> = request.delegation.iter().map(ToString::to_string).collect();
    chain.push(request.subject.entity.to_string());
    ApprovalRecord {
        id: format!("apr_{}", uuid::Uuid::now_v7().simple()),
        digest: digest.clone(),
        state: "pending".into(),
        principal: request.subject.entity.to_string(),
        body: json!({
            "request": request.to_value(),
            "digest": digest,
            "decision_id": item.decision.id,
            "why": why,
            "reason": item.decision.reason_admin,
            "chain": chain,
            "approvers": {"owner": owner.map(|owner| owner.to_string()), "groups": groups},
        }),
        created_at: at,
        expires_at: at + PENDING_SECONDS,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        uses_left: 0,
        grant_expires_at: None,
    }
}

/// The AuthZEN answer for a decision, with what its approval changed.
pub(crate) fn answer(item: &Decided, base: Value) -> Value {
    let Some(note) = &item.approval else {
        return base;
    };
    let mut answer = base;
    if note.status == "used" {
        if let Some(fields) = answer.as_object_mut() {
            fields.insert("decision".into(), Value::Bool(true));
        }
        if let Some(context) = answer.get_mut("context").and_then(Value::as_object_mut) {
            context.insert("outcome".into(), json!("allow"));
            context.insert(
                "reason_admin".into(),
                json!({"en": format!(
                    "allowed by approval `{}` (approved by {}; {} uses left): {}",
                    note.id,
                    note.approved_by.as_deref().unwrap_or("?"),
                    note.uses_left.unwrap_or(0),
                    item.decision.reason_admin
                )}),
            );
            context.insert("reason_user".into(), json!({"en": "allowed with approval"}));
        }
    } else if let Some(context) = answer.get_mut("context").and_then(Value::as_object_mut) {
        context.insert(
            "reason_user".into(),
            json!({"en": format!("approval required: request {} waits for a person", note.id)}),
        );
    }
    if let Some(context) = answer.get_mut("context").and_then(Value::as_object_mut) {
        context.insert(
            "approval".into(),
            json!({
                "id": note.id,
                "status": note.status,
                "approved_by": note.approved_by,
                "status_url": format!("/admin/v1/approvals/{}", note.id),
            }),
        );
    }
    answer
}

// Routes.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    limit: Option<u32>,
}

/// `GET /admin/v1/approvals`: requests, newest first (`state=pending` for the queue).
pub(crate) async fn list(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    check(&state, &headers, "approvals.read")?;
    if let Some(wanted) = &query.state {
        if !["pending", "approved", "denied"].contains(&wanted.as_str()) {
            return Err(ApiError::bad_request(
                "state",
                "must be pending, approved or denied",
            ));
        }
    }
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let store = state.store.clone();
    let wanted = query.state.clone();
    let found = tokio::task::spawn_blocking(move || store.list_approvals(wanted.as_deref(), limit))
        .await
        .map_err(ApiError::internal)??;
    let at = now();
    let approvals: Vec<Value> = found.iter().map(|record| view(record, at)).collect();
    Ok(Json(json!({"approvals": approvals})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WaitQuery {
    wait: Option<u64>,
}

/// `GET /admin/v1/approvals/{id}`: one request; with `?wait=N` (seconds, at most 60) the answer
/// waits until it is decided or lapses, so an enforcement point can hold the agent's call.
pub(crate) async fn get(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Value>, ApiError> {
    check(&state, &headers, "approvals.read")?;
    let deadline = tokio::time::Instant::now()
        + Duration::from_secs(query.wait.unwrap_or(0).min(MAX_WAIT_SECONDS));
    loop {
        let store = state.store.clone();
        let wanted = id.clone();
        let record = tokio::task::spawn_blocking(move || store.get_approval(&wanted))
            .await
            .map_err(ApiError::internal)??;
        let at = now();
        let waiting = record.state == "pending" && record.expires_at > at;
        if !waiting || tokio::time::Instant::now() >= deadline {
            return Ok(Json(view(&record, at)));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn view(record: &ApprovalRecord, at: i64) -> Value {
    let state = if record.state == "pending" && record.expires_at <= at {
        "expired"
    } else {
        record.state.as_str()
    };
    let live_grant = record.state == "approved"
        && record.uses_left > 0
        && record.grant_expires_at.is_some_and(|until| until > at);
    let mut view = Map::new();
    view.insert("id".into(), json!(record.id));
    view.insert("state".into(), json!(state));
    view.insert("principal".into(), json!(record.principal));
    view.insert("created_at".into(), json!(record.created_at));
    view.insert("expires_at".into(), json!(record.expires_at));
    view.insert("asked".into(), record.body.clone());
    view.insert("decided_by".into(), json!(record.decided_by));
    view.insert("decided_at".into(), json!(record.decided_at));
    view.insert("decision_reason".into(), json!(record.decision_reason));
    view.insert("uses_left".into(), json!(record.uses_left));
    view.insert("grant_expires_at".into(), json!(record.grant_expires_at));
    view.insert("grant_live".into(), json!(live_grant));
    Value::Object(view)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    reason: String,
    #[serde(default)]
    uses: Option<u32>,
    #[serde(default)]
    valid_for_seconds: Option<i64>,
}

/// `POST /admin/v1/approvals/{id}/approve`
pub(crate) async fn approve(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "approvals.decide")?;
    decide(state, caller, id, body, true).await
}

/// `POST /admin/v1/approvals/{id}/deny`
pub(crate) async fn deny(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "approvals.decide")?;
    decide(state, caller, id, body, false).await
}

async fn decide(
    state: AppStateRef,
    caller: crate::auth::Caller,
    id: String,
    body: Result<Bytes, BytesRejection>,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let verdict: Verdict = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("verdict", err.to_string()))?;
    if verdict.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "an approval needs a reason",
        ));
    }
    let uses = verdict.uses.unwrap_or(1);
    if uses == 0 || uses > MAX_USES {
        return Err(ApiError::bad_request(
            "uses",
            format!("must be 1 to {MAX_USES}"),
        ));
    }
    let valid_for = verdict.valid_for_seconds.unwrap_or(DEFAULT_GRANT_SECONDS);
    if valid_for <= 0 || valid_for > MAX_GRANT_SECONDS {
        return Err(ApiError::bad_request(
            "valid_for_seconds",
            format!("must be 1 to {MAX_GRANT_SECONDS}"),
        ));
    }
    // Only a person decides, in their own name.
    let Some(person) = caller.acts_for.clone() else {
        return Err(ApiError::forbidden(
            "this key does not act for a person; only humans approve (create an approver key with `acts_for`)",
        ));
    };
    let store = state.store.clone();
    let wanted = id.clone();
    let record = tokio::task::spawn_blocking(move || store.get_approval(&wanted))
        .await
        .map_err(ApiError::internal)??;
    eligible(&state.decisions.load(), &person, &record)?;
    let store = state.store.clone();
    let approver = person.to_string();
    let actor = caller.actor();
    let grant_until = now() + valid_for;
    let decided = tokio::task::spawn_blocking(move || {
        store.decide_approval(
            &id,
            approve,
            &approver,
            uses,
            grant_until,
            &actor,
            &verdict.reason,
        )
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(view(&decided, now())))
}

/// Whether `person` may decide `record`: an active human of the inventory, not the subject nor
/// any hop of its chain, and the subject's owner or a member of a group the policy named.
fn eligible(
    snapshot: &Snapshot,
    person: &EntityRef,
    record: &ApprovalRecord,
) -> Result<(), ApiError> {
    let inventory = snapshot.inventory();
    match inventory.governance(person) {
        Some(governance) if governance.kind == IdentityKind::Human => {
            if governance.lifecycle != Lifecycle::Active {
                return Err(ApiError::forbidden(format!(
                    "{person} is {} and cannot approve",
                    governance.lifecycle.as_str()
                )));
            }
        }
        _ => {
            return Err(ApiError::forbidden(format!(
                "{person} is not a human of the inventory; only humans approve"
            )))
        }
    }
    let me = person.to_string();
    let in_chain = record
        .body
        .get("chain")
        .and_then(Value::as_array)
        .is_some_and(|chain| chain.iter().any(|hop| hop.as_str() == Some(me.as_str())));
    if in_chain || record.principal == me {
        return Err(ApiError::forbidden(format!(
            "{person} made this request or is in its delegation chain, and cannot approve it"
        )));
    }
    let approvers = record.body.get("approvers").unwrap_or(&Value::Null);
    let owner = approvers.get("owner").unwrap_or(&Value::Null);
    let is_owner = owner.as_str() == Some(me.as_str());
    let groups: Vec<&str> = approvers
        .get("groups")
        .and_then(Value::as_array)
        .map(|groups| groups.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let in_group = groups
        .iter()
        .filter_map(|group| parse_entity(group))
        .any(|group| inventory.is_in(person, &group));
    let nobody_named = owner.is_null() && groups.is_empty();
    if is_owner || in_group || nobody_named {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{person} is neither the owner of {} nor in {}",
            record.principal,
            if groups.is_empty() {
                "a group the policy names".to_owned()
            } else {
                groups.join(", ")
            }
        )))
    }
}

/// `Type::"id"` → an entity reference.
fn parse_entity(text: &str) -> Option<EntityRef> {
    let (entity_type, id) = text.split_once("::")?;
    let id = id.trim().strip_prefix('"')?.strip_suffix('"')?;
    Some(EntityRef::new(entity_type.trim(), id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_ignores_key_order_and_sees_every_argument() {
        let parse = |text: &str| arbiter_core::parse_request(text, Default::default()).unwrap();
        let a = parse(
            r#"{"subject":{"type":"Agent","id":"a"},"action":{"name":"delete"},"resource":{"type":"Tool","id":"t"},"context":{"x":1,"y":{"b":2,"a":1}}}"#,
        );
        let b = parse(
            r#"{"context":{"y":{"a":1,"b":2},"x":1},"resource":{"id":"t","type":"Tool"},"action":{"name":"delete"},"subject":{"id":"a","type":"Agent"}}"#,
        );
        let c = parse(
            r#"{"subject":{"type":"Agent","id":"a"},"action":{"name":"delete"},"resource":{"type":"Tool","id":"t"},"context":{"x":2,"y":{"b":2,"a":1}}}"#,
        );
        let d = parse(
            r#"{"subject":{"type":"Agent","id":"a"},"action":{"name":"delete"},"resource":{"type":"Tool","id":"u"},"context":{"x":1,"y":{"b":2,"a":1}}}"#,
        );
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
        assert_ne!(digest(&a), digest(&d));
    }

    #[test]
    fn entity_references_parse() {
        assert_eq!(
            parse_entity(r#"Group::"security-leads""#),
            Some(EntityRef::new("Group", "security-leads"))
        );
        assert_eq!(parse_entity("nonsense"), None);
    }
}
