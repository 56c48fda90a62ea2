//! The decision: guards, delegation, per-request entity slices, indexed Cedar evaluation,
//! Arbiter's outcome rules, and reasons.
//!
//! `decide` never fails: every error becomes a deny that says why.

// `Unresolvable` carries the guard that denies the request. It is built at most once per
// decision, on the failure path, so boxing it would only add an allocation.
#![allow(clippy::result_large_err, reason = "see the comment above")]

use crate::explain::{explain_policy, first_failure, nearest_misses};
use crate::index::IndexQuery;
use crate::inventory::{borrow_uids, diagnostic_text, from_uid, known, to_uid, StoredEntity};
use crate::policies::CompiledPolicy;
use crate::reach::{Origin, Path, Reach, Reads, Step};
use crate::snapshot::Snapshot;
use arbiter_core::{
    AppliedControl, Control, ControlLevel, Decision, DecisionError, DecisionRequest,
    DeterminingPolicy, Effect, EntityRef, Explanation, GuardViolation, HopTrace, Lifecycle,
    Outcome, PolicyTraceRole, SnapshotInfo, Timestamp,
};
use cedar_policy_core::ast::{
    Context, Eid, Entity, EntityType, EntityUID, EntityUIDEntry, ExtensionFunction, Literal, Name,
    PartialValue, Request, Value, ValueKind,
};
use cedar_policy_core::entities::{Entities, EntityJsonParser, NoEntitiesSchema, TCComputation};
use cedar_policy_core::evaluator::Evaluator;
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::CoreSchema;
use serde_json::{json, Map, Value as Json};
use smol_str::SmolStr;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

/// What the caller supplies besides the request: the time and the decision's id.
#[derive(Debug, Clone)]
pub struct DecideOptions {
    /// Now, in seconds since the Unix epoch. The engine reads no clock.
    pub now: Timestamp,
    /// A unique id for this decision.
    pub decision_id: String,
    /// Whether to build the condition-level explanation.
    pub explain: bool,
}

/// Cedar's own answer for one principal, with none of Arbiter's guards or outcome rules.
/// Exposed so that equivalence with Cedar's reference authorizer can be tested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarEvaluation {
    /// Ids of satisfied permit policies.
    pub satisfied_permits: Vec<String>,
    /// Ids of satisfied forbid policies.
    pub satisfied_forbids: Vec<String>,
    /// Ids of policies that raised an error (Cedar skips them).
    pub erroring: Vec<String>,
    /// Ids of the policies the index selected: those whose scope holds.
    pub candidates: Vec<String>,
}

impl CedarEvaluation {
    /// Cedar's decision: some permit and no forbid.
    pub fn is_allowed(&self) -> bool {
        !self.satisfied_permits.is_empty() && self.satisfied_forbids.is_empty()
    }

    /// Cedar's "reason": the satisfied permits when allowed, the satisfied forbids otherwise.
    pub fn determining(&self) -> &[String] {
        if self.is_allowed() {
            &self.satisfied_permits
        } else {
            &self.satisfied_forbids
        }
    }
}

/// One principal's evaluation, kept for outcome rules and explanations.
struct Evaluation {
    request: Request,
    slice: Entities,
    candidates: Vec<u32>,
    satisfied: Vec<u32>,
    errors: Vec<(u32, String)>,
    /// Overlay policies (from downgrade controls) that forbid the request or failed to
    /// evaluate, with the error if any: either way the request is denied.
    overlay_hits: Vec<(u32, Option<String>)>,
}

/// The request's fixed parts, resolved once and shared by every hop.
struct Resolved<'r> {
    subject: EntityUID,
    subject_local: Option<Arc<Entity>>,
    action: EntityUID,
    /// `None` when the inventory holds the action.
    action_local: Option<Arc<Entity>>,
    resource: EntityUID,
    resource_entity: Option<Arc<Entity>>,
    caller_context: BTreeMap<SmolStr, Value>,
    caller_context_json: &'r Map<String, Json>,
    chain: Vec<EntityUID>,
    ignored_properties: Vec<String>,
}

/// A failure before evaluation: the request cannot be decided as given.
struct Unresolvable(GuardViolation);

impl Snapshot {
    /// Decides one request. Never fails: any problem is a deny whose reason says what it was.
    pub fn decide(&self, request: &DecisionRequest, options: &DecideOptions) -> Decision {
        // Guards first: an identity that may not act is denied before anything is parsed or
        // evaluated, so containment costs a lookup, not a decision.
        if let Some(hop) = self.early_guard(request, options.now) {
            let context = Json::Object(request.context.clone());
            return self.finish(options, vec![hop], Vec::new(), context);
        }
        let resolved = match self.resolve(request) {
            Ok(resolved) => resolved,
            Err(Unresolvable(guard)) => {
                let hop = HopTrace {
                    principal: request.subject.entity.clone(),
                    outcome: Outcome::Deny,
                    guard: Some(guard),
                    determining: Vec::new(),
                    errors: Vec::new(),
                    candidates: 0,
                    controls: Vec::new(),
                    explanation: Explanation::default(),
                };
                return self.finish(options, vec![hop], Vec::new(), Json::Null);
            }
        };
        let mut hops = Vec::with_capacity(resolved.chain.len() + 1);
        let principals: Vec<&EntityUID> = resolved
            .chain
            .iter()
            .chain(std::iter::once(&resolved.subject))
            .collect();
        if principals.len() > self.config.max_delegation_hops {
            let guard = GuardViolation::DelegationTooLong {
                hops: principals.len(),
                max_hops: self.config.max_delegation_hops,
            };
            hops.push(guard_hop(&resolved.subject, guard));
            return self.finish(options, hops, resolved.ignored_properties, Json::Null);
        }
        let mut subject_context = Json::Null;
        for (position, principal) in principals.iter().enumerate() {
            let is_subject = position + 1 == principals.len();
            let (hop, context_json) = self.decide_hop(&resolved, principal, is_subject, options);
            if is_subject {
                subject_context = context_json;
            }
            hops.push(hop);
        }
        self.finish(options, hops, resolved.ignored_properties, subject_context)
    }

    /// Cedar's answer for `principal` doing `action` on `resource` with `context`, using the
    /// index and the per-request slice but none of Arbiter's guards or enrichment.
    pub fn evaluate_cedar(
        &self,
        principal: &EntityRef,
        action: &EntityRef,
        resource: &EntityRef,
        context: &Map<String, Json>,
    ) -> Result<CedarEvaluation, String> {
        let principal = to_uid(principal).map_err(|err| err.0)?;
        let action = to_uid(action).map_err(|err| err.0)?;
        let resource = to_uid(resource).map_err(|err| err.0)?;
        let action_local = self.bare_unless_stored(&action);
        let context = cedar_context(context, &self.entity_types)
            .map_err(|Unresolvable(guard)| format!("{guard:?}"))?;
        let evaluation = self
            .evaluate(
                &principal,
                None,
                &action,
                action_local,
                &resource,
                None,
                Context::Value(Arc::new(context)),
                &[],
            )
            .map_err(|Unresolvable(guard)| format!("{guard:?}"))?;
        let ids = |effect: Effect| -> Vec<String> {
            evaluation
                .satisfied
                .iter()
                .filter_map(|idx| self.policy(*idx))
                .filter(|policy| policy.effect == effect)
                .map(|policy| policy.id.clone())
                .collect()
        };
        Ok(CedarEvaluation {
            satisfied_permits: ids(Effect::Permit),
            satisfied_forbids: ids(Effect::Forbid),
            erroring: evaluation
                .errors
                .iter()
                .filter_map(|(idx, _)| self.policy(*idx))
                .map(|policy| policy.id.clone())
                .collect(),
            candidates: evaluation
                .candidates
                .iter()
                .filter_map(|idx| self.policy(*idx))
                .map(|policy| policy.id.clone())
                .collect(),
        })
    }

