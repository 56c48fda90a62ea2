//! The administration API, `/admin/v1/…`: identities, lifecycle, groups, resources, signals,
//! policy versions, API keys, and the change feed. Every route is authorised by the governance
//! engine and every change is stored (with who, when, what and why) before it is published.

use crate::auth::{authorize, generate_key, hash_key, Caller, KeyInfo, Role};
use crate::problem::ApiError;
use crate::signal_rules::Then;
use crate::state::compile;
use crate::{now, read_json, AppStateRef};
use arbiter_core::{EntityRef, Group, Identity, IdentityKind, Lifecycle, Resource, Signal};
use arbiter_store::{ApiKeyRecord, IdentityFilter, Page, PolicySourceRecord};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;

/// Header carrying the reason for a change, for routes whose body has no `reason`.
const REASON_HEADER: &str = "x-arbiter-reason";

pub(crate) type ApiResult = Result<(StatusCode, Json<Value>), ApiError>;

pub(crate) fn ok(value: impl serde::Serialize) -> ApiResult {
    Ok((
        StatusCode::OK,
        Json(serde_json::to_value(value).map_err(ApiError::internal)?),
    ))
}

pub(crate) fn check(
    state: &AppStateRef,
    headers: &HeaderMap,
    action: &str,
) -> Result<Caller, ApiError> {
    authorize(
        &state.governance,
        &state.keys.load(),
        headers,
        action,
        now(),
    )
}

fn reason(headers: &HeaderMap) -> String {
    headers
        .get(REASON_HEADER)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

/// Runs blocking store work off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(ApiError::internal)?
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    value: Value,
    what: &str,
) -> Result<T, ApiError> {
    serde_json::from_value(value).map_err(|err| ApiError::bad_request(what, err.to_string()))
}

fn identity_ref(kind: &str, id: &str) -> Result<(IdentityKind, EntityRef), ApiError> {
    let kind: IdentityKind = serde_json::from_value(json!(kind)).map_err(|_| {
        ApiError::bad_request(
            "kind",
            format!("unknown kind `{kind}`: use human, service_account, workload, ai_agent or credential"),
        )
    })?;
    Ok((kind, EntityRef::new(kind.cedar_type(), id)))
}

// Identities.

fn require_known(state: &AppStateRef, entity: &EntityRef) -> Result<(), ApiError> {
    if state
        .decisions
        .load()
        .inventory()
        .governance(entity)
        .is_none()
    {
        return Err(ApiError::not_found(format!("unknown identity `{entity}`")));
    }
    Ok(())
}

