//! OpenID AuthZEN Authorization API 1.0: evaluation, batch evaluations, search, discovery.
//!
//! A deny is a 200 with `decision: false`. Only a request that cannot be understood (400), an
//! unauthenticated (401) or unauthorised (403) caller, or an oversized body (413) gets an error,
//! always as RFC 9457 problem details.
//!
//! AuthZEN is lenient where Arbiter's core parser is strict, and this module is where the two
//! meet: a body must be sent as `application/json`; unknown top-level fields are ignored (the
//! spec reserves them for extensions), while the subject, action and resource themselves are
//! still parsed strictly. Caller `properties` never override the inventory; that rule lives in
//! the engine and holds here too.

use crate::approvals;
use crate::audit::{self, Decided};
use crate::auth::authorize;
use crate::problem::ApiError;
use crate::{now, read_json, AppStateRef};
use arbiter_core::{json_type, request_from_value, Decision, DecisionRequest, EntityRef, Outcome};
use arbiter_engine::{DecideOptions, Snapshot};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use std::time::Instant;

/// The top-level fields of an evaluation request; any other top-level field is ignored.
const REQUEST_FIELDS: [&str; 4] = ["subject", "action", "resource", "context"];

/// Stands in for the id of the entity a search looks for, so that the rest of the request can be
/// parsed (and refused) before any candidate is known. It never reaches a decision.
const SEARCHED_PLACEHOLDER: &str = "*";

/// `POST /access/v1/evaluation`
pub(crate) async fn evaluation(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize_decide(&state, &headers)?;
    let Value::Object(body) = read_request(&headers, body, &state)? else {
        return Err(ApiError::bad_request("$", "must be a JSON object"));
    };
    let request = parse_evaluation(body)?;
    let snapshot = state.decisions.load();
    let mut decided = [decide_timed(&snapshot, request, "evaluation")];
    if let Some(problem) = invalid_request(&decided[0].decision) {
        return Err(problem);
    }
    approvals::settle(&state, &snapshot, &mut decided).await;
    audit::record(&state, &caller, "evaluation", &snapshot, &mut decided).await;
    let [item] = decided;
    tracing::debug!(
        caller = %caller.principal.id,
        decision_id = %item.decision.id,
        outcome = item.decision.outcome.as_str(),
        "decided"
    );
    Ok(Json(approvals::answer(&item, response(&item.decision))))
}

