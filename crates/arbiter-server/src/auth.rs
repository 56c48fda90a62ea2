//! Who may call what. API keys carry a role; every request is decided by Arbiter's own engine
//! against the built-in policy set below (Arbiter governs itself), never by ad-hoc checks.

use crate::problem::ApiError;
use arbiter_core::{ActionRef, DecisionRequest, EntityInput, EntityRef, Outcome};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot, SnapshotCell,
};
use axum::http::HeaderMap;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;

/// The roles an API key can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Everything.
    Admin,
    /// Day-to-day changes: identities, lifecycle, signals, policies.
    Operator,
    /// Reads what approvals need (approvals themselves arrive with a later issue).
    Approver,
    /// Reads everything, changes nothing.
    Auditor,
    /// A policy enforcement point: asks for decisions, nothing else.
    EnforcementPoint,
}

impl Role {
    /// Every role, for listings and tests.
    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::EnforcementPoint,
    ];

    /// The name in JSON and in the built-in policies (`Role::"<name>"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::EnforcementPoint => "enforcement_point",
        }
    }

    /// Parses a role name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Arbiter's own policies for its API. Actions are named `<area>.<verb>`.
pub const BUILT_IN_POLICIES: &str = r#"
@id("anyone-reads-health-and-discovery")
permit(principal, action in [Action::"health.read", Action::"discovery.read"], resource);

@id("admins-do-everything")
permit(principal in Role::"admin", action, resource);

@id("operators-run-the-inventory-and-policies")
permit(principal in Role::"operator", action in [
  Action::"identities.read", Action::"identities.write", Action::"lifecycle.write",
  Action::"inventory.read", Action::"inventory.write", Action::"signals.read", Action::"signals.write",
  Action::"policies.read", Action::"policies.write", Action::"policies.activate",
  Action::"changes.read", Action::"decisions.read", Action::"approvals.read", Action::"metrics.read",
  Action::"debt.read", Action::"debt.write"
], resource);

@id("approvers-read-what-they-approve-and-decide")
permit(principal in Role::"approver", action in [
  Action::"identities.read", Action::"inventory.read", Action::"signals.read", Action::"policies.read",
  Action::"approvals.read", Action::"approvals.decide"
], resource);

@id("auditors-read-everything")
permit(principal in Role::"auditor", action in [
  Action::"identities.read", Action::"inventory.read", Action::"signals.read", Action::"policies.read",
  Action::"changes.read", Action::"decisions.read", Action::"approvals.read", Action::"keys.read",
  Action::"metrics.read", Action::"debt.read"
], resource);

@id("enforcement-points-ask-for-decisions-and-wait-for-approvals")
permit(principal in Role::"enforcement_point", action in [Action::"decide", Action::"approvals.read"], resource);
"#;

/// The caller's id as the built-in policies see it.
pub(crate) const ANONYMOUS: &str = "anonymous";

/// What the server knows about a live key. The key itself is never kept, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyInfo {
    /// Key id (not secret).
    pub id: String,
    /// Role.
    pub role: Role,
    /// A label for people.
    pub name: String,
    /// The person the key approves as, if any.
    pub acts_for: Option<EntityRef>,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: EntityRef,
    pub(crate) role: Option<Role>,
    /// The key's label, for the decision log.
    pub(crate) name: String,
    /// The person the key acts for (approvals are made in that person's name).
    pub(crate) acts_for: Option<EntityRef>,
}

impl Caller {
    pub(crate) fn actor(&self) -> arbiter_store::Actor {
        arbiter_store::Actor {
            id: self.principal.id.clone(),
            role: self.role.map_or("anonymous", Role::as_str).to_owned(),
        }
    }
}

/// SHA-256 of a key, hex. Keys are 256 random bits, so a slow password hash would add nothing.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A new random key, `arb_` and 64 hex digits.
pub(crate) fn generate_key() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!(
        "arb_{}",
        bytes
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>()
    ))
}

/// The governance plane: built-in policies and one entity per live key.
pub(crate) fn governance_snapshot(keys: &HashMap<String, KeyInfo>) -> Result<Snapshot, String> {
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "built-in".to_owned(),
            text: BUILT_IN_POLICIES.to_owned(),
        }],
        None,
        1,
    )
    .map_err(|err| format!("built-in policies: {err}"))?;
    let mut entities =
        vec![json!({"uid": {"type": "ApiKey", "id": ANONYMOUS}, "attrs": {}, "parents": []})];
    for key in keys.values() {
        entities.push(key_entity(key));
    }
    let mut builder = InventoryBuilder::new();
    builder
        .add_cedar_entities(serde_json::Value::Array(entities))
        .map_err(|err| err.to_string())?;
    let inventory = builder.build(None).map_err(|err| err.to_string())?;
    Ok(Snapshot::new(
        policies,
        inventory,
        None,
        EngineConfig::default(),
    ))
}

pub(crate) fn key_entity(key: &KeyInfo) -> serde_json::Value {
    json!({
        "uid": {"type": "ApiKey", "id": key.id},
        "attrs": {"name": key.name},
        "parents": [{"type": "Role", "id": key.role.as_str()}],
    })
}

/// Authenticates the request (a missing key is the anonymous caller) and asks the governance
/// engine whether it may perform `action`. Returns the caller, or 401/403.
pub(crate) fn authorize(
    governance: &SnapshotCell,
    keys: &HashMap<String, KeyInfo>,
    headers: &HeaderMap,
    action: &str,
    now: i64,
) -> Result<Caller, ApiError> {
    let caller = match bearer(headers)? {
        None => Caller {
            principal: EntityRef::new("ApiKey", ANONYMOUS),
            role: None,
            name: ANONYMOUS.to_owned(),
            acts_for: None,
        },
        Some(key) => match keys.get(&hash_key(key)) {
            Some(info) => Caller {
                principal: EntityRef::new("ApiKey", &info.id),
                role: Some(info.role),
                name: info.name.clone(),
                acts_for: info.acts_for.clone(),
            },
            None => return Err(ApiError::unauthorized()),
        },
    };
    let request = DecisionRequest {
        subject: EntityInput {
            entity: caller.principal.clone(),
            properties: Default::default(),
        },
        action: ActionRef {
            name: action.to_owned(),
            properties: Default::default(),
        },
        resource: EntityInput {
            entity: EntityRef::new("Api", "arbiter"),
            properties: Default::default(),
        },
        context: Default::default(),
        delegation: Vec::new(),
    };
    let decision = governance.load().decide(
        &request,
        &DecideOptions {
            now,
            decision_id: uuid::Uuid::now_v7().to_string(),
            explain: false,
        },
    );
    if decision.outcome == Outcome::Allow {
        return Ok(caller);
    }
    tracing::info!(
        caller = %caller.principal.id,
        action,
        decision_id = %decision.id,
        reason = %decision.reason_admin,
        "administration request denied"
    );
    if caller.role.is_none() {
        return Err(ApiError::unauthorized());
    }
    Err(ApiError::forbidden(format!(
        "role `{}` may not `{action}` (decision {})",
        caller.role.map_or("anonymous", Role::as_str),
        decision.id
    )))
}

fn bearer(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::unauthorized())?;
    match value.strip_prefix("Bearer ") {
        Some(key) if !key.trim().is_empty() => Ok(Some(key.trim())),
        _ => Err(ApiError::unauthorized()),
    }
}