    /// The first principal (origin first, subject last) that a guard denies, as its hop.
    fn early_guard(&self, request: &DecisionRequest, now: Timestamp) -> Option<HopTrace> {
        // A request the schema rejects is reported as such (naming the field), not as a guard.
        if let Some(schema) = &self.schema {
            let subject = self.uid_of(&request.subject.entity).ok()?;
            let action = self
                .uid_of(&EntityRef::new("Action", &request.action.name))
                .ok()?;
            let resource = self.uid_of(&request.resource.entity).ok()?;
            check_types_against_schema(schema.validator_schema(), &subject, &action, &resource)
                .ok()?;
        }
        request
            .delegation
            .iter()
            .chain(std::iter::once(&request.subject.entity))
            .find_map(|principal| {
                let uid = self.uid_of(principal).ok()?;
                self.guard(&uid, now).map(|guard| guard_hop(&uid, guard))
            })
    }

    /// `to_uid`, with known type names taken from the snapshot's table instead of re-parsed.
    fn uid_of(&self, entity: &EntityRef) -> Result<EntityUID, crate::InventoryError> {
        match self.entity_types.get(&entity.entity_type) {
            Some(entity_type) => Ok(EntityUID::from_components(
                entity_type.clone(),
                cedar_policy_core::ast::Eid::new(entity.id.as_str()),
                None,
            )),
            None => to_uid(entity),
        }
    }

    fn policy(&self, idx: u32) -> Option<&CompiledPolicy> {
        self.policies.policies.get(idx as usize)
    }

    /// `None` when the inventory holds `uid`; an entity with no data otherwise.
    fn bare_unless_stored(&self, uid: &EntityUID) -> Option<Arc<Entity>> {
        match self.inventory.get(uid) {
            Some(_) => None,
            None => Some(Arc::new(Entity::with_uid(uid.clone()))),
        }
    }

