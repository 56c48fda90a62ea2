//! Trust debt over the API: the report as JSON and as an HTML page, and publishing it — the
//! scores kept in `debt.sqlite3`, each identity's figures written as its `debt` attribute (so
//! policies read them from the snapshot, and replay rebuilds them from the change feed), and
//! the optional automatic downgrade, recorded and reversible like any lifecycle change — and
//! applying a membership suggestion: the identity taken out of the roles it did not use, as
//! one ordinary identity change.
//!
//! Thresholds come from `debt.json` beside the decision log when it exists (every field is
//! optional), else the defaults.

use crate::admin::check;
use crate::problem::ApiError;
use crate::{now, read_json, AppStateRef};
use arbiter_core::{Control, ControlLevel, EntityRef, Identity, Lifecycle};
// Named apart from `admin::check` (the authorisation), which the OpenAPI test reads for.
use arbiter_debt::suggest::check as replay_check;
use arbiter_debt::{
    compute, html, set_figures, DebtFigures, History, Report, RunOptions, SuggestionKind,
    Thresholds, DAY,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Trend points returned with a report.
const TREND_POINTS: u32 = 90;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DebtQuery {
    /// Suggestions for at most this many over-privileged identities (default 10, 0 for none).
    suggestions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    reason: String,
    #[serde(default)]
    suggestions: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    reason: String,
    #[serde(default)]
    force: bool,
}

/// Suggestions considered when looking for the one to apply: as many as the API reports.
const APPLY_SUGGESTIONS: usize = 100;

fn data_dir(state: &AppStateRef) -> Result<PathBuf, ApiError> {
    let audit = state.audit_or_404()?;
    Ok(audit
        .path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(".")))
}

fn thresholds(dir: &std::path::Path) -> Result<Thresholds, ApiError> {
    let path = dir.join("debt.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|err| ApiError::internal(format!("`{}`: {err}", path.display()))),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Thresholds::default()),
        Err(err) => Err(ApiError::internal(err)),
    }
}

/// Computes the report now, with the recorded trends; `record` keeps its scores too, `check`
/// replays the usage window for each suggestion.
async fn report(
    state: &AppStateRef,
    suggestions: usize,
    record: bool,
    check: bool,
) -> Result<Report, ApiError> {
    let dir = data_dir(state)?;
    let log_path = state.audit_or_404()?.path.clone();
    let state2 = state.clone();
    tokio::task::spawn_blocking(move || {
        let thresholds = thresholds(&dir)?;
        let log = arbiter_log::LogDb::open_read_only(&log_path).map_err(ApiError::internal)?;
        let progress = |phase: &str, done: u64, total: u64| {
            tracing::info!(phase, done, total, "trust debt");
        };
        let options = RunOptions {
            suggestions: suggestions.min(APPLY_SUGGESTIONS),
            check,
        };
        let mut report = compute(
            state2.store.as_ref(),
            &log,
            &thresholds,
            now(),
            options,
            Some(&progress),
        )
        .map_err(ApiError::internal)?;
        let mut history = History::open(&dir.join("debt.sqlite3")).map_err(ApiError::internal)?;
        if record {
            history.record(&report).map_err(ApiError::internal)?;
        }
        report.history = history
            .trend("overall", "", TREND_POINTS)
            .map_err(ApiError::internal)?;
        history
            .add_group_trends(&mut report, TREND_POINTS)
            .map_err(ApiError::internal)?;
        Ok(report)
    })
    .await
    .map_err(ApiError::internal)?
}

/// `GET /admin/v1/debt`: the report, computed now.
pub(crate) async fn get(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<DebtQuery>,
) -> Result<Json<Value>, ApiError> {
    check(&state, &headers, "debt.read")?;
    let report = report(&state, query.suggestions.unwrap_or(10), false, true).await?;
    Ok(Json(
        serde_json::to_value(&report).map_err(ApiError::internal)?,
    ))
}

/// `GET /admin/v1/debt/report.html`: the report as a page for a browser.
pub(crate) async fn page(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Query(query): Query<DebtQuery>,
) -> Result<Html<String>, ApiError> {
    check(&state, &headers, "debt.read")?;
    let report = report(&state, query.suggestions.unwrap_or(10), false, true).await?;
    Ok(Html(html::render(&report)))
}

