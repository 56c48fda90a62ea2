//! What a decision says: the outcome, why, and the evidence, in a form fit for the log.

use crate::{EntityRef, Lifecycle, Timestamp};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The three answers Arbiter gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Go ahead.
    Allow,
    /// No.
    Deny,
    /// Allowed by policy except for forbids that ask for a human's approval.
    ApprovalRequired,
}

impl Outcome {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::ApprovalRequired => "approval_required",
        }
    }
}

/// A policy's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Grants access when satisfied.
    Permit,
    /// Denies access when satisfied, whatever else grants it.
    Forbid,
}

/// A policy that decided the outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeterminingPolicy {
    /// Policy id.
    pub id: String,
    /// Permit or forbid.
    pub effect: Effect,
    /// Its annotations (`@approval`, `@reason`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An error met while deciding. Errors never allow: an erroring forbid denies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionError {
    /// The policy that failed to evaluate, if the error belongs to one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// A built-in rule no policy can override, and how this request broke it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "guard", rename_all = "snake_case")]
pub enum GuardViolation {
    /// The principal is not in the inventory.
    UnknownPrincipal {
        /// Who.
        entity: EntityRef,
    },
    /// The principal is suspended, quarantined, revoked or expired.
    NotActive {
        /// Who.
        entity: EntityRef,
        /// Its state.
        lifecycle: Lifecycle,
    },
    /// The principal is a credential past its expiry.
    CredentialExpired {
        /// Which credential.
        entity: EntityRef,
        /// When it expired.
        expires_at: Timestamp,
    },
    /// The principal is a credential whose holder cannot act.
    HolderNotActive {
        /// Which credential.
        entity: EntityRef,
        /// Its holder.
        holder: EntityRef,
        /// The holder's state, or `None` when the holder is not in the inventory.
        lifecycle: Option<Lifecycle>,
    },
    /// The principal's sponsor is contained (suspended, quarantined, revoked, expired) or gone,
    /// and containment cascades to what it sponsors.
    SponsorNotActive {
        /// Who.
        entity: EntityRef,
        /// Its sponsor.
        sponsor: EntityRef,
        /// The sponsor's state, or `None` when the sponsor is not in the inventory.
        lifecycle: Option<Lifecycle>,
    },
    /// The principal is a non-human identity without an accountable owner who is an active
    /// human (none named, offboarded, contained or gone), and orphans are denied.
    Orphaned {
        /// Who.
        entity: EntityRef,
        /// Its owner, if one is named.
        owner: Option<EntityRef>,
        /// Why the owner does not count: `none`, `not in the inventory`, `not a human`, or the
        /// owner's lifecycle.
        state: String,
    },
    /// A runtime control contains the principal (or its owner, sponsor or holder) or the
    /// resource: quarantined outside its safe actions, or its overlay is not in the policy set.
    Contained {
        /// The control.
        control: String,
        /// What it was placed on.
        target: EntityRef,
        /// How hard.
        level: crate::ControlLevel,
        /// Why it was placed.
        reason: String,
    },
    /// A downgrade control's overlay forbids the request.
    Downgraded {
        /// The control.
        control: String,
        /// What it was placed on.
        target: EntityRef,
        /// The overlay.
        overlay: String,
        /// The overlay policy that forbids it (or failed to evaluate, which also denies).
        policy: String,
    },
    /// The delegation chain is longer than allowed.
    DelegationTooLong {
        /// Hops in the request, counting the subject.
        hops: usize,
        /// The configured maximum.
        max_hops: usize,
    },
    /// A policy that applies needs a signal that is missing or stale.
    SignalUnavailable {
        /// The policy that needs it.
        policy: String,
        /// The signal.
        signal: String,
        /// `missing` or `stale`.
        state: String,
    },
    /// A forbid policy failed to evaluate; Cedar would skip it, Arbiter fails closed.
    ForbidErrored {
        /// The policy.
        policy: String,
        /// Its error.
        message: String,
    },
    /// The request reaches more entities than a decision may load.
    EntitySliceTooLarge {
        /// The configured maximum.
        max_entities: usize,
    },
    /// The request could not be turned into a Cedar request.
    InvalidRequest {
        /// The request field at fault, e.g. `subject.type`.
        field: String,
        /// Why.
        message: String,
    },
}