/// Every non-human identity answers to an accountable human.
fn require_owner(identity: &Identity) -> Result<(), ApiError> {
    if identity.kind.is_non_human()
        && identity
            .owner
            .as_deref()
            .is_none_or(|owner| owner.trim().is_empty())
    {
        return Err(ApiError::bad_request(
            "owner",
            "a non-human identity needs an accountable human owner",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    kind: Option<IdentityKind>,
    lifecycle: Option<Lifecycle>,
    owner: Option<String>,
    id_prefix: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

pub(crate) async fn list_identities(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    check(&state, &headers, "identities.read")?;
    let Query(query) = query.map_err(|err| ApiError::bad_request("query", err.body_text()))?;
    let filter = IdentityFilter {
        kind: query.kind,
        lifecycle: query.lifecycle,
        owner: query.owner,
        member_of: None,
        id_prefix: query.id_prefix,
    };
    let page = Page {
        limit: query.limit.unwrap_or(100),
        after: query.after,
    };
    let store = state.store.clone();
    ok(blocking(move || Ok(store.list_identities(&filter, &page)?)).await?)
}

pub(crate) async fn get_identity(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult {
    check(&state, &headers, "identities.read")?;
    let (_, entity) = identity_ref(&kind, &id)?;
    let store = state.store.clone();
    ok(blocking(move || Ok(store.get_identity(&entity)?)).await?)
}

pub(crate) async fn create_identity(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "identities.write")?;
    let identity: Identity = parse(read_json(body, &state)?, "identity")?;
    require_owner(&identity)?;
    let reason = reason(&headers);
    let state2 = state.clone();
    let stored = blocking(move || {
        state2.write(|snapshot| {
            snapshot
                .inventory_mut()
                .upsert_identity(&identity, state2.schema.as_deref())?;
            state2
                .store
                .create_identity(&identity, &caller.actor(), &reason)?;
            Ok(identity)
        })
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(stored).map_err(ApiError::internal)?),
    ))
}

pub(crate) async fn put_identity(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "identities.write")?;
    let (kind, _) = identity_ref(&kind, &id)?;
    let identity: Identity = parse(read_json(body, &state)?, "identity")?;
    if identity.kind != kind || identity.id != id {
        return Err(ApiError::bad_request(
            "id",
            "the body's kind and id must match the path",
        ));
    }
    require_owner(&identity)?;
    let reason = reason(&headers);
    let state2 = state.clone();
    ok(blocking(move || {
        state2.write(|snapshot| {
            stays_revoked(snapshot, &identity.entity_ref(), identity.lifecycle)?;
            snapshot
                .inventory_mut()
                .upsert_identity(&identity, state2.schema.as_deref())?;
            state2
                .store
                .put_identity(&identity, &caller.actor(), &reason)?;
            Ok(identity)
        })
    })
    .await?)
}

pub(crate) async fn delete_identity(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult {
    let caller = check(&state, &headers, "identities.write")?;
    let (_, entity) = identity_ref(&kind, &id)?;
    require_known(&state, &entity)?;
    let reason = reason(&headers);
    let state2 = state.clone();
    blocking(move || {
        state2.write(|snapshot| {
            snapshot.inventory_mut().remove(&entity)?;
            state2
                .store
                .delete_identity(&entity, &caller.actor(), &reason)?;
            Ok(())
        })
    })
    .await?;
    Ok((StatusCode::OK, Json(json!({"deleted": true}))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LifecycleChange {
    lifecycle: Lifecycle,
    reason: String,
}

/// Revocation is permanent: a revoked identity (and so every credential it holds) never acts
/// again. Checked under the writer lock, against the state the change would replace.
fn stays_revoked(
    snapshot: &arbiter_engine::Snapshot,
    entity: &EntityRef,
    wanted: Lifecycle,
) -> Result<(), ApiError> {
    let revoked = snapshot
        .inventory()
        .governance(entity)
        .is_some_and(|governance| governance.lifecycle == Lifecycle::Revoked);
    if revoked && wanted != Lifecycle::Revoked {
        return Err(ApiError::conflict(format!(
            "{entity} is revoked, and revocation is permanent: create a new identity instead"
        )));
    }
    Ok(())
}

pub(crate) async fn set_lifecycle(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path((kind, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "lifecycle.write")?;
    let (_, entity) = identity_ref(&kind, &id)?;
    require_known(&state, &entity)?;
    let change: LifecycleChange = parse(read_json(body, &state)?, "lifecycle")?;
    if change.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "a lifecycle change needs a reason",
        ));
    }
    let state2 = state.clone();
    let seq = blocking(move || {
        state2.write(|snapshot| {
            stays_revoked(snapshot, &entity, change.lifecycle)?;
            snapshot
                .inventory_mut()
                .set_lifecycle(&entity, change.lifecycle)?;
            Ok(state2.store.set_lifecycle(
                &entity,
                change.lifecycle,
                &caller.actor(),
                &change.reason,
            )?)
        })
    })
    .await?;
    ok(json!({"lifecycle": change.lifecycle, "change_seq": seq}))
}

// Groups and resources.

pub(crate) async fn list_groups(State(state): State<AppStateRef>, headers: HeaderMap) -> ApiResult {
    check(&state, &headers, "inventory.read")?;
    let store = state.store.clone();
    ok(
        blocking(move || Ok(store.list_groups(&Page::first(arbiter_store::MAX_PAGE_LIMIT))?))
            .await?,
    )
}

pub(crate) async fn put_group(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "inventory.write")?;
    let group: Group = parse(read_json(body, &state)?, "group")?;
    let reason = reason(&headers);
    let state2 = state.clone();
    ok(blocking(move || {
        state2.write(|snapshot| {
            snapshot
                .inventory_mut()
                .upsert_group(&group, state2.schema.as_deref())?;
            state2.store.put_group(&group, &caller.actor(), &reason)?;
            Ok(group)
        })
    })
    .await?)
}

pub(crate) async fn list_resources(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> ApiResult {
    check(&state, &headers, "inventory.read")?;
    let store = state.store.clone();
    ok(
        blocking(move || Ok(store.list_resources(&Page::first(arbiter_store::MAX_PAGE_LIMIT))?))
            .await?,
    )
}

pub(crate) async fn put_resource(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "inventory.write")?;
    let resource: Resource = parse(read_json(body, &state)?, "resource")?;
    let reason = reason(&headers);
    let state2 = state.clone();
    ok(blocking(move || {
        state2.write(|snapshot| {
            snapshot
                .inventory_mut()
                .upsert_resource(&resource, state2.schema.as_deref())?;
            state2
                .store
                .put_resource(&resource, &caller.actor(), &reason)?;
            Ok(resource)
        })
    })
    .await?)
}

// Signals.

pub(crate) async fn list_signals(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> ApiResult {
    check(&state, &headers, "signals.read")?;
    let store = state.store.clone();
    ok(blocking(move || Ok(store.list_signals(None)?)).await?)
}

pub(crate) async fn put_signal(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "signals.write")?;
    let signal: Signal = parse(read_json(body, &state)?, "signal")?;
    let reason = reason(&headers);
    let state2 = state.clone();
    ok(blocking(move || {
        state2.write(|snapshot| {
            snapshot.inventory_mut().set_signal(signal.clone())?;
            state2.store.put_signal(&signal, &caller.actor(), &reason)?;
            // A rule may turn the signal into a control on its subject, in the same write, so
            // the next decision sees both.
            let active = snapshot
                .inventory()
                .governance(&signal.subject)
                .is_some_and(|governance| governance.lifecycle == Lifecycle::Active);
            let fired = state2
                .config
                .signal_rules
                .iter()
                .find_map(|rule| rule.fires(&signal).map(|then| (rule, then.clone())));
            let rules_actor = arbiter_store::Actor::new("signal-rules", "system");
            match fired {
                Some((rule, Then::Lifecycle(lifecycle))) if active => {
                    snapshot
                        .inventory_mut()
                        .set_lifecycle(&signal.subject, lifecycle)?;
                    state2.store.set_lifecycle(
                        &signal.subject,
                        lifecycle,
                        &rules_actor,
                        &rule.reason(&signal),
                    )?;
                    tracing::warn!(subject = %signal.subject, lifecycle = lifecycle.as_str(), "a signal rule contained an identity");
                }
                Some((rule, Then::Control { level, overlay })) => {
                    // One control per subject and kind: a signal reported again does not pile
                    // up controls while the first is in force.
                    let reason = rule.reason(&signal);
                    let placed = snapshot.inventory().controls().any(|control| {
                        control.target == signal.subject
                            && control.placed_by == rules_actor.id
                            && control.level == level
                            && control.overlay == overlay
                            && control.is_active(crate::now())
                    });
                    let known = overlay
                        .as_ref()
                        .is_none_or(|name| snapshot.policies().has_overlay(name));
                    if !placed && known {
                        let control = arbiter_core::Control {
                            id: format!("ctl_{}", uuid::Uuid::now_v7().simple()),
                            target: signal.subject.clone(),
                            level,
                            overlay,
                            safe_actions: Vec::new(),
                            reason,
                            placed_by: rules_actor.id.clone(),
                            placed_at: crate::now(),
                            expires_at: None,
                        };
                        state2
                            .store
                            .place_control(&control, &rules_actor, &control.reason)?;
                        tracing::warn!(subject = %signal.subject, level = level.as_str(), "a signal rule placed a control");
                        snapshot.inventory_mut().set_control(control)?;
                    } else if !known {
                        tracing::error!(rule = rule.text(), "a signal rule names an overlay the active policy set lacks; no control placed");
                    }
                }
                Some((_, Then::Lifecycle(_))) | None => {}
            }
            Ok(signal)
        })
    })
    .await?)
}

// Policies.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyUpload {
    sources: Vec<PolicySourceRecord>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    activate: bool,
    /// Activate only if this is still the active version (compare and swap), so that a version
    /// built from an older one cannot silently undo a change activated since.
    #[serde(default)]
    expected_active: Option<u64>,
}

pub(crate) async fn list_policies(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
) -> ApiResult {
    check(&state, &headers, "policies.read")?;
    let store = state.store.clone();
    ok(blocking(move || Ok(store.list_policy_versions()?)).await?)
}

pub(crate) async fn get_policy(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(version): Path<u64>,
) -> ApiResult {
    check(&state, &headers, "policies.read")?;
    let store = state.store.clone();
    ok(blocking(move || Ok(store.get_policy_version(version)?)).await?)
}

pub(crate) fn policy_problem(err: arbiter_engine::PolicyError) -> ApiError {
    let errors: Vec<Value> = err
        .errors
        .iter()
        .map(|error| {
            json!({"source": error.source_name, "line": error.line, "column": error.column, "message": error.message})
        })
        .collect();
    let summary = err
        .errors
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    ApiError::unprocessable(format!(
        "{} policy error(s); first: {summary}",
        errors.len()
    ))
    .with_errors(Value::Array(errors))
}

pub(crate) async fn validate_policies(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    check(&state, &headers, "policies.read")?;
    let upload: PolicyUpload = parse(read_json(body, &state)?, "policies")?;
    match compile(&upload.sources, state.schema.as_deref(), 0) {
        Ok(compiled) => {
            ok(json!({"valid": true, "policies": compiled.len(), "digest": compiled.digest()}))
        }
        Err(err) => ok(
            json!({"valid": false, "errors": err.errors.iter().map(|error| json!({
            "source": error.source_name, "line": error.line, "column": error.column, "message": error.message
        })).collect::<Vec<_>>()}),
        ),
    }
}

pub(crate) async fn upload_policies(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "policies.write")?;
    let upload: PolicyUpload = parse(read_json(body, &state)?, "policies")?;
    if upload.activate {
        check(&state, &headers, "policies.activate")?;
        if upload.reason.trim().is_empty() {
            return Err(ApiError::bad_request(
                "reason",
                "activating a policy version needs a reason",
            ));
        }
    }
    let compiled = compile(&upload.sources, state.schema.as_deref(), 0).map_err(policy_problem)?;
    let state2 = state.clone();
    let version = blocking(move || {
        let version = state2.store.create_policy_version(
            &upload.sources,
            compiled.digest(),
            &caller.actor(),
            &upload.reason,
        )?;
        if upload.activate {
            activate(
                &state2,
                version,
                &caller,
                &upload.reason,
                upload.expected_active,
            )?;
        }
        Ok(version)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"version": version, "active": upload.activate})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Activation {
    #[serde(default)]
    version: Option<u64>,
    reason: String,
    /// As for uploads: only if this is still the active version.
    #[serde(default)]
    expected_active: Option<u64>,
}

pub(crate) async fn activate_policies(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(version): Path<u64>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "policies.activate")?;
    let activation: Activation = parse(read_json(body, &state)?, "activation")?;
    let state2 = state.clone();
    blocking(move || {
        activate(
            &state2,
            version,
            &caller,
            &activation.reason,
            activation.expected_active,
        )
    })
    .await?;
    ok(json!({"active_version": version}))
}

/// Rolls back to an earlier version in one call: the version named, or the one before the active.
pub(crate) async fn rollback_policies(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "policies.activate")?;
    let activation: Activation = parse(read_json(body, &state)?, "rollback")?;
    let state2 = state.clone();
    let version = blocking(move || {
        let target = match activation.version {
            Some(version) => version,
            None => {
                let active = state2.store.active_policy_version()?.unwrap_or(0);
                state2
                    .store
                    .list_policy_versions()?
                    .into_iter()
                    .map(|summary| summary.version)
                    .filter(|version| *version < active)
                    .max()
                    .ok_or_else(|| {
                        ApiError::conflict("there is no earlier policy version to roll back to")
                    })?
            }
        };
        activate(
            &state2,
            target,
            &caller,
            &activation.reason,
            activation.expected_active,
        )?;
        Ok(target)
    })
    .await?;
    ok(json!({"active_version": version}))
}