    fn resolve<'r>(&self, request: &'r DecisionRequest) -> Result<Resolved<'r>, Unresolvable> {
        let invalid = |field: &str, message: String| {
            Unresolvable(GuardViolation::InvalidRequest {
                field: field.to_owned(),
                message,
            })
        };
        let subject = self
            .uid_of(&request.subject.entity)
            .map_err(|err| invalid("subject.type", err.0))?;
        let resource = self
            .uid_of(&request.resource.entity)
            .map_err(|err| invalid("resource.type", err.0))?;
        let action = self
            .uid_of(&EntityRef::new("Action", &request.action.name))
            .map_err(|err| invalid("action.name", err.0))?;
        let chain = request
            .delegation
            .iter()
            .enumerate()
            .map(|(idx, hop)| {
                to_uid(hop)
                    .map_err(|err| invalid(&format!("context.delegation[{idx}].type"), err.0))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(schema) = &self.schema {
            check_types_against_schema(schema.validator_schema(), &subject, &action, &resource)
                .map_err(|(field, message)| invalid(field, message))?;
        }
        let mut ignored_properties = Vec::new();
        let mut local = |uid: &EntityUID,
                         properties: &Map<String, Json>,
                         field: &str|
         -> Result<Option<Arc<Entity>>, Unresolvable> {
            if self.inventory.get(uid).is_some() {
                // INVARIANT: the inventory's facts win; a caller cannot claim a role or attribute.
                ignored_properties.extend(
                    properties
                        .keys()
                        .map(|key| format!("{field}.properties.{key}")),
                );
                return Ok(None);
            }
            self.local_entity(uid, properties, field).map(Some)
        };
        let subject_local = local(&subject, &request.subject.properties, "subject")?;
        let resource_entity = local(&resource, &request.resource.properties, "resource")?;
        let action_local = local(&action, &request.action.properties, "action")?;
        let caller_context = cedar_context(&request.context, &self.entity_types)?;
        Ok(Resolved {
            subject,
            subject_local,
            action,
            action_local,
            resource,
            resource_entity,
            caller_context,
            caller_context_json: &request.context,
            chain,
            ignored_properties,
        })
    }

    /// An entity that exists only in the request, built from the caller's properties.
    fn local_entity(
        &self,
        uid: &EntityUID,
        properties: &Map<String, Json>,
        field: &str,
    ) -> Result<Arc<Entity>, Unresolvable> {
        if properties.is_empty() {
            return Ok(Arc::new(Entity::with_uid(uid.clone())));
        }
        let entity_ref = from_uid(uid);
        let json = json!([{
            "uid": {"type": entity_ref.entity_type, "id": entity_ref.id},
            "attrs": properties,
            "parents": [],
        }]);
        let extensions = Extensions::all_available();
        let parsed = match &self.schema {
            Some(schema) => {
                let core_schema = CoreSchema::new(schema.validator_schema());
                EntityJsonParser::new(
                    Some(&core_schema),
                    extensions,
                    TCComputation::AssumeAlreadyComputed,
                )
                .from_json_value(json)
            }
            None => EntityJsonParser::new(
                None::<&NoEntitiesSchema>,
                extensions,
                TCComputation::AssumeAlreadyComputed,
            )
            .from_json_value(json),
        };
        let entities = parsed.map_err(|err| {
            Unresolvable(GuardViolation::InvalidRequest {
                field: format!("{field}.properties"),
                message: diagnostic_text(&err),
            })
        })?;
        let built = entities
            .iter()
            .find(|entity| entity.uid() == uid)
            .map(|entity| Arc::new(entity.clone()));
        built.ok_or_else(|| {
            Unresolvable(GuardViolation::InvalidRequest {
                field: format!("{field}.properties"),
                message: "entity was not built".to_owned(),
            })
        })
    }

    fn decide_hop(
        &self,
        resolved: &Resolved<'_>,
        principal: &EntityUID,
        is_subject: bool,
        options: &DecideOptions,
    ) -> (HopTrace, Json) {
        let (arbiter_value, arbiter_json) =
            self.arbiter_context(resolved, principal, options.now, is_subject);
        let context_json = match arbiter_json {
            Some(arbiter_json) => {
                let mut json = resolved.caller_context_json.clone();
                json.insert("arbiter".to_owned(), arbiter_json);
                Json::Object(json)
            }
            None => Json::Null,
        };
        if let Some(guard) = self.guard(principal, options.now) {
            return (guard_hop(principal, guard), context_json);
        }
        let controls = self.controls_for(principal, resolved, options.now);
        let applied: Vec<AppliedControl> = controls
            .iter()
            .map(|(target, control)| AppliedControl {
                id: control.id.clone(),
                target: from_uid(target),
                level: control.level,
                reason: control.reason.clone(),
            })
            .collect();
        let contained = |guard: GuardViolation| {
            let mut hop = guard_hop(principal, guard);
            hop.controls = applied.clone();
            hop
        };
        // Quarantine first: outside its safe actions nothing is evaluated.
        let action_name: &str = resolved.action.eid().as_ref();
        if let Some((target, control)) = controls.iter().find(|(_, control)| {
            control.level == ControlLevel::Quarantine
                && !control.safe_actions.iter().any(|safe| safe == action_name)
        }) {
            return (contained(contained_guard(target, control)), context_json);
        }
        let mut overlay: Vec<u32> = Vec::new();
        let mut overlay_owner: Vec<(u32, &EntityUID, &Control)> = Vec::new();
        for (target, control) in controls
            .iter()
            .filter(|(_, control)| control.level == ControlLevel::Downgrade)
        {
            // A downgrade whose overlay is not in the active policy set (rolled back, renamed)
            // cannot be applied as meant: fail closed.
            let Some(policies) = control
                .overlay
                .as_ref()
                .and_then(|name| self.policies.overlays.get(name))
            else {
                return (contained(contained_guard(target, control)), context_json);
            };
            for idx in policies {
                overlay.push(*idx);
                overlay_owner.push((*idx, target, control));
            }
        }
        let mut context = resolved.caller_context.clone();
        context.insert("arbiter".into(), arbiter_value);
        let local = if is_subject {
            resolved.subject_local.clone()
        } else {
            None
        };
        let mut evaluation = match self.evaluate(
            principal,
            local,
            &resolved.action,
            resolved.action_local.clone(),
            &resolved.resource,
            resolved.resource_entity.clone(),
            Context::Value(Arc::new(context)),
            &overlay,
        ) {
            Ok(evaluation) => evaluation,
            Err(Unresolvable(guard)) => return (contained(guard), context_json),
        };
        let overlay_hits = std::mem::take(&mut evaluation.overlay_hits);
        let mut hop = self.judge(principal, evaluation, options);
        hop.controls = applied;
        if let Some((idx, error)) = overlay_hits.first() {
            // An overlay policy forbade or failed: deny, whatever else is known about it.
            hop.outcome = Outcome::Deny;
            if let Some((_, target, control)) =
                overlay_owner.iter().find(|(owned, _, _)| owned == idx)
            {
                let policy = self.policy(*idx).map(|policy| policy.id.clone());
                hop.guard = Some(GuardViolation::Downgraded {
                    control: control.id.clone(),
                    target: from_uid(target),
                    overlay: control.overlay.clone().unwrap_or_default(),
                    policy: policy.unwrap_or_default(),
                });
                if let Some(error) = error {
                    hop.errors.push(DecisionError {
                        policy: self.policy(*idx).map(|policy| policy.id.clone()),
                        message: error.clone(),
                    });
                }
                hop.determining = self
                    .policy(*idx)
                    .map(determining_policy)
                    .into_iter()
                    .collect();
            }
        }
        if hop.outcome == Outcome::Allow
            && controls
                .iter()
                .any(|(_, control)| control.level == ControlLevel::RequireApproval)
        {
            hop.outcome = Outcome::ApprovalRequired;
        }
        (hop, context_json)
    }

    /// The active controls that bear on this hop: on the principal; on its owner (an owner's
    /// controls reach what it owns), its sponsor (when containment cascades to sponsored
    /// identities) and, for a credential, its holder; on the resource and its ancestors (an MCP
    /// server's controls reach its tools). Strongest first.
    fn controls_for<'s>(
        &'s self,
        principal: &'s EntityUID,
        resolved: &'s Resolved<'_>,
        now: Timestamp,
    ) -> Vec<(&'s EntityUID, &'s Control)> {
        let orphan_control = self.orphan_control.as_deref();
        if !self.inventory.has_controls() && orphan_control.is_none() {
            return Vec::new();
        }
        let mut found: Vec<(&EntityUID, &Control)> = Vec::new();
        if let Some(orphan_control) = orphan_control {
            let governance = self
                .inventory
                .get(principal)
                .and_then(|stored| stored.governance.as_ref());
            let holder = governance
                .and_then(|governance| governance.credential.as_ref())
                .and_then(|credential| self.inventory.get(&credential.holder))
                .and_then(|stored| stored.governance.as_ref());
            if governance
                .into_iter()
                .chain(holder)
                .any(|governance| self.orphan_downgraded(governance))
            {
                found.push((principal, orphan_control));
            }
        }
        let mut targets: Vec<&EntityUID> = vec![principal];
        if let Some(governance) = self
            .inventory
            .get(principal)
            .and_then(|stored| stored.governance.as_ref())
        {
            targets.extend(governance.owner.iter());
            if self.config.contain_sponsored {
                targets.extend(governance.sponsor.iter());
            }
            if let Some(credential) = &governance.credential {
                targets.push(&credential.holder);
                if let Some(holder) = self
                    .inventory
                    .get(&credential.holder)
                    .and_then(|stored| stored.governance.as_ref())
                {
                    targets.extend(holder.owner.iter());
                }
            }
        }
        targets.push(&resolved.resource);
        match (
            self.inventory.get(&resolved.resource),
            &resolved.resource_entity,
        ) {
            (Some(stored), _) => stored.extend_ancestors(&mut targets),
            (None, Some(entity)) => targets.extend(entity.ancestors()),
            (None, None) => {}
        }
        for target in targets {
            for control in self.inventory.controls_on(target) {
                if control.is_active(now) && !found.iter().any(|(_, seen)| seen.id == control.id) {
                    found.push((target, control));
                }
            }
        }
        found.sort_by_key(|(_, control)| std::cmp::Reverse(control.level));
        found
    }

    /// Built-in guards: unknown principals and inactive identities are denied whatever the policies say.
    fn guard(&self, principal: &EntityUID, now: Timestamp) -> Option<GuardViolation> {
        let Some(stored) = self.inventory.get(principal) else {
            return Some(GuardViolation::UnknownPrincipal {
                entity: from_uid(principal),
            });
        };
        // Plain Cedar entities carry no governance facts and are treated as active.
        let governance = stored.governance.as_ref()?;
        if governance.lifecycle != Lifecycle::Active {
            return Some(GuardViolation::NotActive {
                entity: from_uid(principal),
                lifecycle: governance.lifecycle,
            });
        }
        if let Some(violation) = self.cascade_guard(principal, governance) {
            return Some(violation);
        }
        let credential = governance.credential.as_ref()?;
        if let Some(expires_at) = credential.expires_at {
            if expires_at <= now {
                return Some(GuardViolation::CredentialExpired {
                    entity: from_uid(principal),
                    expires_at,
                });
            }
        }
        let holder_lifecycle = match self.inventory.get(&credential.holder) {
            None => None,
            Some(holder) => match &holder.governance {
                Some(governance) => Some(governance.lifecycle),
                None => Some(Lifecycle::Active),
            },
        };
        if holder_lifecycle != Some(Lifecycle::Active) {
            return Some(GuardViolation::HolderNotActive {
                entity: from_uid(principal),
                holder: from_uid(&credential.holder),
                lifecycle: holder_lifecycle,
            });
        }
        // A credential goes with its holder: what contains the holder (a contained sponsor, a
        // missing owner) contains the credential too.
        let holder_governance = self
            .inventory
            .get(&credential.holder)
            .and_then(|holder| holder.governance.as_ref())?;
        self.cascade_guard(&credential.holder, holder_governance)
    }

    /// Containment that flows from others: a contained sponsor contains what it sponsors; an
    /// owner who is not an active human orphans the identity (credentials answer to their
    /// holder instead, checked after this).
    fn cascade_guard(
        &self,
        principal: &EntityUID,
        governance: &crate::inventory::Governance,
    ) -> Option<GuardViolation> {
        let state_of =
            |uid: &EntityUID| -> (Option<Lifecycle>, Option<arbiter_core::IdentityKind>) {
                match self.inventory.get(uid) {
                    None => (None, None),
                    Some(stored) => match &stored.governance {
                        Some(governance) => (Some(governance.lifecycle), Some(governance.kind)),
                        // A plain Cedar entity carries no governance facts: treated as active.
                        None => (Some(Lifecycle::Active), None),
                    },
                }
            };
        if self.config.contain_sponsored {
            if let Some(sponsor) = &governance.sponsor {
                let (lifecycle, _) = state_of(sponsor);
                if lifecycle != Some(Lifecycle::Active) {
                    return Some(GuardViolation::SponsorNotActive {
                        entity: from_uid(principal),
                        sponsor: from_uid(sponsor),
                        lifecycle,
                    });
                }
            }
        }
        let answers_to_owner = governance.kind.is_non_human()
            && governance.kind != arbiter_core::IdentityKind::Credential;
        if self.config.orphans == crate::OrphanRule::Deny && answers_to_owner {
            let state = self.orphan_state(governance);
            if let Some(state) = state {
                return Some(GuardViolation::Orphaned {
                    entity: from_uid(principal),
                    owner: governance.owner.as_ref().map(from_uid),
                    state,
                });
            }
        }
        None
    }

    /// Why an identity's owner does not count (`none`, `not in the inventory`, `not a human`,
    /// or the owner's lifecycle); `None` when it has an active human owner.
    fn orphan_state(&self, governance: &crate::inventory::Governance) -> Option<String> {
        let Some(owner) = &governance.owner else {
            return Some("none".to_owned());
        };
        let Some(stored) = self.inventory.get(owner) else {
            return Some("not in the inventory".to_owned());
        };
        match &stored.governance {
            // A plain Cedar entity carries no governance facts, so it is not a known human.
            None => Some("not a human".to_owned()),
            Some(owner) if owner.kind != arbiter_core::IdentityKind::Human => {
                Some("not a human".to_owned())
            }
            Some(owner) if owner.lifecycle == Lifecycle::Active => None,
            Some(owner) => Some(owner.lifecycle.as_str().to_owned()),
        }
    }

    /// Whether the orphan rule downgrades this identity (a non-human, non-credential identity
    /// without an active human owner; a credential answers to its holder).
    fn orphan_downgraded(&self, governance: &crate::inventory::Governance) -> bool {
        let answers_to_owner = governance.kind.is_non_human()
            && governance.kind != arbiter_core::IdentityKind::Credential;
        answers_to_owner && self.orphan_state(governance).is_some()
    }

    /// Cedar evaluation of the candidate policies over the request's entity slice.
    #[expect(clippy::too_many_arguments, reason = "the parts of one Cedar request")]
    fn evaluate(
        &self,
        principal: &EntityUID,
        principal_local: Option<Arc<Entity>>,
        action: &EntityUID,
        action_local: Option<Arc<Entity>>,
        resource: &EntityUID,
        resource_local: Option<Arc<Entity>>,
        context: Context,
        overlay: &[u32],
    ) -> Result<Evaluation, Unresolvable> {
        let root = |uid: &EntityUID, local: &Option<Arc<Entity>>| -> Option<Root<'_>> {
            self.inventory
                .get(uid)
                .map(Root::Stored)
                .or_else(|| local.as_ref().map(|entity| Root::Local(Arc::clone(entity))))
        };
        let principal_root = root(principal, &principal_local);
        let action_root = root(action, &action_local);
        let resource_root = root(resource, &resource_local);
        let mut principal_ancestors: Vec<&EntityUID> = Vec::new();
        if let Some(root) = &principal_root {
            root.extend_ancestors(&mut principal_ancestors);
        }
        let mut resource_ancestors: Vec<&EntityUID> = Vec::new();
        if let Some(root) = &resource_root {
            root.extend_ancestors(&mut resource_ancestors);
        }
        let mut actions: Vec<&EntityUID> = vec![action];
        if let Some(root) = &action_root {
            root.extend_ancestors(&mut actions);
        }
        let candidates = self.policies.index.candidates(&IndexQuery {
            principal,
            principal_ancestors: &principal_ancestors,
            actions: &actions,
            resource,
            resource_ancestors: &resource_ancestors,
        });

        let slice = self.slice(
            [
                principal_root.as_ref(),
                action_root.as_ref(),
                resource_root.as_ref(),
            ],
            &context,
            &candidates,
            overlay,
        )?;
        let request = Request::new_unchecked(
            EntityUIDEntry::known(principal.clone(), None),
            EntityUIDEntry::known(action.clone(), None),
            EntityUIDEntry::known(resource.clone(), None),
            Some(context),
        );
        let evaluator = Evaluator::new(request.clone(), &slice, Extensions::all_available());
        let mut satisfied = Vec::new();
        let mut errors = Vec::new();
        for &policy_idx in &candidates {
            let Some(policy) = self.policy(policy_idx) else {
                continue;
            };
            // The index confirmed the scope, so the body decides (see `index`).
            let condition = policy.body.as_deref().unwrap_or(&policy.condition);
            match evaluator.interpret(condition, policy.policy.env()) {
                Ok(value) => match as_bool(&value) {
                    Some(true) => satisfied.push(policy_idx),
                    Some(false) => {}
                    None => errors.push((policy_idx, "condition is not a boolean".to_owned())),
                },
                Err(err) => errors.push((policy_idx, err.to_string())),
            }
        }
        let mut overlay_hits = Vec::new();
        for &policy_idx in overlay {
            let Some(policy) = self.policy(policy_idx) else {
                continue;
            };
            match evaluator.interpret(&policy.condition, policy.policy.env()) {
                Ok(value) => match as_bool(&value) {
                    Some(true) => overlay_hits.push((policy_idx, None)),
                    Some(false) => {}
                    None => overlay_hits
                        .push((policy_idx, Some("condition is not a boolean".to_owned()))),
                },
                Err(err) => overlay_hits.push((policy_idx, Some(err.to_string()))),
            }
        }
        Ok(Evaluation {
            request,
            slice,
            candidates,
            satisfied,
            errors,
            overlay_hits,
        })
    }

    /// The entities this request can read: the request's own (principal, action, resource) and
    /// those at the end of the access paths the candidate policies read (see `reach`), or,
    /// when a candidate's paths cannot be followed, every entity as far from the roots (those
    /// three, the context's entities and the policies' entity literals) as the candidates read.
    /// Cedar can read no other entity while evaluating them, so the result equals evaluating
    /// over the whole inventory.
    fn slice(
        &self,
        roots: [Option<&Root<'_>>; 3],
        context: &Context,
        candidates: &[u32],
        overlay: &[u32],
    ) -> Result<Entities, Unresolvable> {
        let max = self.config.max_slice_entities;
        let policies = || {
            candidates
                .iter()
                .chain(overlay)
                .filter_map(|idx| self.policy(*idx))
        };
        let mut visited = Visited::default();
        let mut members: Vec<Arc<Entity>> = Vec::with_capacity(16);
        for root in roots.into_iter().flatten() {
            if visited.insert(root.uid()) {
                members.push(root.cedar());
            }
        }
        // Every uid is borrowed (from the inventory, the request or the policies), never
        // cloned: uid clones and hashing were most of a slice's cost.
        let too_large = || Unresolvable(GuardViolation::EntitySliceTooLarge { max_entities: max });
        let mut found: Vec<&EntityUID> = Vec::new();
        if policies().all(|policy| matches!(*policy.reads, Reads::Paths(_))) {
            let mut followed: Vec<&Path> = Vec::new();
            for policy in policies() {
                let Reads::Paths(paths) = &*policy.reads else {
                    continue;
                };
                for path in paths.iter() {
                    if !followed.contains(&path) {
                        followed.push(path);
                        self.follow(path, &roots, context, &mut found);
                    }
                }
            }
            for uid in found {
                if visited.insert(uid) {
                    if let Some(stored) = self.inventory.get(uid) {
                        if members.len() >= max {
                            return Err(too_large());
                        }
                        members.push(stored.cedar());
                    }
                }
            }
        } else {
            let limit = policies()
                .map(|policy| match policy.reach {
                    Reach::Within(distance) => distance,
                    Reach::Unbounded => u32::MAX,
                })
                .max()
                .unwrap_or(0);
            // Breadth first, one distance at a time, so that an entity is taken at its
            // shortest distance from the roots.
            let mut next: Vec<&EntityUID> = Vec::new();
            for root in roots.into_iter().flatten() {
                root.extend_refs(&mut next);
            }
            let mut frontier = found;
            if let Context::Value(record) = context {
                for value in record.values() {
                    borrow_uids(value, &mut frontier);
                }
            }
            for policy in policies() {
                frontier.extend(policy.literal_refs.iter());
            }
            let mut distance = 0;
            loop {
                for uid in frontier.drain(..) {
                    if visited.insert(uid) {
                        if let Some(stored) = self.inventory.get(uid) {
                            if members.len() >= max {
                                return Err(too_large());
                            }
                            members.push(stored.cedar());
                            stored.extend_refs(&mut next);
                        }
                    }
                }
                if next.is_empty() || distance >= limit {
                    break;
                }
                distance += 1;
                std::mem::swap(&mut frontier, &mut next);
            }
        }
        Entities::new()
            .add_entities(
                members,
                None::<&NoEntitiesSchema>,
                TCComputation::AssumeAlreadyComputed,
                Extensions::all_available(),
            )
            .map_err(|err| {
                Unresolvable(GuardViolation::InvalidRequest {
                    field: "$".to_owned(),
                    message: format!("entity slice: {err}"),
                })
            })
    }

    /// Appends the entities `path` leads to for this request.
    fn follow<'a>(
        &'a self,
        path: &'a Path,
        roots: &[Option<&'a Root<'a>>; 3],
        context: &'a Context,
        out: &mut Vec<&'a EntityUID>,
    ) {
        let [principal, action, resource] = *roots;
        let start = match &path.origin {
            Origin::Principal => principal.map(Root::view),
            Origin::Action => action.map(Root::view),
            Origin::Resource => resource.map(Root::view),
            Origin::Literal(uid) => {
                if path.steps.is_empty() {
                    out.push(uid);
                    return;
                }
                self.view(uid, roots)
            }
            Origin::Context => {
                let (Context::Value(record), Some((Step::Attr(field), rest))) =
                    (context, path.steps.split_first())
                else {
                    return;
                };
                if let Some(value) = record.get(field) {
                    self.walk_value(value, rest, roots, out);
                }
                return;
            }
        };
        if let Some(view) = start {
            self.walk_entity(view, &path.steps, roots, out);
        }
    }

    /// The data of `uid`, from the inventory or, for an entity built from the request, its root.
    fn view<'a>(&'a self, uid: &EntityUID, roots: &[Option<&'a Root<'a>>; 3]) -> Option<View<'a>> {
        match self.inventory.get(uid) {
            Some(stored) => Some(View::Stored(stored)),
            None => roots
                .iter()
                .flatten()
                .find(|root| root.uid() == uid)
                .map(|root| root.view()),
        }
    }

    fn walk_entity<'a>(
        &'a self,
        view: View<'a>,
        steps: &'a [Step],
        roots: &[Option<&'a Root<'a>>; 3],
        out: &mut Vec<&'a EntityUID>,
    ) {
        let Some((step, rest)) = steps.split_first() else {
            return;
        };
        match step {
            Step::Attr(name) => {
                if let Some(value) = view.attr(name) {
                    self.walk_value(value, rest, roots, out);
                }
            }
            Step::Tag(name) => {
                if let Some(value) = view.tag(name) {
                    self.walk_value(value, rest, roots, out);
                }
            }
            Step::AnyTag => {
                let mut values = Vec::new();
                view.extend_tag_values(&mut values);
                for value in values {
                    self.walk_value(value, rest, roots, out);
                }
            }
        }
    }

    /// Follows `steps` from `value`: an entity's attribute or tag, or a record's field. Any
    /// other value has nothing to follow (Cedar would raise a type error there).
    fn walk_value<'a>(
        &'a self,
        value: &'a Value,
        steps: &'a [Step],
        roots: &[Option<&'a Root<'a>>; 3],
        out: &mut Vec<&'a EntityUID>,
    ) {
        match &value.value {
            ValueKind::Lit(Literal::EntityUID(uid)) => {
                if steps.is_empty() {
                    out.push(uid);
                } else if let Some(view) = self.view(uid, roots) {
                    self.walk_entity(view, steps, roots, out);
                }
            }
            ValueKind::Record(record) => {
                if let Some((Step::Attr(field), rest)) = steps.split_first() {
                    if let Some(value) = record.get(field) {
                        self.walk_value(value, rest, roots, out);
                    }
                }
            }
            ValueKind::Lit(_) | ValueKind::Set(_) | ValueKind::ExtensionValue(_) => {}
        }
    }

    /// `context.arbiter`: the time, the principal's live signals and the delegation chain.
    fn arbiter_context(
        &self,
        resolved: &Resolved<'_>,
        principal: &EntityUID,
        now: Timestamp,
        with_json: bool,
    ) -> (Value, Option<Json>) {
        let mut fresh: BTreeMap<SmolStr, Value> = BTreeMap::new();
        let mut fresh_json = Map::new();
        let mut stale: Vec<Value> = Vec::new();
        let mut stale_json = Vec::new();
        if let Some(signals) = self.inventory.signals_of(principal) {
            for (name, signal) in signals.iter() {
                if signal.is_stale(now) {
                    stale.push(Value::from(name.as_str()));
                    stale_json.push(json!(name));
                    continue;
                }
                let Some(value) = signal_value(&signal.value) else {
                    continue;
                };
                let age = signal.age_seconds(now);
                fresh.insert(
                    name.into(),
                    Value::record(
                        [
                            ("value", value),
                            ("source", Value::from(signal.source.as_str())),
                            ("age_seconds", Value::from(age)),
                        ],
                        None,
                    ),
                );
                fresh_json.insert(
                    name.clone(),
                    json!({"value": signal.value, "source": signal.source, "age_seconds": age}),
                );
            }
        }
        let delegated = !resolved.chain.is_empty();
        let mut record: Vec<(&str, Value)> = vec![
            ("now", Value::from(now)),
            ("signals", Value::record_arc(Arc::new(fresh), None)),
            ("stale_signals", Value::set(stale, None)),
            ("delegated", Value::from(delegated)),
        ];
        let mut record_json = json!({
            "now": now,
            "signals": fresh_json,
            "stale_signals": stale_json,
            "delegated": delegated,
        });
        if let Some(origin) = resolved.chain.first() {
            let chain: Vec<Value> = resolved
                .chain
                .iter()
                .chain(std::iter::once(&resolved.subject))
                .map(|uid| Value::from(uid.clone()))
                .collect();
            let depth = i64::try_from(resolved.chain.len()).unwrap_or(i64::MAX);
            record.push((
                "delegation",
                Value::record(
                    [
                        ("origin", Value::from(origin.clone())),
                        ("chain", Value::set(chain, None)),
                        ("depth", Value::from(depth)),
                    ],
                    None,
                ),
            ));
            if let Json::Object(map) = &mut record_json {
                let chain_json: Vec<Json> = resolved
                    .chain
                    .iter()
                    .chain(std::iter::once(&resolved.subject))
                    .map(|uid| entity_json(&from_uid(uid)))
                    .collect();
                map.insert(
                    "delegation".to_owned(),
                    json!({"origin": entity_json(&from_uid(origin)), "chain": chain_json, "depth": depth}),
                );
            }
        }
        (
            Value::record(record, None),
            with_json.then_some(record_json),
        )
    }

    /// Arbiter's outcome rules over Cedar's evaluation.
    fn judge(
        &self,
        principal: &EntityUID,
        evaluation: Evaluation,
        options: &DecideOptions,
    ) -> HopTrace {
        let evaluator = Evaluator::new(
            evaluation.request.clone(),
            &evaluation.slice,
            Extensions::all_available(),
        );
        let errors: Vec<DecisionError> = evaluation
            .errors
            .iter()
            .filter_map(|(idx, message)| {
                self.policy(*idx).map(|policy| DecisionError {
                    policy: Some(policy.id.clone()),
                    message: message.clone(),
                })
            })
            .collect();
        let satisfied: Vec<&CompiledPolicy> = evaluation
            .satisfied
            .iter()
            .filter_map(|idx| self.policy(*idx))
            .collect();
        let permits: Vec<&CompiledPolicy> = satisfied
            .iter()
            .copied()
            .filter(|policy| policy.effect == Effect::Permit)
            .collect();
        let forbids: Vec<&CompiledPolicy> = satisfied
            .iter()
            .copied()
            .filter(|policy| policy.effect == Effect::Forbid)
            .collect();
        let erroring_forbid = evaluation.errors.iter().find_map(|(idx, message)| {
            self.policy(*idx)
                .filter(|policy| policy.effect == Effect::Forbid)
                .map(|policy| (policy, message))
        });

        let mut explanation = Explanation::default();
        let mut explain = |policy: &CompiledPolicy, role: PolicyTraceRole| {
            if options.explain {
                explanation
                    .policies
                    .push(explain_policy(&evaluator, policy, role));
            }
        };
        for (idx, _) in &evaluation.errors {
            if let Some(policy) = self.policy(*idx) {
                explain(policy, PolicyTraceRole::Errored);
            }
        }

        let (outcome, guard, determining): (Outcome, Option<GuardViolation>, Vec<&CompiledPolicy>) =
            if let Some((policy, message)) = erroring_forbid {
                // Cedar skips an erroring forbid; Arbiter cannot tell what it would have said.
                let guard = GuardViolation::ForbidErrored {
                    policy: policy.id.clone(),
                    message: message.clone(),
                };
                (Outcome::Deny, Some(guard), vec![policy])
            } else if let Some(guard) =
                self.unavailable_signal(&evaluator, &evaluation, principal, options.now)
            {
                (Outcome::Deny, Some(guard), Vec::new())
            } else if !forbids.is_empty() {
                let all_ask_approval = forbids.iter().all(|policy| policy.approval.is_some());
                if all_ask_approval && !permits.is_empty() {
                    (Outcome::ApprovalRequired, None, forbids)
                } else {
                    (Outcome::Deny, None, forbids)
                }
            } else if !permits.is_empty() {
                (Outcome::Allow, None, permits)
            } else {
                (Outcome::Deny, None, Vec::new())
            };

        for policy in &determining {
            if !evaluation
                .errors
                .iter()
                .any(|(idx, _)| self.policy(*idx).is_some_and(|p| std::ptr::eq(p, *policy)))
            {
                explain(policy, PolicyTraceRole::Determining);
            }
        }
        if options.explain && outcome == Outcome::Deny && guard.is_none() && determining.is_empty()
        {
            let candidates: Vec<&CompiledPolicy> = evaluation
                .candidates
                .iter()
                .filter(|idx| !evaluation.errors.iter().any(|(err_idx, _)| err_idx == *idx))
                .filter_map(|idx| self.policy(*idx))
                .filter(|policy| policy.effect == Effect::Permit)
                .collect();
            explanation.policies.extend(nearest_misses(
                &evaluator,
                &candidates,
                self.config.nearest_misses,
            ));
        }
        HopTrace {
            principal: from_uid(principal),
            outcome,
            guard,
            determining: determining
                .iter()
                .map(|policy| determining_policy(policy))
                .collect(),
            errors,
            candidates: evaluation.candidates.len(),
            controls: Vec::new(),
            explanation,
        }
    }

    /// A policy that applies but needs a signal the principal lacks (missing or stale).
    fn unavailable_signal(
        &self,
        evaluator: &Evaluator<'_>,
        evaluation: &Evaluation,
        principal: &EntityUID,
        now: Timestamp,
    ) -> Option<GuardViolation> {
        let signals = self.inventory.signals_of(principal);
        for policy_idx in &evaluation.candidates {
            let Some(policy) = self.policy(*policy_idx) else {
                continue;
            };
            if policy.required_signals.is_empty() {
                continue;
            }
            let applies = evaluator
                .interpret(&policy.scope, policy.policy.env())
                .ok()
                .and_then(|value| as_bool(&value))
                .unwrap_or(true);
            if !applies {
                continue;
            }
            for name in &policy.required_signals {
                let state = match signals.and_then(|signals| signals.get(name)) {
                    None => "missing",
                    Some(signal) if signal.is_stale(now) => "stale",
                    Some(_) => continue,
                };
                return Some(GuardViolation::SignalUnavailable {
                    policy: policy.id.clone(),
                    signal: name.clone(),
                    state: state.to_owned(),
                });
            }
        }
        None
    }

    fn finish(
        &self,
        options: &DecideOptions,
        hops: Vec<HopTrace>,
        ignored_properties: Vec<String>,
        context: Json,
    ) -> Decision {
        let n_hops = hops.len();
        let deciding = hops
            .iter()
            .position(|hop| hop.outcome == Outcome::Deny)
            .or_else(|| {
                hops.iter()
                    .position(|hop| hop.outcome == Outcome::ApprovalRequired)
            })
            .unwrap_or(n_hops.saturating_sub(1));
        let (outcome, determining, reason_admin, reason_user, errors) = match hops.get(deciding) {
            Some(hop) => {
                let (admin, user) = reasons(hop);
                let admin = if n_hops > 1 {
                    format!(
                        "hop {} of {n_hops} ({}): {admin}",
                        deciding + 1,
                        hop.principal
                    )
                } else {
                    admin
                };
                (
                    hop.outcome,
                    hop.determining.clone(),
                    admin,
                    user,
                    hop.errors.clone(),
                )
            }
            None => (
                Outcome::Deny,
                Vec::new(),
                "denied: internal error: no principal was evaluated".to_owned(),
                "denied".to_owned(),
                Vec::new(),
            ),
        };
        Decision {
            id: options.decision_id.clone(),
            outcome,
            determining,
            reason_admin,
            reason_user,
            errors,
            ignored_properties,
            hops,
            context,
            snapshot: SnapshotInfo {
                policy_version: self.policies.version(),
                policy_digest: self.policies.digest().to_owned(),
                inventory_version: self.inventory.version(),
                change_seq: self.change_seq,
            },
            decided_at: options.now,
        }
    }
}

