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
use std::hash::BuildHasher;

/// Index maps hash entity uids on every decision; foldhash (randomly seeded) is several times
/// cheaper than the default SipHash, and the keys come from policies, not from callers.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A uid with its hash under the index's hasher. A request's uids (principal, resource, action
/// and their ancestors) are hashed once, and every comparison with a policy's uids compares the
/// hashes first: comparing uids themselves (an id, a type name and a pointer to its namespace
/// path) was most of the index's cost at 10,000 policies.
#[derive(Debug, Clone)]
struct HashedUid {
    hash: u64,
    uid: EntityUID,
}

/// A request-side uid, hashed.
#[derive(Clone, Copy)]
struct Probe<'a> {
    hash: u64,
    uid: &'a EntityUID,
}

impl HashedUid {
    fn is(&self, probe: Probe<'_>) -> bool {
        self.hash == probe.hash && same_uid(&self.uid, probe.uid)
    }

    fn is_any_of(&self, probes: &[Probe<'_>]) -> bool {
        probes.iter().any(|probe| self.is(*probe))
    }
}

/// Uid equality, cheapest part first.
fn same_uid(left: &EntityUID, right: &EntityUID) -> bool {
    left.eid() == right.eid() && left.entity_type() == right.entity_type()
}

/// Policies keyed by entity uid, found by the uid's hash.
#[derive(Debug, Default)]
struct UidBuckets {
    by_hash: FastMap<u64, Vec<(EntityUID, ActionBuckets)>>,
}

impl UidBuckets {
    fn insert(&mut self, key: &HashedUid, action: &ActionCheck, policy_idx: u32) {
        let list = self.by_hash.entry(key.hash).or_default();
        match list.iter_mut().find(|(uid, _)| same_uid(uid, &key.uid)) {
            Some((_, buckets)) => buckets.insert(action, policy_idx),
            None => {
                let mut buckets = ActionBuckets::default();
                buckets.insert(action, policy_idx);
                list.push((key.uid.clone(), buckets));
            }
        }
    }

    fn get(&self, probe: Probe<'_>) -> Option<&ActionBuckets> {
        self.by_hash
            .get(&probe.hash)?
            .iter()
            .find(|(uid, _)| same_uid(uid, probe.uid))
            .map(|(_, buckets)| buckets)
    }
}

/// Policies grouped by action, with those that do not constrain the action apart. Few actions
/// appear in any policy set, so a short list compared by hash beats a map.
#[derive(Debug, Default)]
struct ActionBuckets {
    by_action: Vec<(HashedUid, Vec<u32>)>,
    any_action: Vec<u32>,
}

impl ActionBuckets {
    fn insert(&mut self, constraint: &ActionCheck, policy_idx: u32) {
        match constraint {
            ActionCheck::Eq(action) => self.push(action, policy_idx),
            ActionCheck::In(actions) => {
                for action in actions {
                    self.push(action, policy_idx);
                }
            }
            ActionCheck::Any => self.any_action.push(policy_idx),
        }
    }

    fn push(&mut self, action: &HashedUid, policy_idx: u32) {
        match self
            .by_action
            .iter_mut()
            .find(|(key, _)| key.hash == action.hash && same_uid(&key.uid, &action.uid))
        {
            Some((_, bucket)) => bucket.push(policy_idx),
            None => self.by_action.push((action.clone(), vec![policy_idx])),
        }
    }

