//! The thresholds every finding is measured against. Each has a default a deployment can
//! override in JSON (`--thresholds file.json`); the report prints the values it used.

use arbiter_core::Sensitivity;
use serde::{Deserialize, Serialize};

/// Thresholds and knobs. Every field has a default; a JSON file may set any subset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Days of recorded decisions over which entitlements must have been used (NHI5) and
    /// suggestions are checked.
    pub usage_window_days: i64,
    /// An active non-human identity with no decision for this many days is dormant (NHI1).
    pub dormant_days: i64,
    /// A credential not rotated (or issued) for this many days is unrotated (NHI7).
    pub rotation_days: i64,
    /// A credential valid for longer than this from issue is long-lived (NHI7).
    pub max_lifetime_days: i64,
    /// An automation path whose identity has no `reviewed_at` within this many days is
    /// unreviewed.
    pub review_days: i64,
    /// Granted permits never used in the window, at least this many, make over-privilege (NHI5).
    pub min_unused_grants: usize,
    /// Distinct delegating workloads at or above which one identity counts as reused (NHI9).
    pub reuse_min_workloads: usize,
    /// Resources at or above this sensitivity are high-risk: standing access to them that no
    /// approval gated is reported.
    pub high_risk_sensitivity: Sensitivity,
    /// `credential_type` attribute values that mean a static secret (NHI4).
    pub static_credential_types: Vec<String>,
    /// Signal names that report a person using a non-human identity (NHI10).
    pub human_use_signals: Vec<String>,
    /// Resource types that are tools: an agent calling them is an automation path.
    pub tool_types: Vec<String>,
    /// The resource attribute naming its environment (NHI8).
    pub environment_attribute: String,
    /// The identity attribute naming its team (owners' attribute when the identity has none).
    pub team_attribute: String,
    /// When set, publishing the report suspends (or, with `downgrade_overlay`, downgrades)
    /// every active non-human identity whose score reaches it, with the findings as the reason.
    pub downgrade_score: Option<u32>,
    /// With `downgrade_score`: instead of suspending, place a `downgrade` control with this
    /// overlay (forbid policies annotated `@overlay("<name>")`); lift the control to undo.
    pub downgrade_overlay: Option<String>,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            usage_window_days: 30,
            dormant_days: 30,
            rotation_days: 90,
            max_lifetime_days: 365,
            review_days: 180,
            min_unused_grants: 1,
            reuse_min_workloads: 2,
            high_risk_sensitivity: Sensitivity::Restricted,
            static_credential_types: vec!["static_key".into(), "api_key".into(), "password".into()],
            human_use_signals: vec!["interactive_login".into(), "human_use".into()],
            tool_types: vec!["Tool".into(), "McpServer".into()],
            environment_attribute: "environment".into(),
            team_attribute: "team".into(),
            downgrade_score: None,
            downgrade_overlay: None,
        }
    }
}