/// `POST /admin/v1/debt/publish`: computes the report, keeps its scores, writes each active
/// non-human identity's changed figures as its `debt` attribute, and suspends those at or
/// above `downgrade_score` when it is set. Every write is an ordinary change with `reason`.
pub(crate) async fn publish(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "debt.write")?;
    let request: PublishRequest = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("publish", err.to_string()))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request("reason", "publishing needs a reason"));
    }
    let report = report(&state, request.suggestions.unwrap_or(0), true, true).await?;
    let overall = json!({"score": report.scores.overall, "findings": report.findings.len(), "at": report.generated_at});
    let state2 = state.clone();
    let reason = request.reason;
    let (published, downgraded) = tokio::task::spawn_blocking(move || {
        let actor = caller.actor();
        let inventory = state2.store.load_inventory()?;
        let mut published = 0u64;
        for mut identity in inventory.identities {
            let Some(figures) = report.figures.get(&identity.entity_ref().to_string()) else {
                continue;
            };
            if !set_figures(&mut identity, figures) {
                continue;
            }
            // One write per identity: each is stored and published whole, or not at all.
            if put(&state2, &identity.entity_ref(), figures, &actor, &reason)? {
                published += 1;
            }
        }
        let mut downgraded = Vec::new();
        if let Some(limit) = report.thresholds.downgrade_score {
            for debt in report.ranking.iter().filter(|debt| debt.score >= limit) {
                let Some(entity) = parse_entity(&debt.identity) else {
                    continue;
                };
                let kinds: Vec<&str> = debt.kinds.iter().map(|kind| kind.as_str()).collect();
                let why = format!(
                    "trust debt score {} reached the downgrade threshold {limit} ({}); undo with {} once fixed. {reason}",
                    debt.score,
                    kinds.join(", "),
                    if report.thresholds.downgrade_overlay.is_some() {
                        "a lift of the control"
                    } else {
                        "lifecycle `active`"
                    }
                );
                match &report.thresholds.downgrade_overlay {
                    Some(overlay) => {
                        // One debt downgrade at a time per identity: publishing again while it
                        // is in force places no second one.
                        let in_force = state2.store.list_controls(false)?.into_iter().any(|record| {
                            record.control.target == entity
                                && record.control.level == ControlLevel::Downgrade
                                && record.control.reason.starts_with("trust debt score")
                        });
                        if in_force {
                            continue;
                        }
                        let control = Control {
                            id: format!("ctl_{}", uuid::Uuid::now_v7().simple()),
                            target: entity.clone(),
                            level: ControlLevel::Downgrade,
                            overlay: Some(overlay.clone()),
                            safe_actions: Vec::new(),
                            reason: why.clone(),
                            placed_by: actor.id.clone(),
                            placed_at: now(),
                            expires_at: None,
                        };
                        state2.write(|snapshot| {
                            if !snapshot.policies().has_overlay(overlay) {
                                return Err(ApiError::bad_request(
                                    "downgrade_overlay",
                                    format!("no overlay `{overlay}` in the active policy set"),
                                ));
                            }
                            let seq = state2.store.place_control(&control, &actor, &why)?;
                            snapshot.inventory_mut().set_control(control.clone())?;
                            Ok(seq)
                        })?;
                        downgraded.push(json!({"identity": debt.identity, "score": debt.score,
                                               "control": control.id, "overlay": overlay}));
                    }
                    None => {
                        state2.write(|snapshot| {
                            snapshot
                                .inventory_mut()
                                .set_lifecycle(&entity, Lifecycle::Suspended)?;
                            Ok(state2
                                .store
                                .set_lifecycle(&entity, Lifecycle::Suspended, &actor, &why)?)
                        })?;
                        downgraded.push(json!({"identity": debt.identity, "score": debt.score, "lifecycle": "suspended"}));
                    }
                }
            }
        }
        Ok::<_, ApiError>((published, downgraded))
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({
        "published": published,
        "downgraded": downgraded,
        "overall": overall,
    })))
}