fn guard_hop(principal: &EntityUID, guard: GuardViolation) -> HopTrace {
    HopTrace {
        principal: from_uid(principal),
        outcome: Outcome::Deny,
        guard: Some(guard),
        determining: Vec::new(),
        errors: Vec::new(),
        candidates: 0,
        controls: Vec::new(),
        explanation: Explanation::default(),
    }
}

/// The deny of a quarantine (outside its safe actions) or of a downgrade that cannot apply.
fn contained_guard(target: &EntityUID, control: &Control) -> GuardViolation {
    GuardViolation::Contained {
        control: control.id.clone(),
        target: from_uid(target),
        level: control.level,
        reason: control.reason.clone(),
    }
}

fn determining_policy(policy: &CompiledPolicy) -> DeterminingPolicy {
    DeterminingPolicy {
        id: policy.id.clone(),
        effect: policy.effect,
        annotations: policy.annotations.clone(),
    }
}

/// The administrator's and the end user's reason for one hop's outcome, naming any control
/// that only observes it.
fn reasons(hop: &HopTrace) -> (String, String) {
    let (mut admin, user) = outcome_reasons(hop);
    for control in hop
        .controls
        .iter()
        .filter(|control| control.level == ControlLevel::Observe)
    {
        admin.push_str(&format!(
            " (observed: control `{}` on `{}`: {})",
            control.id, control.target, control.reason
        ));
    }
    (admin, user)
}