/// `POST /access/v1/evaluations`
///
/// Top-level `subject`, `action`, `resource` and `context` are defaults that an item's own field
/// replaces whole. Without `evaluations`, or with an empty array, the request is one evaluation
/// and is answered like `/evaluation` (AuthZEN 1.0 §7.1). Each item answers `{"decision": ...}`
/// and nothing else, unless `options.arbiter_context` is `true`: then it carries the same
/// `context` as a single evaluation. An item that is not a valid evaluation even after the
/// defaults are applied is `decision: false` with `context.error` (§7.2.1), in its place.
pub(crate) async fn evaluations(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize_decide(&state, &headers)?;
    let Value::Object(mut batch) = read_request(&headers, body, &state)? else {
        return Err(ApiError::bad_request("$", "must be a JSON object"));
    };
    let items = match batch.remove("evaluations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(ApiError::bad_request(
                "evaluations",
                format!("must be an array, found {}", json_type(&other)),
            ))
        }
    };
    let options = BatchOptions::parse(batch.remove("options"))?;
    let defaults = request_fields(batch);
    let snapshot = state.decisions.load();
    if items.is_empty() {
        let request = parse_evaluation(defaults)?;
        let mut decided = [decide_timed(&snapshot, request, "evaluation")];
        if let Some(problem) = invalid_request(&decided[0].decision) {
            return Err(problem);
        }
        if options.settle_approvals {
            approvals::settle(&state, &snapshot, &mut decided).await;
        }
        audit::record(&state, &caller, "evaluations", &snapshot, &mut decided).await;
        let [item] = decided;
        return Ok(Json(approvals::answer(&item, response(&item.decision))));
    }
    // Decide every item first, record the decisions in one append, then answer: an item is
    // answered from its decision as recorded (a deny if the log could not keep it).
    let mut decided = Vec::with_capacity(items.len());
    let mut answers: Vec<Result<usize, Value>> = Vec::with_capacity(items.len());
    for (idx, item) in items.into_iter().enumerate() {
        let allowed = match merge_defaults(&defaults, item) {
            Ok(merged) => match request_from_value(merged) {
                Ok(request) => {
                    let item = decide_timed(&snapshot, request, "evaluations");
                    let allowed = item.decision.is_allowed();
                    answers.push(Ok(decided.len()));
                    decided.push(item);
                    allowed
                }
                Err(err) => {
                    answers.push(Err(item_error(
                        idx,
                        &format!("`{}`: {}", err.field, err.reason),
                    )));
                    false
                }
            },
            Err(reason) => {
                answers.push(Err(item_error(idx, &reason)));
                false
            }
        };
        let stop = match options.semantic {
            Semantic::ExecuteAll => false,
            Semantic::DenyOnFirstDeny => !allowed,
            Semantic::PermitOnFirstPermit => allowed,
        };
        if stop {
            break;
        }
    }
    if options.settle_approvals {
        approvals::settle(&state, &snapshot, &mut decided).await;
    }
    audit::record(&state, &caller, "evaluations", &snapshot, &mut decided).await;
    let results: Vec<Value> = answers
        .into_iter()
        .map(|answer| match answer {
            Ok(position) => match decided.get(position) {
                Some(item) => {
                    let full = approvals::answer(item, response(&item.decision));
                    if options.include_context {
                        full
                    } else {
                        json!({"decision": full.get("decision").cloned().unwrap_or(Value::Bool(false))})
                    }
                }
                None => json!({"decision": false}),
            },
            Err(error) => error,
        })
        .collect();
    Ok(Json(json!({"evaluations": results})))
}

#[derive(Debug, Clone, Copy)]
enum Semantic {
    ExecuteAll,
    DenyOnFirstDeny,
    PermitOnFirstPermit,
}

impl Semantic {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "execute_all" => Some(Semantic::ExecuteAll),
            "deny_on_first_deny" => Some(Semantic::DenyOnFirstDeny),
            "permit_on_first_permit" => Some(Semantic::PermitOnFirstPermit),
            _ => None,
        }
    }
}

/// A batch's `options`. Options this server does not know are ignored, as AuthZEN allows.
#[derive(Debug, Clone, Copy)]
struct BatchOptions {
    semantic: Semantic,
    /// `arbiter_context`: give every item the decision context a single evaluation has. Off by
    /// default, because AuthZEN clients (the interop runners among them) compare items as
    /// `{"decision": ...}`.
    include_context: bool,
    /// `arbiter_settle_approvals`: open approval requests (and spend grants) for items that
    /// need one. On by default; a gateway filtering a tool list turns it off, so that listing
    /// tools does not ask people to approve calls nobody has made.
    settle_approvals: bool,
}

impl BatchOptions {
    fn parse(options: Option<Value>) -> Result<Self, ApiError> {
        let mut parsed = BatchOptions {
            semantic: Semantic::ExecuteAll,
            include_context: false,
            settle_approvals: true,
        };
        let options = match options {
            None | Some(Value::Null) => return Ok(parsed),
            Some(Value::Object(options)) => options,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "options",
                    format!("must be an object, found {}", json_type(&other)),
                ))
            }
        };
        match options.get("evaluations_semantic") {
            None | Some(Value::Null) => {}
            Some(Value::String(name)) => {
                parsed.semantic = Semantic::parse(name).ok_or_else(|| {
                    ApiError::bad_request(
                        "options.evaluations_semantic",
                        format!(
                            "unknown semantic `{name}`: use execute_all, deny_on_first_deny or permit_on_first_permit"
                        ),
                    )
                })?;
            }
            Some(other) => {
                return Err(ApiError::bad_request(
                    "options.evaluations_semantic",
                    format!("must be a string, found {}", json_type(other)),
                ))
            }
        }
        match options.get("arbiter_settle_approvals") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(settle)) => parsed.settle_approvals = *settle,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "options.arbiter_settle_approvals",
                    format!("must be a boolean, found {}", json_type(other)),
                ))
            }
        }
        match options.get("arbiter_context") {
            None | Some(Value::Null) => {}
            Some(Value::Bool(include)) => parsed.include_context = *include,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "options.arbiter_context",
                    format!("must be a boolean, found {}", json_type(other)),
                ))
            }
        }
        Ok(parsed)
    }
}

