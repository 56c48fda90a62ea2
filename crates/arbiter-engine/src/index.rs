//! The policy index: for a request, which policies could possibly apply.
//!
//! Cedar evaluates every policy on every request. Most policies in a large NHI deployment name a
//! principal (or one of its groups) and an action in their scope, so the index keys each policy
//! by the most selective part of its scope and a request collects only the buckets its
//! principal, the principal's ancestors, its action and the action's groups can reach.
//!
//! INVARIANT: the candidates are a superset of the policies whose scope matches the request.
//! A policy left out has a scope that is false for the request, and a false scope makes Cedar's
//! condition false without evaluating anything that could error, so leaving it out changes
//! neither the outcome, nor the determining policies, nor the errors.

use crate::policies::CompiledPolicy;
use cedar_policy_core::ast::{
    ActionConstraint, EntityReference, EntityType, EntityUID, PrincipalOrResourceConstraint,
};
use std::collections::HashMap;

/// Index maps hash entity uids on every decision; foldhash (randomly seeded) is several times
/// cheaper than the default SipHash, and the keys come from policies, not from callers.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Policies grouped by action, with those that do not constrain the action apart.
#[derive(Debug, Default)]
struct ActionBuckets {
    by_action: FastMap<EntityUID, Vec<u32>>,
    any_action: Vec<u32>,
}

impl ActionBuckets {
    fn insert(&mut self, constraint: &ActionConstraint, policy_idx: u32) {
        match constraint {
            ActionConstraint::Eq(action) => self.push(action, policy_idx),
            ActionConstraint::In(actions) => {
                for action in actions {
                    self.push(action, policy_idx);
                }
            }
            // `Any` and anything this build does not know how to key: always a candidate.
            #[allow(
                unreachable_patterns,
                reason = "ErrorConstraint exists only with Cedar's tolerant-ast feature"
            )]
            _ => self.any_action.push(policy_idx),
        }
    }

    fn push(&mut self, action: &EntityUID, policy_idx: u32) {
        self.by_action
            .entry(action.clone())
            .or_default()
            .push(policy_idx);
    }

    fn collect(&self, actions: &[&EntityUID], out: &mut Vec<u32>) {
        out.extend_from_slice(&self.any_action);
        for action in actions {
            if let Some(bucket) = self.by_action.get(*action) {
                out.extend_from_slice(bucket);
            }
        }
    }
}

/// The index itself: immutable, built once per policy set.
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex {
    by_principal: ScopedBuckets,
    by_resource: ScopedBuckets,
    unscoped: ActionBuckets,
}

/// Policies keyed by a principal or resource scope.
#[derive(Debug, Default)]
struct ScopedBuckets {
    /// `== E`, `in E`, `is T in E`: reached from the entity itself or any descendant.
    by_entity: FastMap<EntityUID, ActionBuckets>,
    /// `is T`: reached from any entity of the type.
    by_type: FastMap<EntityType, ActionBuckets>,
}

impl ScopedBuckets {
    /// Files the policy here if its scope constraint can be keyed; `false` when it is `Any`.
    fn insert(
        &mut self,
        constraint: &PrincipalOrResourceConstraint,
        action: &ActionConstraint,
        policy_idx: u32,
    ) -> bool {
        match constraint {
            PrincipalOrResourceConstraint::Eq(EntityReference::EUID(uid))
            | PrincipalOrResourceConstraint::In(EntityReference::EUID(uid))
            | PrincipalOrResourceConstraint::IsIn(_, EntityReference::EUID(uid)) => self
                .by_entity
                .entry(uid.as_ref().clone())
                .or_default()
                .insert(action, policy_idx),
            PrincipalOrResourceConstraint::Is(entity_type) => self
                .by_type
                .entry(entity_type.as_ref().clone())
                .or_default()
                .insert(action, policy_idx),
            // Slots never reach here (templates are rejected at load); `Any` is not a key.
            _ => return false,
        }
        true
    }

    fn collect(
        &self,
        entity: &EntityUID,
        ancestors: &[&EntityUID],
        actions: &[&EntityUID],
        out: &mut Vec<u32>,
    ) {
        if !self.by_entity.is_empty() {
            for key in std::iter::once(entity).chain(ancestors.iter().copied()) {
                if let Some(buckets) = self.by_entity.get(key) {
                    buckets.collect(actions, out);
                }
            }
        }
        if let Some(buckets) = self.by_type.get(entity.entity_type()) {
            buckets.collect(actions, out);
        }
    }
}

/// What a request offers the index: each entity with its ancestors.
pub(crate) struct IndexQuery<'a> {
    pub(crate) principal: &'a EntityUID,
    pub(crate) principal_ancestors: &'a [&'a EntityUID],
    pub(crate) actions: &'a [&'a EntityUID],
    pub(crate) resource: &'a EntityUID,
    pub(crate) resource_ancestors: &'a [&'a EntityUID],
}

impl PolicyIndex {
    pub(crate) fn build(policies: &[CompiledPolicy]) -> Self {
        let mut index = PolicyIndex::default();
        for (policy_idx, policy) in policies.iter().enumerate() {
            let Ok(policy_idx) = u32::try_from(policy_idx) else {
                break;
            };
            // Overlay policies apply only through a downgrade control, never as candidates.
            if policy.overlay.is_some() {
                continue;
            }
            let template = policy.policy.template();
            let action = template.action_constraint();
            let principal = template.principal_constraint();
            let resource = template.resource_constraint();
            // File each policy under its most selective scope: an entity beats a type, and a
            // type beats nothing; the principal wins ties.
            let principal_rank = selectivity(principal.as_inner());
            let resource_rank = selectivity(resource.as_inner());
            let keyed = if resource_rank > principal_rank {
                index
                    .by_resource
                    .insert(resource.as_inner(), action, policy_idx)
            } else {
                index
                    .by_principal
                    .insert(principal.as_inner(), action, policy_idx)
                    || index
                        .by_resource
                        .insert(resource.as_inner(), action, policy_idx)
            };
            if !keyed {
                index.unscoped.insert(action, policy_idx);
            }
        }
        index
    }

    /// Indices of the policies that may apply, sorted and without duplicates.
    pub(crate) fn candidates(&self, query: &IndexQuery<'_>) -> Vec<u32> {
        let mut out = Vec::new();
        self.unscoped.collect(query.actions, &mut out);
        self.by_principal.collect(
            query.principal,
            query.principal_ancestors,
            query.actions,
            &mut out,
        );
        self.by_resource.collect(
            query.resource,
            query.resource_ancestors,
            query.actions,
            &mut out,
        );
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// 2 for an entity scope, 1 for a type scope, 0 for none.
fn selectivity(constraint: &PrincipalOrResourceConstraint) -> u8 {
    match constraint {
        PrincipalOrResourceConstraint::Eq(EntityReference::EUID(_))
        | PrincipalOrResourceConstraint::In(EntityReference::EUID(_))
        | PrincipalOrResourceConstraint::IsIn(_, EntityReference::EUID(_)) => 2,
        PrincipalOrResourceConstraint::Is(_) => 1,
        _ => 0,
    }
}