    fn collect(&self, actions: &[Probe<'_>], out: &mut Vec<u32>) {
        out.extend_from_slice(&self.any_action);
        for (key, bucket) in &self.by_action {
            if key.is_any_of(actions) {
                out.extend_from_slice(bucket);
            }
        }
    }
}

/// A principal or resource scope, in the form the index checks.
#[derive(Debug)]
enum EntityCheck {
    Any,
    Eq(HashedUid),
    In(HashedUid),
    Is(EntityType),
    IsIn(EntityType, HashedUid),
}

/// An action scope. `Any` also stands for what this build cannot key (always a candidate).
#[derive(Debug)]
enum ActionCheck {
    Any,
    Eq(HashedUid),
    In(Vec<HashedUid>),
}

/// One policy's scope, checked against a request before the policy is evaluated.
#[derive(Debug)]
struct ScopeCheck {
    principal: EntityCheck,
    action: ActionCheck,
    resource: EntityCheck,
}

impl EntityCheck {
    fn new(constraint: &PrincipalOrResourceConstraint, hasher: &impl BuildHasher) -> Self {
        let hashed = |uid: &EntityUID| HashedUid {
            hash: hasher.hash_one(uid),
            uid: uid.clone(),
        };
        match constraint {
            PrincipalOrResourceConstraint::Eq(EntityReference::EUID(uid)) => Self::Eq(hashed(uid)),
            PrincipalOrResourceConstraint::In(EntityReference::EUID(uid)) => Self::In(hashed(uid)),
            PrincipalOrResourceConstraint::Is(entity_type) => {
                Self::Is(entity_type.as_ref().clone())
            }
            PrincipalOrResourceConstraint::IsIn(entity_type, EntityReference::EUID(uid)) => {
                Self::IsIn(entity_type.as_ref().clone(), hashed(uid))
            }
            // `Any`, and slots (templates are rejected at load): nothing to check.
            _ => Self::Any,
        }
    }

    /// Whether the scope can hold for an entity, given as itself followed by its ancestors;
    /// `in` holds for the entity itself and for anything with the group among its ancestors,
    /// as Cedar evaluates it.
    fn may_match(&self, entity: &[Probe<'_>]) -> bool {
        let Some(first) = entity.first() else {
            return true;
        };
        match self {
            Self::Any => true,
            Self::Eq(uid) => uid.is(*first),
            Self::In(group) => group.is_any_of(entity),
            Self::Is(entity_type) => first.uid.entity_type() == entity_type,
            Self::IsIn(entity_type, group) => {
                first.uid.entity_type() == entity_type && group.is_any_of(entity)
            }
        }
    }

    /// 2 for an entity scope, 1 for a type scope, 0 for none.
    fn selectivity(&self) -> u8 {
        match self {
            Self::Eq(_) | Self::In(_) | Self::IsIn(_, _) => 2,
            Self::Is(_) => 1,
            Self::Any => 0,
        }
    }
}

impl ActionCheck {
    fn new(constraint: &ActionConstraint, hasher: &impl BuildHasher) -> Self {
        let hashed = |uid: &EntityUID| HashedUid {
            hash: hasher.hash_one(uid),
            uid: uid.clone(),
        };
        match constraint {
            ActionConstraint::Eq(action) => Self::Eq(hashed(action)),
            ActionConstraint::In(actions) => {
                Self::In(actions.iter().map(|action| hashed(action)).collect())
            }
            // `Any` and anything this build does not know how to key: always a candidate.
            #[allow(
                unreachable_patterns,
                reason = "ErrorConstraint exists only with Cedar's tolerant-ast feature"
            )]
            _ => Self::Any,
        }
    }

    /// `actions` is the request's action followed by its ancestors.
    fn may_match(&self, actions: &[Probe<'_>]) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(action) => actions
                .first()
                .is_none_or(|requested| action.is(*requested)),
            Self::In(groups) => groups.iter().any(|group| group.is_any_of(actions)),
        }
    }
}

/// The index itself: immutable, built once per policy set.
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex {
    hasher: foldhash::fast::RandomState,
    by_principal: ScopedBuckets,
    by_resource: ScopedBuckets,
    unscoped: ActionBuckets,
    /// Every policy's scope, by policy index (overlay policies included, never consulted).
    scopes: Vec<ScopeCheck>,
}

/// Policies keyed by a principal or resource scope.
#[derive(Debug, Default)]
struct ScopedBuckets {
    /// `== E`, `in E`, `is T in E`: reached from the entity itself or any descendant.
    by_entity: UidBuckets,
    /// `is T`: reached from any entity of the type.
    by_type: FastMap<EntityType, ActionBuckets>,
}

impl ScopedBuckets {
    /// Files the policy here if its scope constraint can be keyed; `false` when it is `Any`.
    fn insert(&mut self, constraint: &EntityCheck, action: &ActionCheck, policy_idx: u32) -> bool {
        match constraint {
            EntityCheck::Eq(uid) | EntityCheck::In(uid) | EntityCheck::IsIn(_, uid) => {
                self.by_entity.insert(uid, action, policy_idx)
            }
            EntityCheck::Is(entity_type) => self
                .by_type
                .entry(entity_type.clone())
                .or_default()
                .insert(action, policy_idx),
            EntityCheck::Any => return false,
        }
        true
    }