/// An item's own subject, action, resource and context replace the batch's defaults whole.
fn merge_defaults(defaults: &Map<String, Value>, item: Value) -> Result<Value, String> {
    let Value::Object(item) = item else {
        return Err(format!("must be an object, found {}", json_type(&item)));
    };
    let mut merged = defaults.clone();
    merged.extend(request_fields(item));
    Ok(Value::Object(merged))
}

fn item_error(idx: usize, reason: &str) -> Value {
    json!({"decision": false, "context": {"error": {"status": 400, "message": format!("evaluations[{idx}]: {reason}")}}})
}

/// The fields of an evaluation request, without the top-level fields AuthZEN says to ignore.
fn request_fields(mut object: Map<String, Value>) -> Map<String, Value> {
    object.retain(|key, _| REQUEST_FIELDS.contains(&key.as_str()));
    object
}

fn parse_evaluation(body: Map<String, Value>) -> Result<DecisionRequest, ApiError> {
    request_from_value(Value::Object(request_fields(body)))
        .map_err(|err| ApiError::bad_request(err.field, err.reason))
}

/// A request the engine could not turn into a Cedar request (a malformed type name, a
/// property Cedar cannot represent, a type the schema rejects) is a 400 naming the field,
/// not a deny: the caller sent something wrong, and should hear which field.
pub(crate) fn invalid_request(decision: &Decision) -> Option<ApiError> {
    decision.hops.iter().find_map(|hop| match &hop.guard {
        Some(arbiter_core::GuardViolation::InvalidRequest { field, message }) => {
            Some(ApiError::bad_request(field.clone(), message.clone()))
        }
        _ => None,
    })
}

/// AuthZEN's response, with Arbiter's decision id, outcome and reasons in `context`.
pub(crate) fn response(decision: &Decision) -> Value {
    let mut answer = json!({
        "decision": decision.is_allowed(),
        "context": {
            "id": decision.id,
            "outcome": decision.outcome.as_str(),
            "reason_admin": {"en": decision.reason_admin},
            "reason_user": {"en": decision.reason_user},
            "determining_policies": decision.determining.iter().map(|policy| policy.id.as_str()).collect::<Vec<_>>(),
        }
    });
    // The built-in rules the request broke, on any hop, so that an enforcement point can tell
    // containment (a quarantined or revoked identity) from a policy's deny and act on it, e.g.
    // close the identity's open sessions (the MCP gateway does).
    let guards: Vec<&arbiter_core::GuardViolation> = decision
        .hops
        .iter()
        .filter_map(|hop| hop.guard.as_ref())
        .collect();
    if let (false, Some(Value::Object(context))) = (guards.is_empty(), answer.get_mut("context")) {
        context.insert("guards".to_owned(), json!(guards));
    }
    answer
}

fn authorize_decide(
    state: &AppStateRef,
    headers: &HeaderMap,
) -> Result<crate::auth::Caller, ApiError> {
    authorize(
        &state.governance,
        &state.keys.load(),
        headers,
        "decide",
        now(),
    )
}

/// An AuthZEN request body: it must be declared `application/json` (AuthZEN answers any other
/// media type with 400, not 415), then it is read as strict JSON.
fn read_request(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    state: &AppStateRef,
) -> Result<Value, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|value| value.to_str().unwrap_or("?"));
    // Parameters such as `charset=utf-8` are allowed; the media type itself must match.
    let media_type = content_type.map(|value| value.split(';').next().unwrap_or_default().trim());
    match media_type {
        Some(media_type) if media_type.eq_ignore_ascii_case("application/json") => {
            read_json(body, state)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request",
            format!(
                "`Content-Type` must be `application/json`, found `{}`",
                content_type.unwrap_or_default()
            ),
        )),
        None => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid request",
            "`Content-Type` is missing: send `application/json`",
        )),
    }
}