fn outcome_reasons(hop: &HopTrace) -> (String, String) {
    if let Some(guard) = &hop.guard {
        return guard_reasons(guard);
    }
    let ids = || {
        hop.determining
            .iter()
            .map(|policy| format!("`{}`", policy.id))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let annotation = |key: &str| {
        hop.determining
            .iter()
            .find_map(|policy| policy.annotations.get(key).cloned())
    };
    match hop.outcome {
        Outcome::Allow => (format!("allowed by {}", ids()), "allowed".to_owned()),
        Outcome::ApprovalRequired if annotation("approval").is_none() => {
            let control = hop
                .controls
                .iter()
                .find(|control| control.level == ControlLevel::RequireApproval);
            let (id, why) = control.map_or(("?", ""), |control| {
                (control.id.as_str(), control.reason.as_str())
            });
            (
                format!(
                    "approval required by control `{id}` (allowed by {}): {why}",
                    ids()
                ),
                format!("this needs a human's approval: {why}"),
            )
        }
        Outcome::ApprovalRequired => {
            let why = annotation("approval").unwrap_or_default();
            (
                format!("approval required by {}: {why}", ids()),
                format!("this needs a human's approval: {why}"),
            )
        }
        Outcome::Deny if !hop.determining.is_empty() => {
            let user = annotation("reason").unwrap_or_else(|| "denied by policy".to_owned());
            (format!("denied by forbid {}", ids()), user)
        }
        Outcome::Deny => {
            let nearest = hop
                .explanation
                .policies
                .iter()
                .find(|trace| trace.role == PolicyTraceRole::NearestMiss);
            let admin = match nearest
                .and_then(|trace| first_failure(trace).map(|failure| (trace, failure)))
            {
                Some((trace, failure)) => format!(
                    "denied: no permit applies; nearest is `{}`, which failed at {failure}",
                    trace.id
                ),
                None if hop.candidates == 0 => {
                    "denied: no policy applies to this principal, action and resource".to_owned()
                }
                None => "denied: no permit applies".to_owned(),
            };
            (admin, "denied: no policy allows this".to_owned())
        }
    }
}

fn guard_reasons(guard: &GuardViolation) -> (String, String) {
    match guard {
        GuardViolation::Contained {
            control,
            target,
            level,
            reason,
        } => (
            match level {
                ControlLevel::Quarantine => format!(
                    "denied: control `{control}` quarantines `{target}` and this action is not \
                     in its safe set: {reason}"
                ),
                _ => format!(
                    "denied: control `{control}` ({}) on `{target}` cannot apply (its overlay is \
                     not in the active policy set), so it fails closed: {reason}",
                    level.as_str()
                ),
            },
            "denied: this identity or resource is contained".to_owned(),
        ),
        GuardViolation::Downgraded {
            control,
            target,
            overlay,
            policy,
        } => (
            format!(
                "denied: control `{control}` downgrades `{target}` to overlay `{overlay}`, whose \
                 policy `{policy}` forbids this"
            ),
            format!("denied: this identity is restricted ({overlay})"),
        ),
        GuardViolation::UnknownPrincipal { entity } => (
            format!("denied: unknown principal `{entity}` (not in the inventory)"),
            "denied: unknown identity".to_owned(),
        ),
        GuardViolation::NotActive { entity, lifecycle } => (
            format!(
                "denied: `{entity}` is {} (lifecycle guard: only active identities may act)",
                lifecycle.as_str()
            ),
            format!("denied: this identity is {}", lifecycle.as_str()),
        ),
        GuardViolation::CredentialExpired { entity, expires_at } => (
            format!("denied: credential `{entity}` expired at {expires_at}"),
            "denied: credential expired".to_owned(),
        ),
        GuardViolation::HolderNotActive {
            entity,
            holder,
            lifecycle,
        } => (
            format!(
                "denied: credential `{entity}` belongs to `{holder}`, which is {}",
                lifecycle.map_or("not in the inventory", Lifecycle::as_str)
            ),
            "denied: this credential's identity is not active".to_owned(),
        ),
        GuardViolation::SponsorNotActive {
            entity,
            sponsor,
            lifecycle,
        } => (
            format!(
                "denied: `{entity}` is sponsored by `{sponsor}`, which is {} (containment cascades to what it sponsors)",
                lifecycle.map_or("not in the inventory", Lifecycle::as_str)
            ),
            "denied: the identity that vouches for this one is not active".to_owned(),
        ),
        GuardViolation::Orphaned {
            entity,
            owner,
            state,
        } => (
            match owner {
                Some(owner) => format!(
                    "denied: `{entity}` is orphaned: its owner `{owner}` is {state}; assign an active human owner"
                ),
                None => format!("denied: `{entity}` is orphaned: it has no owner; assign an active human owner"),
            },
            "denied: this identity has no accountable owner".to_owned(),
        ),
        GuardViolation::DelegationTooLong { hops, max_hops } => (
            format!("denied: delegation chain has {hops} principals, more than the {max_hops} allowed"),
            "denied: delegation chain too long".to_owned(),
        ),
        GuardViolation::SignalUnavailable {
            policy,
            signal,
            state,
        } => (
            format!("denied: policy `{policy}` requires signal `{signal}`, which is {state} (fail closed)"),
            "denied: required security signal unavailable".to_owned(),
        ),
        GuardViolation::ForbidErrored { policy, message } => (
            format!("denied: forbid `{policy}` failed to evaluate (fail closed): {message}"),
            "denied: a policy could not be evaluated".to_owned(),
        ),
        GuardViolation::EntitySliceTooLarge { max_entities } => (
            format!("denied: the request reaches more than {max_entities} entities"),
            "denied: request too complex".to_owned(),
        ),
        GuardViolation::InvalidRequest { field, message } => (
            format!("denied: invalid request: `{field}`: {message}"),
            "denied: invalid request".to_owned(),
        ),
    }
}

/// Caller context in Cedar form. Entity references use Cedar's `__entity` escape.
fn cedar_context(
    context: &Map<String, Json>,
    known_types: &HashMap<String, EntityType>,
) -> Result<BTreeMap<SmolStr, Value>, Unresolvable> {
    // Plain JSON and the common escapes (`__entity`, single-argument `__extn`) convert directly;
    // Cedar's own JSON parser, many times slower, handles everything else and reports errors.
    let fast: Option<BTreeMap<SmolStr, Value>> = context
        .iter()
        .map(|(key, value)| {
            plain_value(value, known_types).map(|value| (SmolStr::from(key.as_str()), value))
        })
        .collect();
    if let Some(record) = fast {
        return Ok(record);
    }
    let parsed = Context::from_json_value(Json::Object(context.clone())).map_err(|err| {
        Unresolvable(GuardViolation::InvalidRequest {
            field: "context".to_owned(),
            message: diagnostic_text(&err),
        })
    })?;
    match parsed {
        Context::Value(record) => Ok(record.as_ref().clone()),
        Context::RestrictedResidual(_) => Err(Unresolvable(GuardViolation::InvalidRequest {
            field: "context".to_owned(),
            message: "unknown values are not supported".to_owned(),
        })),
    }
}

/// A JSON value as a Cedar value, exactly as Cedar's parser would build it; `None` for anything
/// this does not handle (floats, null, unusual escapes, invalid input), which goes to Cedar's
/// parser so that its error messages and edge cases stay Cedar's.
fn plain_value(json: &Json, known_types: &HashMap<String, EntityType>) -> Option<Value> {
    match json {
        Json::Bool(flag) => Some(Value::from(*flag)),
        Json::Number(number) => number.as_i64().map(Value::from),
        Json::String(text) => Some(Value::from(text.as_str())),
        Json::Array(items) => items
            .iter()
            .map(|item| plain_value(item, known_types))
            .collect::<Option<Vec<_>>>()
            .map(|items| Value::set(items, None)),
        Json::Object(fields) => {
            if fields.keys().any(|key| key.starts_with("__")) {
                return escaped_value(fields, known_types);
            }
            fields
                .iter()
                .map(|(key, value)| {
                    plain_value(value, known_types)
                        .map(|value| (SmolStr::from(key.as_str()), value))
                })
                .collect::<Option<BTreeMap<SmolStr, Value>>>()
                .map(|record| Value::record_arc(Arc::new(record), None))
        }
        Json::Null => None,
    }
}

/// `{"__entity": {"type", "id"}}` and `{"__extn": {"fn", "arg"}}` with a string argument.
fn escaped_value(
    fields: &Map<String, Json>,
    known_types: &HashMap<String, EntityType>,
) -> Option<Value> {
    let mut entries = fields.iter();
    let (key, Json::Object(body)) = entries.next()? else {
        return None;
    };
    if entries.next().is_some() || body.len() != 2 {
        return None;
    }
    match key.as_str() {
        "__entity" => {
            let (Some(Json::String(entity_type)), Some(Json::String(id))) =
                (body.get("type"), body.get("id"))
            else {
                return None;
            };
            // A type the inventory holds is taken from the table rather than parsed again.
            let uid = match known_types.get(entity_type) {
                Some(known) => {
                    EntityUID::from_components(known.clone(), Eid::new(id.as_str()), None)
                }
                None => to_uid(&EntityRef::new(entity_type, id)).ok()?,
            };
            Some(Value::from(uid))
        }
        "__extn" => {
            let (Some(Json::String(function)), Some(Json::String(arg))) =
                (body.get("fn"), body.get("arg"))
            else {
                return None;
            };
            let function = extension_constructor(function)?;
            match function.call(&[Value::from(arg.as_str())]).ok()? {
                PartialValue::Value(value) => Some(value),
                PartialValue::Residual(_) => None,
            }
        }
        _ => None,
    }
}

/// The extension constructors callers use in contexts, looked up once: parsing a Cedar name
/// per request would cost more than the call.
fn extension_constructor(name: &str) -> Option<&'static ExtensionFunction> {
    static CONSTRUCTORS: OnceLock<Vec<(&'static str, &'static ExtensionFunction)>> =
        OnceLock::new();
    let constructors = CONSTRUCTORS.get_or_init(|| {
        ["ip", "decimal", "datetime", "duration"]
            .into_iter()
            .filter_map(|name| {
                let parsed = Name::from_str(name).ok()?;
                let function = Extensions::all_available().func(&parsed).ok()?;
                Some((name, function))
            })
            .collect()
    });
    constructors
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, function)| *function)
}

