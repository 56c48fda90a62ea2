//! The policy index: for a request, which policies could possibly apply.
//!
//! Cedar evaluates every policy on every request. Most policies in a large NHI deployment name a
//! principal (or one of its groups) and an action in their scope, so the index keys each policy
//! by the most selective part of its scope and a request collects only the buckets its
//! principal, the principal's ancestors, its action and the action's groups can reach.
//!
//! INVARIANT: the candidates are exactly the policies whose scope holds for the request, except
//! those whose scope the index cannot check (none today: templates are refused at load), which
//! are candidates whenever their scope may hold and are evaluated with their scope.
//! - A policy left out has a scope that is false for the request, and a false scope makes
//!   Cedar's condition false without evaluating anything that could error, so leaving it out
//!   changes neither the outcome, nor the determining policies, nor the errors.
//! - For a candidate whose scope the index checked, Cedar's condition (`scope && body`) has the
//!   value, or the error, of its body alone: a scope (`==`, `in`, `is` on entity literals) never
//!   errors. So the decision evaluates only the body; the scope was most of the work Cedar did
//!   per policy (building the action list, looking entities up to walk their ancestors).

use crate::policies::CompiledPolicy;
use cedar_policy_core::ast::{
    ActionConstraint, EntityReference, EntityType, EntityUID, PrincipalOrResourceConstraint,
    Template,
};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Index maps hash entity uids on every decision; foldhash (randomly seeded) is several times
/// cheaper than the default SipHash, and the keys come from policies, not from callers.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A uid (or an entity type) as the index knows it: its hash under the index's hasher, and
/// nothing else. A request's uids (principal, resource, action and their ancestors) and types
/// are hashed once per decision, and every comparison with a policy's scope compares 64-bit
/// hashes. Comparing uids themselves (an id, a type name and a pointer to its namespace path,
/// scattered over the heap) was most of the index's cost at 10,000 policies.
///
/// INVARIANT: equal uids have equal hashes, so the index never leaves out a policy whose scope
/// matches. Two different uids with the same hash (about one chance in 2^64 per comparison,
/// with a per-process random seed) would match wrongly, so every match of hashes is confirmed
/// on Cedar's uids and types (`ExactScope`) before the policy becomes a candidate.
type Key = u64;

/// Policies keyed by entity uid hash.
#[derive(Debug, Default)]
struct UidBuckets {
    by_hash: FastMap<Key, ActionBuckets>,
}

impl UidBuckets {
    fn insert(&mut self, key: Key, action: &ActionCheck, policy_idx: u32) {
        self.by_hash
            .entry(key)
            .or_default()
            .insert(action, policy_idx);
    }

    fn get(&self, probe: Key) -> Option<&ActionBuckets> {
        self.by_hash.get(&probe)
    }
}

/// The policies filed under one key, each with the action it was filed under (a policy listing
/// several actions is filed once per action) or none for a policy that admits any action.
///
/// Why inline: at 10,000 policies a request probes a handful of keys (its principal, the
/// principal's groups, its resource, the resource's server), each cold in the cache. A bucket
/// holds a few policies, so they are kept in the table's own slot rather than behind two
/// vectors (a small gain: about 0.4 µs a decision at 10,000 policies, within the noise).
#[derive(Debug, Default)]
struct ActionBuckets {
    filed: SmallVec<[Filed; 3]>,
}

#[derive(Debug, Clone, Copy)]
struct Filed {
    /// The hash of the action; `None`: any action.
    action: Option<Key>,
    policy: u32,
}

impl ActionBuckets {
    fn insert(&mut self, constraint: &ActionCheck, policy_idx: u32) {
        let mut file = |action| {
            self.filed.push(Filed {
                action,
                policy: policy_idx,
            });
        };
        match constraint {
            ActionCheck::Eq(action) => file(Some(*action)),
            ActionCheck::In(actions) => {
                for action in actions.iter() {
                    file(Some(*action));
                }
            }
            ActionCheck::Any => file(None),
        }
    }

    fn collect(&self, actions: &[Key], out: &mut Vec<u32>) {
        out.extend(
            self.filed
                .iter()
                .filter(|filed| filed.action.is_none_or(|action| actions.contains(&action)))
                .map(|filed| filed.policy),
        );
    }
}

/// A principal or resource scope, in the form the index checks (uids and types as hashes).
#[derive(Debug)]
enum EntityCheck {
    Any,
    Eq(Key),
    In(Key),
    Is(Key),
    IsIn(Key, Key),
}

/// An action scope. `Any` also stands for what this build cannot key (always a candidate).
#[derive(Debug)]
enum ActionCheck {
    Any,
    Eq(Key),
    In(Box<[Key]>),
}

/// One policy's scope, checked against a request before the policy is evaluated.
#[derive(Debug)]
struct ScopeCheck {
    principal: EntityCheck,
    action: ActionCheck,
    resource: EntityCheck,
}