    /// `entity` is the request's entity followed by its ancestors.
    fn collect(&self, entity: &[Probe<'_>], actions: &[Probe<'_>], out: &mut Vec<u32>) {
        if !self.by_entity.by_hash.is_empty() {
            for probe in entity {
                if let Some(buckets) = self.by_entity.get(*probe) {
                    buckets.collect(actions, out);
                }
            }
        }
        if let Some(first) = entity.first() {
            if let Some(buckets) = self.by_type.get(first.uid.entity_type()) {
                buckets.collect(actions, out);
            }
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
            let template = policy.policy.template();
            let scope = ScopeCheck {
                principal: EntityCheck::new(
                    template.principal_constraint().as_inner(),
                    &index.hasher,
                ),
                action: ActionCheck::new(template.action_constraint(), &index.hasher),
                resource: EntityCheck::new(
                    template.resource_constraint().as_inner(),
                    &index.hasher,
                ),
            };
            let Ok(policy_idx) = u32::try_from(policy_idx) else {
                break;
            };
            // Overlay policies apply only through a downgrade control, never as candidates.
            if policy.overlay.is_none() {
                // File each policy under its most selective scope: an entity beats a type, and a
                // type beats nothing; the principal wins ties.
                let keyed = if scope.resource.selectivity() > scope.principal.selectivity() {
                    index
                        .by_resource
                        .insert(&scope.resource, &scope.action, policy_idx)
                } else {
                    index
                        .by_principal
                        .insert(&scope.principal, &scope.action, policy_idx)
                        || index
                            .by_resource
                            .insert(&scope.resource, &scope.action, policy_idx)
                };
                if !keyed {
                    index.unscoped.insert(&scope.action, policy_idx);
                }
            }
            index.scopes.push(scope);
        }
        index
    }

    fn probe<'a>(&self, uid: &'a EntityUID) -> Probe<'a> {
        Probe {
            hash: self.hasher.hash_one(uid),
            uid,
        }
    }

    /// The entity followed by its ancestors.
    fn probes<'a>(&self, entity: &'a EntityUID, ancestors: &[&'a EntityUID]) -> Vec<Probe<'a>> {
        std::iter::once(entity)
            .chain(ancestors.iter().copied())
            .map(|uid| self.probe(uid))
            .collect()
    }

    /// Indices of the policies whose scope matches the request, sorted and without duplicates.
    ///
    /// A bucket is keyed by one part of a policy's scope; the other parts are checked here, on
    /// the uids and ancestors the request already has, so that a policy whose scope is false
    /// is neither evaluated nor allowed to widen the entity slice (with its entity literals and
    /// how far it reads). Cedar evaluates a false scope to false without reading anything that
    /// could error, so leaving such a policy out changes no outcome, determining policy or
    /// error (see the INVARIANT above).
    pub(crate) fn candidates(&self, query: &IndexQuery<'_>) -> Vec<u32> {
        let principal = self.probes(query.principal, query.principal_ancestors);
        let resource = self.probes(query.resource, query.resource_ancestors);
        let actions: Vec<Probe<'_>> = query
            .actions
            .iter()
            .map(|action| self.probe(action))
            .collect();
        let mut out = Vec::new();
        self.unscoped.collect(&actions, &mut out);
        self.by_principal.collect(&principal, &actions, &mut out);
        self.by_resource.collect(&resource, &actions, &mut out);
        out.sort_unstable();
        out.dedup();
        out.retain(|policy_idx| {
            self.scopes.get(*policy_idx as usize).is_none_or(|scope| {
                scope.principal.may_match(&principal)
                    && scope.action.may_match(&actions)
                    && scope.resource.may_match(&resource)
            })
        });
        out
    }
}