fn signal_value(json: &Json) -> Option<Value> {
    match json {
        Json::Bool(flag) => Some(Value::from(*flag)),
        Json::Number(number) => number.as_i64().map(Value::from),
        Json::String(text) => Some(Value::from(text.as_str())),
        _ => None,
    }
}

fn entity_json(entity: &EntityRef) -> Json {
    json!({"type": entity.entity_type, "id": entity.id})
}

pub(crate) fn as_bool(value: &Value) -> Option<bool> {
    match &value.value {
        ValueKind::Lit(Literal::Bool(flag)) => Some(*flag),
        _ => None,
    }
}

/// Entity references in an entity that is not in the inventory (built from request properties).
/// The uids a slice walk has seen. A typical slice holds about a dozen entities, where a linear
/// scan beats hashing; past `SMALL` a hash set keeps large slices linear overall.
#[derive(Default)]
struct Visited<'a> {
    small: Vec<&'a EntityUID>,
    large: HashSet<&'a EntityUID, foldhash::fast::RandomState>,
}

impl<'a> Visited<'a> {
    const SMALL: usize = 32;

    /// Whether `uid` was not seen before.
    fn insert(&mut self, uid: &'a EntityUID) -> bool {
        if self.small.len() < Self::SMALL {
            if self.small.contains(&uid) {
                return false;
            }
            self.small.push(uid);
            return true;
        }
        if self.large.is_empty() {
            self.large.extend(self.small.iter().copied());
        }
        self.large.insert(uid)
    }
}

