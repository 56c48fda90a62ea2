//! What a finding is: the identity, what is wrong, how bad, the evidence, the OWASP Non-Human
//! Identity Top 10 (2025) item, and the fix.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An item of the OWASP Non-Human Identities Top 10 (2025).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Owasp {
    /// Improper Offboarding.
    #[serde(rename = "NHI1")]
    Nhi1,
    /// Secret Leakage.
    #[serde(rename = "NHI2")]
    Nhi2,
    /// Vulnerable Third-Party NHI.
    #[serde(rename = "NHI3")]
    Nhi3,
    /// Insecure Authentication.
    #[serde(rename = "NHI4")]
    Nhi4,
    /// Overprivileged NHI.
    #[serde(rename = "NHI5")]
    Nhi5,
    /// Insecure Cloud Deployment Configurations.
    #[serde(rename = "NHI6")]
    Nhi6,
    /// Long-Lived Secrets.
    #[serde(rename = "NHI7")]
    Nhi7,
    /// Environment Isolation.
    #[serde(rename = "NHI8")]
    Nhi8,
    /// NHI Reuse.
    #[serde(rename = "NHI9")]
    Nhi9,
    /// Human Use of NHI.
    #[serde(rename = "NHI10")]
    Nhi10,
}

impl Owasp {
    /// Every item, in order.
    pub const ALL: [Owasp; 10] = [
        Owasp::Nhi1,
        Owasp::Nhi2,
        Owasp::Nhi3,
        Owasp::Nhi4,
        Owasp::Nhi5,
        Owasp::Nhi6,
        Owasp::Nhi7,
        Owasp::Nhi8,
        Owasp::Nhi9,
        Owasp::Nhi10,
    ];

    /// `NHI1` … `NHI10`.
    pub fn code(self) -> &'static str {
        match self {
            Owasp::Nhi1 => "NHI1",
            Owasp::Nhi2 => "NHI2",
            Owasp::Nhi3 => "NHI3",
            Owasp::Nhi4 => "NHI4",
            Owasp::Nhi5 => "NHI5",
            Owasp::Nhi6 => "NHI6",
            Owasp::Nhi7 => "NHI7",
            Owasp::Nhi8 => "NHI8",
            Owasp::Nhi9 => "NHI9",
            Owasp::Nhi10 => "NHI10",
        }
    }

    /// The item's title.
    pub fn title(self) -> &'static str {
        match self {
            Owasp::Nhi1 => "Improper Offboarding",
            Owasp::Nhi2 => "Secret Leakage",
            Owasp::Nhi3 => "Vulnerable Third-Party NHI",
            Owasp::Nhi4 => "Insecure Authentication",
            Owasp::Nhi5 => "Overprivileged NHI",
            Owasp::Nhi6 => "Insecure Cloud Deployment Configurations",
            Owasp::Nhi7 => "Long-Lived Secrets",
            Owasp::Nhi8 => "Environment Isolation",
            Owasp::Nhi9 => "NHI Reuse",
            Owasp::Nhi10 => "Human Use of NHI",
        }
    }
}

impl fmt::Display for Owasp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth fixing.
    Low,
    /// Fix this quarter.
    Medium,
    /// Fix this week.
    High,
    /// Fix today.
    Critical,
}

impl Severity {
    /// Score points a finding of this severity adds to its identity (see `docs/debt.md`).
    pub fn weight(self) -> u32 {
        match self {
            Severity::Low => 5,
            Severity::Medium => 10,
            Severity::High => 25,
            Severity::Critical => 40,
        }
    }

    /// The name in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What kind of debt a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// No decision for longer than the dormancy threshold.
    Dormant,
    /// No owner, or an owner who is not a human in the inventory.
    Orphaned,
    /// The owner is a human who is no longer active.
    OwnerOffboarded,
    /// An active credential whose holder is no longer active.
    CredentialOutlivesHolder,
    /// Granted permits never used in the window.
    OverPrivileged,
    /// Standing access to high-risk resources that no approval gated.
    StandingHighRiskAccess,
    /// Delegation chains or tool routes that no human has reviewed.
    UnreviewedAutomation,
    /// A credential not rotated within the rotation policy.
    Unrotated,
    /// A credential that never expires.
    NoExpiry,
    /// A credential valid for longer than the maximum lifetime.
    LongLived,
    /// A static secret where a short-lived credential would do.
    StaticCredential,
    /// Used across several environments.
    MultiEnvironment,
    /// Used by several workloads.
    Reused,
    /// A person used it.
    HumanUse,
}

impl FindingKind {
    /// The OWASP NHI Top 10 item it belongs to.
    pub fn owasp(self) -> Owasp {
        match self {
            FindingKind::Dormant
            | FindingKind::Orphaned
            | FindingKind::OwnerOffboarded
            | FindingKind::CredentialOutlivesHolder => Owasp::Nhi1,
            FindingKind::OverPrivileged
            | FindingKind::StandingHighRiskAccess
            | FindingKind::UnreviewedAutomation => Owasp::Nhi5,
            FindingKind::Unrotated | FindingKind::NoExpiry | FindingKind::LongLived => Owasp::Nhi7,
            FindingKind::StaticCredential => Owasp::Nhi4,
            FindingKind::MultiEnvironment => Owasp::Nhi8,
            FindingKind::Reused => Owasp::Nhi9,
            FindingKind::HumanUse => Owasp::Nhi10,
        }
    }

    /// The name in JSON and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::Dormant => "dormant",
            FindingKind::Orphaned => "orphaned",
            FindingKind::OwnerOffboarded => "owner_offboarded",
            FindingKind::CredentialOutlivesHolder => "credential_outlives_holder",
            FindingKind::OverPrivileged => "over_privileged",
            FindingKind::StandingHighRiskAccess => "standing_high_risk_access",
            FindingKind::UnreviewedAutomation => "unreviewed_automation",
            FindingKind::Unrotated => "unrotated",
            FindingKind::NoExpiry => "no_expiry",
            FindingKind::LongLived => "long_lived",
            FindingKind::StaticCredential => "static_credential",
            FindingKind::MultiEnvironment => "multi_environment",
            FindingKind::Reused => "reused",
            FindingKind::HumanUse => "human_use",
        }
    }
}

/// One piece of trust debt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable within a report: `<kind>:<identity>`.
    pub id: String,
    /// The identity, `Type::"id"`.
    pub identity: String,
    /// Its accountable owner, `Human::"id"`, if it names one.
    pub owner: Option<String>,
    /// Its team, if known.
    pub team: Option<String>,
    /// What is wrong.
    pub kind: FindingKind,
    /// The OWASP NHI Top 10 (2025) item.
    pub owasp: Owasp,
    /// How bad.
    pub severity: Severity,
    /// One sentence with the numbers and dates.
    pub summary: String,
    /// The numbers and dates, by name.
    pub evidence: serde_json::Map<String, serde_json::Value>,
    /// What to do.
    pub fix: String,
}