/// The result of one condition (a `when`/`unless` conjunct, or a part of an `||`/`&&`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConditionOutcome {
    /// It was true.
    Held,
    /// It was false.
    Failed,
    /// Evaluating it raised an error.
    Errored,
    /// Short-circuiting meant it was never evaluated.
    NotEvaluated,
}

/// A value a condition saw, e.g. `context.risk_score` = `72`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenValue {
    /// The sub-expression, in Cedar syntax.
    pub expr: String,
    /// Its value, in Cedar syntax, or the error evaluating it.
    pub value: String,
}

/// One condition of a policy and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConditionTrace {
    /// The condition, as written in the policy.
    pub source: String,
    /// Whether it held.
    pub outcome: ConditionOutcome,
    /// The values it compared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<SeenValue>,
    /// The error, when it errored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For `a || b` and nested `&&`: the parts, in evaluation order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<ConditionTrace>,
}

/// Why a policy appears in an explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTraceRole {
    /// It decided the outcome.
    Determining,
    /// A permit whose scope matched but whose conditions failed: what would have to change.
    NearestMiss,
    /// It raised an error.
    Errored,
}

/// A policy's conditions, evaluated against this request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyTrace {
    /// Policy id.
    pub id: String,
    /// Permit or forbid.
    pub effect: Effect,
    /// Why it is here.
    pub role: PolicyTraceRole,
    /// Its conditions in evaluation order; the scope (principal, action, resource) comes first.
    pub conditions: Vec<ConditionTrace>,
}

/// The condition-level explanation of one hop's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// Determining, errored and nearest-miss policies.
    pub policies: Vec<PolicyTrace>,
}

/// One principal's part in a decision: the subject, or one hop of a delegation chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopTrace {
    /// The principal evaluated at this hop.
    pub principal: EntityRef,
    /// This hop's outcome.
    pub outcome: Outcome,
    /// The guard that denied it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardViolation>,
    /// Policies that decided this hop.
    pub determining: Vec<DeterminingPolicy>,
    /// Evaluation errors at this hop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<DecisionError>,
    /// How many policies the index selected for evaluation (out of all loaded).
    pub candidates: usize,
    /// Runtime controls that took part (observed, required approval, downgraded, contained).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<crate::AppliedControl>,
    /// The condition-level explanation.
    pub explanation: Explanation,
}

/// Which state of the world a decision was made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    /// Version of the active policy set.
    pub policy_version: u64,
    /// SHA-256 of the policy set's sources, hex.
    pub policy_digest: String,
    /// Version of the inventory (bumped by every change).
    pub inventory_version: u64,
    /// The store's change-feed position the inventory reflects (0 when it was not loaded from a
    /// store): replay rebuilds the inventory as of this change to decide again.
    #[serde(default)]
    pub change_seq: u64,
}

/// A decision, with everything needed to explain, log and replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Unique id, supplied by the layer that asked.
    pub id: String,
    /// Allow, deny or approval required.
    pub outcome: Outcome,
    /// Policies that decided it (of the hop that decided it).
    pub determining: Vec<DeterminingPolicy>,
    /// For an administrator: what decided it and, for a deny, what would have to change.
    pub reason_admin: String,
    /// For the end user: short, and revealing no policy internals.
    pub reason_user: String,
    /// Errors met on the way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<DecisionError>,
    /// Caller-supplied properties ignored because the inventory holds the entity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_properties: Vec<String>,
    /// Every hop, origin first, subject last.
    pub hops: Vec<HopTrace>,
    /// The context as the policies saw it, after enrichment (for the subject's hop).
    pub context: serde_json::Value,
    /// The state it was decided against.
    pub snapshot: SnapshotInfo,
    /// The time the decision was made at (seconds since the Unix epoch).
    pub decided_at: Timestamp,
}

impl Decision {
    /// AuthZEN's boolean: only `allow` is true.
    pub fn is_allowed(&self) -> bool {
        self.outcome == Outcome::Allow
    }
}