/// A principal or resource scope with Cedar's own uids and types, to confirm a match of
/// hashes exactly: a hash collision must never make a policy's scope hold.
#[derive(Debug)]
enum ExactEntity {
    Any,
    Eq(EntityUID),
    In(EntityUID),
    Is(EntityType),
    IsIn(EntityType, EntityUID),
}

#[derive(Debug)]
enum ExactAction {
    Any,
    Eq(EntityUID),
    In(Box<[EntityUID]>),
}

/// One policy's scope in Cedar's terms; `None` where the index cannot check it (slots).
#[derive(Debug)]
struct ExactScope {
    principal: ExactEntity,
    action: ExactAction,
    resource: ExactEntity,
}

/// Types shared by the exact scopes, so that comparing a type reads one copy of its name.
type TypeTable = FastMap<EntityType, EntityType>;

impl ExactEntity {
    fn new(constraint: &PrincipalOrResourceConstraint, types: &mut TypeTable) -> Option<Self> {
        Some(match constraint {
            PrincipalOrResourceConstraint::Any => Self::Any,
            PrincipalOrResourceConstraint::Eq(EntityReference::EUID(uid)) => {
                Self::Eq(shared_uid(uid, types))
            }
            PrincipalOrResourceConstraint::In(EntityReference::EUID(uid)) => {
                Self::In(shared_uid(uid, types))
            }
            PrincipalOrResourceConstraint::Is(entity_type) => {
                Self::Is(shared_type(entity_type, types))
            }
            PrincipalOrResourceConstraint::IsIn(entity_type, EntityReference::EUID(uid)) => {
                Self::IsIn(shared_type(entity_type, types), shared_uid(uid, types))
            }
            // Slots: not checked here.
            _ => return None,
        })
    }

    /// Whether the scope holds for `entity`, whose ancestors are `ancestors` (as Cedar
    /// evaluates `==`, `in` and `is`: `in` holds for the entity itself too).
    fn holds(&self, entity: &EntityUID, ancestors: &[&EntityUID]) -> bool {
        let is_in = |group: &EntityUID| entity == group || ancestors.contains(&group);
        match self {
            Self::Any => true,
            Self::Eq(uid) => entity == uid,
            Self::In(group) => is_in(group),
            Self::Is(entity_type) => entity.entity_type() == entity_type,
            Self::IsIn(entity_type, group) => entity.entity_type() == entity_type && is_in(group),
        }
    }
}

impl ExactAction {
    fn new(constraint: &ActionConstraint, types: &mut TypeTable) -> Option<Self> {
        Some(match constraint {
            ActionConstraint::Any => Self::Any,
            ActionConstraint::Eq(action) => Self::Eq(shared_uid(action, types)),
            ActionConstraint::In(actions) => Self::In(
                actions
                    .iter()
                    .map(|action| shared_uid(action, types))
                    .collect(),
            ),
            #[allow(
                unreachable_patterns,
                reason = "ErrorConstraint exists only with Cedar's tolerant-ast feature"
            )]
            _ => return None,
        })
    }

    /// `actions` is the request's action followed by its ancestors.
    fn holds(&self, actions: &[&EntityUID]) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(action) => actions
                .first()
                .is_some_and(|requested| *requested == action),
            Self::In(groups) => groups.iter().any(|group| actions.contains(&group)),
        }
    }
}

impl ExactScope {
    fn new(template: &Template, types: &mut TypeTable) -> Option<Self> {
        Some(Self {
            principal: ExactEntity::new(template.principal_constraint().as_inner(), types)?,
            action: ExactAction::new(template.action_constraint(), types)?,
            resource: ExactEntity::new(template.resource_constraint().as_inner(), types)?,
        })
    }

    fn holds(&self, query: &IndexQuery<'_>) -> bool {
        self.principal
            .holds(query.principal, query.principal_ancestors)
            && self.action.holds(query.actions)
            && self
                .resource
                .holds(query.resource, query.resource_ancestors)
    }
}

fn shared_type(entity_type: &EntityType, types: &mut TypeTable) -> EntityType {
    types
        .entry(entity_type.clone())
        .or_insert_with(|| entity_type.clone())
        .clone()
}

fn shared_uid(uid: &EntityUID, types: &mut TypeTable) -> EntityUID {
    EntityUID::from_components(
        shared_type(uid.entity_type(), types),
        uid.eid().clone(),
        None,
    )
}

/// Whether the index checks this policy's scope exactly, so that a decision may evaluate only
/// its body (see the INVARIANT above).
pub(crate) fn checks_scope_of(template: &Template) -> bool {
    ExactScope::new(template, &mut TypeTable::default()).is_some()
}

