//! Who the active policies grant what: every permit whose principal scope names an entity
//! (`principal == X`, `principal in G`), with its actions. Permits scoped to any principal or
//! to a type are rules for everyone, not grants to someone, and are left out.

use crate::DebtError;
use arbiter_core::EntityRef;
use arbiter_engine::PolicySource;
use cedar_policy::{ActionConstraint, Effect, EntityUid, PrincipalConstraint};
use std::collections::HashMap;
use std::str::FromStr;

/// One permit that grants something to a named principal or group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The policy id, as Arbiter names it (`@id`, `policyN` or `<source>#policyN`).
    pub id: String,
    /// The source it is in.
    pub source: String,
    /// The principal or group in its scope, `Type::"id"`.
    pub scope: String,
    /// Whether the scope is `principal == scope` (a grant to one identity).
    pub direct: bool,
    /// The actions in its scope (`None`: any action).
    pub actions: Option<Vec<String>>,
}

/// The grants of a policy set, indexed by the entity in their scope.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// Every grant, in source order.
    pub grants: Vec<Grant>,
    /// Policies annotated `@approval`: a decision they determined went through an approval.
    pub approval_policies: Vec<String>,
    /// Every policy id, in source order, with its source and position there.
    pub(crate) positions: Vec<(String, String, usize)>,
    by_scope: HashMap<String, Vec<usize>>,
}

impl Grants {
    /// Reads the grants of `sources` (the active policy version).
    pub fn parse(sources: &[PolicySource]) -> Result<Self, DebtError> {
        let mut grants = Self::default();
        let prefix = sources.len() > 1;
        for source in sources {
            let set = cedar_policy::PolicySet::from_str(&source.text).map_err(|err| {
                DebtError::Policy {
                    source_name: source.name.clone(),
                    message: err.to_string(),
                }
            })?;
            for (position, policy) in set.policies().enumerate() {
                let id = policy_id(policy, &source.name, prefix);
                grants
                    .positions
                    .push((id.clone(), source.name.clone(), position));
                if policy.annotation("approval").is_some() {
                    grants.approval_policies.push(id.clone());
                }
                if policy.effect() != Effect::Permit {
                    continue;
                }
                let (scope, direct) = match policy.principal_constraint() {
                    PrincipalConstraint::Eq(uid) => (uid, true),
                    PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => {
                        (uid, false)
                    }
                    PrincipalConstraint::Any | PrincipalConstraint::Is(_) => continue,
                };
                let actions = match policy.action_constraint() {
                    ActionConstraint::Any => None,
                    ActionConstraint::Eq(action) => Some(vec![action_name(&action)]),
                    ActionConstraint::In(actions) => {
                        Some(actions.iter().map(action_name).collect())
                    }
                };
                let scope = entity(&scope).to_string();
                grants
                    .by_scope
                    .entry(scope.clone())
                    .or_default()
                    .push(grants.grants.len());
                grants.grants.push(Grant {
                    id,
                    source: source.name.clone(),
                    scope,
                    direct,
                    actions,
                });
            }
        }
        Ok(grants)
    }

    /// The grants whose scope is `entity` itself (`==` or `in`) or one of its `ancestors`.
    pub fn of<'a>(&'a self, entity: &str, ancestors: &[String]) -> Vec<&'a Grant> {
        let mut found: Vec<&Grant> = Vec::new();
        let own = self.by_scope.get(entity).into_iter().flatten();
        for &idx in own {
            if let Some(grant) = self.grants.get(idx) {
                found.push(grant);
            }
        }
        for ancestor in ancestors {
            for &idx in self.by_scope.get(ancestor).into_iter().flatten() {
                if let Some(grant) = self.grants.get(idx).filter(|grant| !grant.direct) {
                    found.push(grant);
                }
            }
        }
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found.dedup_by(|a, b| a.id == b.id);
        found
    }

    /// The grant with this policy id.
    pub fn get(&self, id: &str) -> Option<&Grant> {
        self.grants.iter().find(|grant| grant.id == id)
    }

    /// Every identity or group the grant reaches directly: its scope.
    pub fn grantees<'a>(&'a self, id: &str) -> Option<&'a str> {
        self.get(id).map(|grant| grant.scope.as_str())
    }
}

/// Arbiter's id for a policy: its `@id`, else Cedar's position-based id, prefixed with the
/// source name when several sources are loaded together (as `arbiter_engine::PolicySet` does).
pub(crate) fn policy_id(policy: &cedar_policy::Policy, source: &str, prefix: bool) -> String {
    if let Some(id) = policy.annotation("id") {
        return id.to_owned();
    }
    if prefix {
        format!("{source}#{}", policy.id())
    } else {
        policy.id().to_string()
    }
}

fn entity(uid: &EntityUid) -> EntityRef {
    EntityRef::new(uid.type_name().to_string(), uid.id().unescaped())
}

fn action_name(uid: &EntityUid) -> String {
    uid.id().unescaped().to_owned()
}