pub(crate) fn decide_timed(
    snapshot: &Snapshot,
    request: DecisionRequest,
    endpoint: &'static str,
) -> Decided {
    let started = Instant::now();
    let decision = snapshot.decide(
        &request,
        &DecideOptions {
            now: now(),
            decision_id: uuid::Uuid::now_v7().to_string(),
            // Explanations give denials their "what would have to change"; their cost is in docs/benchmarks.md.
            explain: true,
        },
    );
    let elapsed = started.elapsed();
    metrics::histogram!("arbiter_decision_seconds", "endpoint" => endpoint)
        .record(elapsed.as_secs_f64());
    metrics::counter!("arbiter_decisions_total", "outcome" => decision.outcome.as_str(), "endpoint" => endpoint).increment(1);
    Decided {
        request,
        decision,
        latency_us: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        approval: None,
    }
}

/// `POST /access/v1/search/subject`: every subject of the requested type that may do the action.
pub(crate) async fn search_subject(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize_decide(&state, &headers)?;
    let (template, subject_type) =
        search_template(read_request(&headers, body, &state)?, Searched::Subject)?;
    let snapshot = state.decisions.load();
    let mut decided = search_entities(&snapshot, &template, &subject_type, |request, candidate| {
        request.subject.entity = candidate;
    });
    audit::record(&state, &caller, "search/subject", &snapshot, &mut decided).await;
    let results = allowed(&decided, |request| &request.subject.entity);
    Ok(Json(search_response(results)))
}

/// `POST /access/v1/search/resource`: every resource of the requested type the subject may act on.
pub(crate) async fn search_resource(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize_decide(&state, &headers)?;
    let (template, resource_type) =
        search_template(read_request(&headers, body, &state)?, Searched::Resource)?;
    let snapshot = state.decisions.load();
    let mut decided = search_entities(
        &snapshot,
        &template,
        &resource_type,
        |request, candidate| {
            request.resource.entity = candidate;
        },
    );
    audit::record(&state, &caller, "search/resource", &snapshot, &mut decided).await;
    let results = allowed(&decided, |request| &request.resource.entity);
    Ok(Json(search_response(results)))
}

/// `POST /access/v1/search/action`: every action the subject may perform on the resource. The
/// candidates are the actions the policies name in their scope and the inventory's actions.
pub(crate) async fn search_action(
    State(state): State<AppStateRef>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = authorize_decide(&state, &headers)?;
    let (template, _) = search_template(read_request(&headers, body, &state)?, Searched::Action)?;
    let snapshot = state.decisions.load();
    let mut actions: Vec<String> = snapshot
        .policies()
        .scoped_actions()
        .into_iter()
        .chain(snapshot.inventory().entities_of_type("Action"))
        .map(|action| action.id)
        .collect();
    actions.sort();
    actions.dedup();
    let mut decided: Vec<Decided> = actions
        .into_iter()
        .map(|name| {
            let mut request = template.clone();
            request.action.name = name;
            decide_timed(&snapshot, request, "search")
        })
        .collect();
    audit::record(&state, &caller, "search/action", &snapshot, &mut decided).await;
    let results = decided
        .iter()
        .filter(|item| item.decision.outcome == Outcome::Allow)
        .map(|item| json!({"name": item.request.action.name}))
        .collect();
    Ok(Json(search_response(results)))
}

/// Which part of the request a search looks for.
#[derive(Debug, Clone, Copy)]
enum Searched {
    Subject,
    Resource,
    Action,
}