fn activate(
    state: &AppStateRef,
    version: u64,
    caller: &Caller,
    reason: &str,
    expected_active: Option<u64>,
) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "activating a policy version needs a reason",
        ));
    }
    let stored = state.store.get_policy_version(version)?;
    let compiled =
        compile(&stored.sources, state.schema.as_deref(), version).map_err(policy_problem)?;
    let compiled = std::sync::Arc::new(compiled);
    state.write(|snapshot| {
        // Checked under the writer lock, so no other activation can come in between.
        if let Some(expected) = expected_active {
            let active = state.store.active_policy_version()?;
            if active != Some(expected) {
                return Err(ApiError::conflict(format!(
                    "the active policy version is {}, not {expected} as expected; version {version} was not activated",
                    active.map_or_else(|| "none".to_owned(), |active| active.to_string())
                )));
            }
        }
        state
            .store
            .activate_policy_version(version, &caller.actor(), reason)?;
        *snapshot = snapshot.with_policies(compiled);
        Ok(())
    })
}

// API keys.

pub(crate) async fn list_keys(State(state): State<AppStateRef>, headers: HeaderMap) -> ApiResult {
    check(&state, &headers, "keys.read")?;
    let store = state.store.clone();
    let records = blocking(move || Ok(store.list_api_keys()?)).await?;
    // Hashes stay in the store: listing shows ids, names and roles only.
    ok(records
        .into_iter()
        .map(|record| {
            json!({"id": record.id, "name": record.name, "role": record.role,
                   "created_at": record.created_at, "created_by": record.created_by, "revoked_at": record.revoked_at})
        })
        .collect::<Vec<_>>())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    name: String,
    role: String,
    /// For approver keys: the person (a `Human` of the inventory) approvals are made as.
    #[serde(default)]
    acts_for: Option<EntityRef>,
}

