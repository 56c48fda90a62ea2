//! Runtime controls: graduated containment placed on an identity, an owner, a credential, a
//! tool or an MCP server, short of (and reversible unlike) revocation.

use crate::{EntityRef, Timestamp};
use serde::{Deserialize, Serialize};

/// How hard a control contains its target, weakest first. When several apply to one decision,
/// each takes effect; the strongest decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlLevel {
    /// Flag only: decisions are made as usual and name the control.
    Observe,
    /// What policy allows needs a person's approval first.
    RequireApproval,
    /// A restricted overlay (forbid policies annotated `@overlay("name")`) applies on top of
    /// the policies; entitlements are kept.
    Downgrade,
    /// Deny everything except the named safe actions.
    Quarantine,
}

impl ControlLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observe => "observe",
            Self::RequireApproval => "require_approval",
            Self::Downgrade => "downgrade",
            Self::Quarantine => "quarantine",
        }
    }
}

/// One control as placed: on what, how hard, by whom, why and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// Assigned when the control is placed (`ctl_…`).
    #[serde(default)]
    pub id: String,
    /// What it contains. An owner's controls reach every identity it owns; an MCP server's
    /// reach its tools (its descendants).
    pub target: EntityRef,
    /// How hard.
    pub level: ControlLevel,
    /// For `downgrade`: the overlay's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<String>,
    /// For `quarantine`: actions that stay open (policies must still allow them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safe_actions: Vec<String>,
    /// Why, for the people who read the decision.
    #[serde(default)]
    pub reason: String,
    /// Who placed it (set by the server from the caller).
    #[serde(default)]
    pub placed_by: String,
    /// When it was placed (set by the server).
    #[serde(default)]
    pub placed_at: Timestamp,
    /// When it stops applying by itself; `None` until lifted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
}

impl Control {
    /// Whether it applies at `now`.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

/// A control that took part in a decision, as the trace records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedControl {
    /// The control's id.
    pub id: String,
    /// What it was placed on (the principal, its owner, sponsor or holder, the resource or an
    /// ancestor of it).
    pub target: EntityRef,
    /// How hard.
    pub level: ControlLevel,
    /// Why it was placed.
    pub reason: String,
}