/// A request's principal or resource as the index sees it.
struct EntityProbe {
    /// The entity's type, hashed.
    entity_type: Key,
    /// The entity itself, then its ancestors, hashed.
    lineage: Vec<Key>,
}

impl EntityCheck {
    fn new(constraint: &PrincipalOrResourceConstraint, hasher: &impl BuildHasher) -> Self {
        match constraint {
            PrincipalOrResourceConstraint::Eq(EntityReference::EUID(uid)) => {
                Self::Eq(hasher.hash_one(uid.as_ref()))
            }
            PrincipalOrResourceConstraint::In(EntityReference::EUID(uid)) => {
                Self::In(hasher.hash_one(uid.as_ref()))
            }
            PrincipalOrResourceConstraint::Is(entity_type) => {
                Self::Is(hasher.hash_one(entity_type.as_ref()))
            }
            PrincipalOrResourceConstraint::IsIn(entity_type, EntityReference::EUID(uid)) => {
                Self::IsIn(
                    hasher.hash_one(entity_type.as_ref()),
                    hasher.hash_one(uid.as_ref()),
                )
            }
            // `Any`, and slots (templates are rejected at load): nothing to check.
            _ => Self::Any,
        }
    }

    /// Whether the scope can hold for the entity; `in` holds for the entity itself and for
    /// anything with the group among its ancestors, as Cedar evaluates it.
    fn may_match(&self, entity: &EntityProbe) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(uid) => entity.lineage.first() == Some(uid),
            Self::In(group) => entity.lineage.contains(group),
            Self::Is(entity_type) => entity.entity_type == *entity_type,
            Self::IsIn(entity_type, group) => {
                entity.entity_type == *entity_type && entity.lineage.contains(group)
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
        match constraint {
            ActionConstraint::Eq(action) => Self::Eq(hasher.hash_one(action.as_ref())),
            ActionConstraint::In(actions) => Self::In(
                actions
                    .iter()
                    .map(|action| hasher.hash_one(action.as_ref()))
                    .collect(),
            ),
            // `Any` and anything this build does not know how to key: always a candidate.
            #[allow(
                unreachable_patterns,
                reason = "ErrorConstraint exists only with Cedar's tolerant-ast feature"
            )]
            _ => Self::Any,
        }
    }

    /// `actions` is the request's action followed by its ancestors.
    fn may_match(&self, actions: &[Key]) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(action) => actions.first().is_none_or(|requested| requested == action),
            Self::In(groups) => groups.iter().any(|group| actions.contains(group)),
        }
    }
}

/// The index itself: immutable, built once per policy set. `S` hashes uids and types (a test
/// swaps in one where everything collides).
#[derive(Debug, Default)]
pub(crate) struct PolicyIndex<S = foldhash::fast::RandomState> {
    hasher: S,
    by_principal: ScopedBuckets,
    by_resource: ScopedBuckets,
    unscoped: ActionBuckets,
    /// Every policy's scope, hashed, by policy index (overlay policies included, never
    /// consulted). Dense (72 bytes a policy), so that the checks of a request's bucket
    /// policies mostly hit the cache.
    scopes: Vec<ScopeCheck>,
    /// The same scopes in Cedar's terms, read only to confirm a policy whose hashes matched.
    /// Apart from `scopes` (side by side they measured about 0.7 µs a decision slower at
    /// 10,000 policies: each is several hundred bytes).
    exact: Vec<Option<ExactScope>>,
}

/// Policies keyed by a principal or resource scope.
#[derive(Debug, Default)]
struct ScopedBuckets {
    /// `== E`, `in E`, `is T in E`: reached from the entity itself or any descendant.
    by_entity: UidBuckets,
    /// `is T`: reached from any entity of the type (keyed by the type's hash).
    by_type: FastMap<Key, ActionBuckets>,
}

impl ScopedBuckets {
    /// Files the policy here if its scope constraint can be keyed; `false` when it is `Any`.
    fn insert(&mut self, constraint: &EntityCheck, action: &ActionCheck, policy_idx: u32) -> bool {
        match constraint {
            EntityCheck::Eq(uid) | EntityCheck::In(uid) | EntityCheck::IsIn(_, uid) => {
                self.by_entity.insert(*uid, action, policy_idx)
            }
            EntityCheck::Is(entity_type) => self
                .by_type
                .entry(*entity_type)
                .or_default()
                .insert(action, policy_idx),
            EntityCheck::Any => return false,
        }
        true
    }