/// One of a request's own entities: the inventory's, or one built from the request.
enum Root<'a> {
    Stored(&'a StoredEntity),
    Local(Arc<Entity>),
}

impl Root<'_> {
    fn uid(&self) -> &EntityUID {
        match self {
            Root::Stored(stored) => stored.uid(),
            Root::Local(entity) => entity.uid(),
        }
    }

    fn view(&self) -> View<'_> {
        match self {
            Root::Stored(stored) => View::Stored(stored),
            Root::Local(entity) => View::Local(entity),
        }
    }

    fn cedar(&self) -> Arc<Entity> {
        match self {
            Root::Stored(stored) => stored.cedar(),
            Root::Local(entity) => Arc::clone(entity),
        }
    }

    fn extend_ancestors<'a>(&'a self, out: &mut Vec<&'a EntityUID>) {
        match self {
            Root::Stored(stored) => stored.extend_ancestors(out),
            Root::Local(entity) => out.extend(entity.ancestors()),
        }
    }

    fn extend_refs<'a>(&'a self, out: &mut Vec<&'a EntityUID>) {
        match self {
            Root::Stored(stored) => stored.extend_refs(out),
            Root::Local(entity) => {
                for (_, value) in entity.attrs() {
                    if let PartialValue::Value(value) = value {
                        borrow_uids(value, out);
                    }
                }
            }
        }
    }
}