pub(crate) async fn create_key(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let caller = check(&state, &headers, "keys.write")?;
    let request: NewKey = parse(read_json(body, &state)?, "key")?;
    let role = Role::parse(&request.role).ok_or_else(|| {
        ApiError::bad_request(
            "role",
            format!(
                "unknown role `{}`: use {}",
                request.role,
                Role::ALL.map(Role::as_str).join(", ")
            ),
        )
    })?;
    if let Some(person) = &request.acts_for {
        let is_human = state
            .decisions
            .load()
            .inventory()
            .governance(person)
            .is_some_and(|governance| governance.kind == arbiter_core::IdentityKind::Human);
        if !is_human {
            return Err(ApiError::bad_request(
                "acts_for",
                format!("{person} is not a human of the inventory: only people approve"),
            ));
        }
    }
    let key = generate_key().map_err(ApiError::internal)?;
    let record = ApiKeyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: request.name.clone(),
        role: role.as_str().to_owned(),
        key_hash: hash_key(&key),
        created_at: now(),
        created_by: caller.principal.id.clone(),
        revoked_at: None,
        acts_for: request.acts_for.clone(),
    };
    let reason = reason(&headers);
    let state2 = state.clone();
    let record = blocking(move || {
        state2
            .store
            .create_api_key(&record, &caller.actor(), &reason)?;
        state2.add_key(
            record.key_hash.clone(),
            KeyInfo {
                id: record.id.clone(),
                role,
                name: record.name.clone(),
                acts_for: record.acts_for.clone(),
            },
        )?;
        Ok(record)
    })
    .await?;
    // The only time the key is ever shown.
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": record.id, "name": record.name, "role": record.role, "key": key})),
    ))
}

pub(crate) async fn revoke_key(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let caller = check(&state, &headers, "keys.write")?;
    let reason = reason(&headers);
    let state2 = state.clone();
    blocking(move || {
        state2.store.revoke_api_key(&id, &caller.actor(), &reason)?;
        state2.remove_key(&id);
        Ok(())
    })
    .await?;
    ok(json!({"revoked": true}))
}

// The change feed.

pub(crate) async fn changes(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    check(&state, &headers, "changes.read")?;
    let since = query
        .get("since")
        .map(|since| since.parse::<u64>())
        .transpose()
        .map_err(|_| ApiError::bad_request("since", "must be a non-negative integer"))?;
    let limit = query
        .get("limit")
        .map(|limit| limit.parse::<u32>())
        .transpose()
        .map_err(|_| ApiError::bad_request("limit", "must be a positive integer"))?;
    let store = state.store.clone();
    ok(
        blocking(move || Ok(store.changes_since(since.unwrap_or(0), limit.unwrap_or(100))?))
            .await?,
    )
}