/// Parses a search request into a template decision request whose searched-for part is a
/// placeholder, and returns the searched-for entity type (empty for an action search).
///
/// Every input entity must be complete (`type` and `id`), so a request that lacks one is a 400
/// even when there is no candidate to try. The searched-for entity needs only its `type`; an
/// `id` sent with it is ignored, and so is an `action` sent to an action search. `page` is
/// accepted and ignored: results are never split into pages.
fn search_template(
    value: Value,
    searched: Searched,
) -> Result<(DecisionRequest, String), ApiError> {
    let Value::Object(mut body) = value else {
        return Err(ApiError::bad_request("$", "must be a JSON object"));
    };
    match body.get("page") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(other) => {
            return Err(ApiError::bad_request(
                "page",
                format!("must be an object, found {}", json_type(other)),
            ))
        }
    }
    let searched_type = match searched {
        Searched::Action => {
            body.insert("action".to_owned(), json!({"name": SEARCHED_PLACEHOLDER}));
            String::new()
        }
        Searched::Subject => searched_entity(&mut body, "subject")?,
        Searched::Resource => searched_entity(&mut body, "resource")?,
    };
    let template = parse_evaluation(body)?;
    Ok((template, searched_type))
}

/// The searched-for entity's type; its id becomes the placeholder.
fn searched_entity(body: &mut Map<String, Value>, field: &str) -> Result<String, ApiError> {
    let entity = match body.get_mut(field) {
        Some(Value::Object(entity)) => entity,
        Some(other) => {
            return Err(ApiError::bad_request(
                field,
                format!("must be an object, found {}", json_type(other)),
            ))
        }
        None => return Err(ApiError::bad_request(field, "missing")),
    };
    let entity_type = match entity.get("type") {
        Some(Value::String(entity_type)) if !entity_type.is_empty() => entity_type.clone(),
        Some(Value::String(_)) => {
            return Err(ApiError::bad_request(
                format!("{field}.type"),
                "must not be empty",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("{field}.type"),
                format!("must be a string, found {}", json_type(other)),
            ))
        }
        None => return Err(ApiError::bad_request(format!("{field}.type"), "missing")),
    };
    entity.insert("id".to_owned(), json!(SEARCHED_PLACEHOLDER));
    Ok(entity_type)
}

/// Decides the template once per inventory entity of `entity_type`, in id order. An unknown
/// type has no candidates: the answer is empty.
fn search_entities(
    snapshot: &Snapshot,
    template: &DecisionRequest,
    entity_type: &str,
    place: impl Fn(&mut DecisionRequest, EntityRef),
) -> Vec<Decided> {
    let mut candidates: Vec<EntityRef> =
        snapshot.inventory().entities_of_type(entity_type).collect();
    candidates.sort();
    candidates
        .into_iter()
        .map(|candidate| {
            let mut request = template.clone();
            place(&mut request, candidate);
            decide_timed(snapshot, request, "search")
        })
        .collect()
}

/// The searched-for entities of the allowed decisions, as `{"type", "id"}`.
fn allowed(decided: &[Decided], searched: impl Fn(&DecisionRequest) -> &EntityRef) -> Vec<Value> {
    decided
        .iter()
        .filter(|item| item.decision.outcome == Outcome::Allow)
        .map(|item| {
            let entity = searched(&item.request);
            json!({"type": entity.entity_type, "id": entity.id})
        })
        .collect()
}

/// Search results; `page.next_token` is always a string, empty because there is no next page.
fn search_response(results: Vec<Value>) -> Value {
    json!({"results": results, "page": {"next_token": ""}})
}

/// `GET /.well-known/authzen-configuration`
pub(crate) async fn configuration(
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
    let base = base_url(&headers, state.config.tls);
    Ok(Json(json!({
        "policy_decision_point": base,
        "access_evaluation_endpoint": format!("{base}/access/v1/evaluation"),
        "access_evaluations_endpoint": format!("{base}/access/v1/evaluations"),
        "search_subject_endpoint": format!("{base}/access/v1/search/subject"),
        "search_resource_endpoint": format!("{base}/access/v1/search/resource"),
        "search_action_endpoint": format!("{base}/access/v1/search/action"),
    })))
}

/// The base URL the caller used, from its `Host` header, with no trailing slash, so that
/// `policy_decision_point` is exactly the URL the endpoints hang from.
fn base_url(headers: &HeaderMap, tls: bool) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .unwrap_or("localhost");
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{host}")
}