/// An entity's data as a slice walk reads it: the inventory's, or one built from the request.
#[derive(Clone, Copy)]
enum View<'a> {
    Stored(&'a StoredEntity),
    Local(&'a Entity),
}

impl<'a> View<'a> {
    fn attr(self, name: &str) -> Option<&'a Value> {
        match self {
            View::Stored(stored) => stored.attr(name),
            View::Local(entity) => known(entity.get(name)),
        }
    }

    fn tag(self, name: &str) -> Option<&'a Value> {
        match self {
            View::Stored(stored) => stored.tag(name),
            View::Local(entity) => known(entity.get_tag(name)),
        }
    }

    fn extend_tag_values(self, out: &mut Vec<&'a Value>) {
        match self {
            View::Stored(stored) => stored.extend_tag_values(out),
            View::Local(entity) => {
                out.extend(entity.tags().filter_map(|(_, value)| known(Some(value))));
            }
        }
    }
}

/// With a schema, the principal and resource types must be ones the action applies to.
fn check_types_against_schema(
    schema: &cedar_policy_core::validator::ValidatorSchema,
    principal: &EntityUID,
    action: &EntityUID,
    resource: &EntityUID,
) -> Result<(), (&'static str, String)> {
    let Some(action_id) = schema.get_action_id(action) else {
        return Err((
            "action.name",
            format!("`{action}` is not an action in the schema"),
        ));
    };
    if !action_id.is_applicable_principal_type(principal.entity_type()) {
        return Err((
            "subject.type",
            format!(
                "`{}` is not a principal type that `{action}` applies to",
                principal.entity_type()
            ),
        ));
    }
    if !action_id.is_applicable_resource_type(resource.entity_type()) {
        return Err((
            "resource.type",
            format!(
                "`{}` is not a resource type that `{action}` applies to",
                resource.entity_type()
            ),
        ));
    }
    Ok(())
}