/// `POST /admin/v1/debt/suggestions/{id}/apply`: applies a membership suggestion in one
/// reviewed step. The report is computed again, so only a suggestion that is still current
/// (same identity, same memberships, roles still unused) is found; it is checked by the
/// what-if replay of the usage window, and one that would change a recorded decision, or could
/// not be checked on all of them, is refused unless `force`. The identity is then read again
/// under the writer lock, refused if its memberships moved on, and written as an ordinary
/// identity change whose reason names the suggestion.
pub(crate) async fn apply(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = check(&state, &headers, "debt.write")?;
    // The change itself is an identity write: the caller must be allowed to make one.
    check(&state, &headers, "identities.write")?;
    let request: ApplyRequest = serde_json::from_value(read_json(body, &state)?)
        .map_err(|err| ApiError::bad_request("apply", err.to_string()))?;
    if request.reason.trim().is_empty() {
        return Err(ApiError::bad_request(
            "reason",
            "applying a suggestion needs a reason",
        ));
    }
    // Only the suggestion applied is checked by replay, not every one proposed.
    let report = report(&state, APPLY_SUGGESTIONS, false, false).await?;
    let mut suggestion = report
        .suggestions
        .iter()
        .find(|suggestion| suggestion.id == id)
        .cloned()
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "no current suggestion `{id}`: compute the report again (the inventory, the policies or the usage may have changed)"
            ))
        })?;
    if suggestion.kind != SuggestionKind::Membership {
        return Err(ApiError::bad_request(
            "id",
            format!("`{id}` is a policy suggestion: upload and activate its `sources` (`arbiter debt apply` does)"),
        ));
    }
    let window_days = report.thresholds.usage_window_days;
    let since = report.generated_at - window_days * DAY;
    let log_path = state.audit_or_404()?.path.clone();
    let state2 = state.clone();
    let suggestion = tokio::task::spawn_blocking(move || {
        let log = arbiter_log::LogDb::open_read_only(&log_path).map_err(ApiError::internal)?;
        replay_check(
            std::slice::from_mut(&mut suggestion),
            state2.store.as_ref(),
            &log,
            window_days,
            since,
            None,
        )
        .map_err(ApiError::internal)?;
        Ok::<_, ApiError>(suggestion)
    })
    .await
    .map_err(ApiError::internal)??;
    if !suggestion.safe() && !request.force {
        let (changed, unreplayable) = suggestion
            .check
            .as_ref()
            .map_or((0, 0), |check| (check.changed, check.unreplayable));
        return Err(ApiError::conflict(format!(
            "suggestion `{id}` would change {changed} recorded decisions ({unreplayable} could not be decided again): review them, then apply with `force`"
        )));
    }
    let Some(base) = suggestion.membership.clone() else {
        return Err(ApiError::internal(
            "a membership suggestion without its identity",
        ));
    };
    let why = format!(
        "{} (least-privilege suggestion {id}: {})",
        request.reason.trim(),
        suggestion.removes.join(", ")
    );
    let state2 = state.clone();
    let suggestion2 = suggestion.clone();
    let why2 = why.clone();
    let applied = tokio::task::spawn_blocking(move || {
        state2.write(|snapshot| {
            let mut identity: Identity = match state2.store.get_identity(&base.identity) {
                Ok(identity) => identity,
                Err(arbiter_store::StoreError::NotFound { .. }) => {
                    return Err(ApiError::conflict(format!(
                        "{} no longer exists",
                        base.identity
                    )))
                }
                Err(err) => return Err(err.into()),
            };
            suggestion2
                .apply_to(&mut identity)
                .map_err(ApiError::conflict)?;
            snapshot
                .inventory_mut()
                .upsert_identity(&identity, state2.schema.as_deref())?;
            state2
                .store
                .put_identity(&identity, &caller.actor(), &why2)?;
            Ok(identity)
        })
    })
    .await
    .map_err(ApiError::internal)??;
    Ok(Json(json!({
        "suggestion": suggestion,
        "applied": {
            "identity": applied.entity_ref().to_string(),
            "member_of": applied.member_of,
            "reason": why,
        },
    })))
}

/// Writes `figures` on the identity as it is now: read again under the writer lock, so that a
/// change made since the report was computed is kept. Whether anything was written.
fn put(
    state: &AppStateRef,
    entity: &EntityRef,
    figures: &DebtFigures,
    actor: &arbiter_store::Actor,
    reason: &str,
) -> Result<bool, ApiError> {
    state.write(|snapshot| {
        let mut identity: Identity = match state.store.get_identity(entity) {
            Ok(identity) => identity,
            // Deleted since: nothing to publish on.
            Err(arbiter_store::StoreError::NotFound { .. }) => return Ok(false),
            Err(err) => return Err(err.into()),
        };
        if !set_figures(&mut identity, figures) {
            return Ok(false);
        }
        let identity = &identity;
        snapshot
            .inventory_mut()
            .upsert_identity(identity, state.schema.as_deref())
            .map_err(|err| {
                ApiError::new(
                    axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                    "rejected",
                    format!(
                        "`{}`: {err}; with a schema, declare `debt?: {{score: Long, findings: Long, unrotated_days: Long, dormant_days: Long, unused_grants: Long, orphaned: Bool, computed_at: Long}}` on every non-human entity type (see docs/debt.md)",
                        identity.entity_ref()
                    ),
                )
            })?;
        state.store.put_identity(identity, actor, reason)?;
        Ok(true)
    })
}

/// `Type::"id"` back into a reference.
fn parse_entity(text: &str) -> Option<arbiter_core::EntityRef> {
    let (kind, rest) = text.split_once("::")?;
    let id: String = serde_json::from_str(rest).ok()?;
    Some(arbiter_core::EntityRef::new(kind, id))
}