    fn collect(&self, entity: &EntityProbe, actions: &[Key], out: &mut Vec<u32>) {
        if !self.by_entity.by_hash.is_empty() {
            for probe in &entity.lineage {
                if let Some(buckets) = self.by_entity.get(*probe) {
                    buckets.collect(actions, out);
                }
            }
        }
        if !self.by_type.is_empty() {
            if let Some(buckets) = self.by_type.get(&entity.entity_type) {
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

impl<S: BuildHasher + Default> PolicyIndex<S> {
    pub(crate) fn build(policies: &[CompiledPolicy]) -> Self {
        let mut index = Self::default();
        let mut types = TypeTable::default();
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
            index.exact.push(ExactScope::new(template, &mut types));
        }
        index
    }

    /// The entity's type, and the entity followed by its ancestors, hashed.
    fn probe(&self, entity: &EntityUID, ancestors: &[&EntityUID]) -> EntityProbe {
        let mut lineage = Vec::with_capacity(ancestors.len() + 1);
        lineage.push(self.hasher.hash_one(entity));
        lineage.extend(ancestors.iter().map(|uid| self.hasher.hash_one(*uid)));
        EntityProbe {
            entity_type: self.hasher.hash_one(entity.entity_type()),
            lineage,
        }
    }

    /// Indices of the policies whose scope holds for the request, sorted and without
    /// duplicates.
    ///
    /// A bucket is keyed by one part of a policy's scope; the other parts are checked here, on
    /// the uids and ancestors the request already has, so that a policy whose scope is false
    /// is neither evaluated nor allowed to widen the entity slice (with its entity literals and
    /// how far it reads). Hashes are compared first; a policy whose hashes match is confirmed on
    /// Cedar's uids and types (see the INVARIANT above).
    pub(crate) fn candidates(&self, query: &IndexQuery<'_>) -> Vec<u32> {
        let principal = self.probe(query.principal, query.principal_ancestors);
        let resource = self.probe(query.resource, query.resource_ancestors);
        let actions: Vec<Key> = query
            .actions
            .iter()
            .map(|action| self.hasher.hash_one(*action))
            .collect();
        let mut out = Vec::new();
        self.unscoped.collect(&actions, &mut out);
        self.by_principal.collect(&principal, &actions, &mut out);
        self.by_resource.collect(&resource, &actions, &mut out);
        out.sort_unstable();
        out.dedup();
        out.retain(|policy_idx| {
            let idx = *policy_idx as usize;
            self.scopes.get(idx).is_none_or(|scope| {
                scope.principal.may_match(&principal)
                    && scope.action.may_match(&actions)
                    && scope.resource.may_match(&resource)
            }) && self
                .exact
                .get(idx)
                .and_then(Option::as_ref)
                .is_none_or(|exact| exact.holds(query))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PolicySet, PolicySource};
    use std::hash::{BuildHasherDefault, Hasher};
    use std::str::FromStr;

    /// Every uid and type hashes to the same value: every hash comparison matches.
    #[derive(Default)]
    struct Colliding;

    impl Hasher for Colliding {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _bytes: &[u8]) {}
    }

    fn uid(text: &str) -> EntityUID {
        EntityUID::from_str(text).expect("a valid uid")
    }

    #[test]
    fn a_collision_of_hashes_never_makes_a_scope_hold() {
        let text = r#"
            permit(principal == Agent::"a", action == Action::"read", resource);
            permit(principal == Agent::"b", action == Action::"read", resource);
            permit(principal in Group::"g1", action in [Action::"write", Action::"readonly"], resource);
            permit(principal in Group::"g2", action, resource);
            permit(principal is Agent, action, resource is Tool);
            permit(principal is Service, action, resource);
            permit(principal is Agent in Group::"g1", action == Action::"read", resource in Server::"s");
            permit(principal, action == Action::"delete", resource == Tool::"t");
            permit(principal, action, resource == Tool::"other");
            permit(principal, action, resource is Tool in Server::"elsewhere");
            forbid(principal, action, resource);
        "#;
        let set = PolicySet::compile(
            vec![PolicySource {
                name: "scopes.cedar".to_owned(),
                text: text.to_owned(),
            }],
            None,
            1,
        )
        .expect("the policies compile");
        let (agent, group, read, readonly, tool, server) = (
            uid(r#"Agent::"a""#),
            uid(r#"Group::"g1""#),
            uid(r#"Action::"read""#),
            uid(r#"Action::"readonly""#),
            uid(r#"Tool::"t""#),
            uid(r#"Server::"s""#),
        );
        let query = IndexQuery {
            principal: &agent,
            principal_ancestors: &[&group],
            actions: &[&read, &readonly],
            resource: &tool,
            resource_ancestors: &[&server],
        };
        // Policies 0 (the agent), 2 (its group, and `read` is in `readonly`), 4 (types),
        // 6 (type, group, action and server) and 10 (everything).
        let holding = vec![0, 2, 4, 6, 10];
        let colliding = PolicyIndex::<BuildHasherDefault<Colliding>>::build(&set.policies);
        assert_eq!(colliding.candidates(&query), holding);
        assert_eq!(set.index.candidates(&query), holding);
    }
}
