//! The trust-debt score.
//!
//! - Identity: the sum of its findings' severity weights (low 5, medium 10, high 25,
//!   critical 40), capped at 100. Zero means no finding.
//! - Owner and team: the sum of their identities' scores (debt points), with how many
//!   identities carry debt and the worst one. Sums, not means, so that an owner with forty
//!   indebted agents ranks above one with a single one.
//! - Overall: the mean identity score over every active non-human identity analysed, 0 to 100,
//!   so that it stays comparable as the inventory grows.

use crate::findings::Finding;
use crate::report::IdentityDebt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Highest identity score.
pub const MAX_SCORE: u32 = 100;

/// An identity's score from its findings.
pub fn identity_score(findings: &[Finding]) -> u32 {
    findings
        .iter()
        .map(|finding| finding.severity.weight())
        .sum::<u32>()
        .min(MAX_SCORE)
}

/// The debt of an owner or a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupScore {
    /// `Human::"id"` for an owner, the team name for a team; `(none)` when there is none.
    pub key: String,
    /// Sum of its identities' scores.
    pub total: u64,
    /// Identities with debt.
    pub identities: u64,
    /// The highest identity score among them.
    pub max: u32,
    /// Findings.
    pub findings: u64,
    /// Its debt points in the last report kept before this one (0 if it had no debt then);
    /// `None` when no earlier report was kept. Filled from the history
    /// ([`crate::History::add_group_trends`]).
    #[serde(default)]
    pub previous: Option<u64>,
    /// `total` minus `previous`: negative when the debt went down.
    #[serde(default)]
    pub delta: Option<i64>,
    /// Its debt points in the earlier reports kept, oldest first (0 where it had none), and
    /// now.
    #[serde(default)]
    pub trend: Vec<GroupPoint>,
}

/// An owner's or team's debt points at one report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupPoint {
    /// When the report was computed.
    pub at: i64,
    /// Its debt points then.
    pub total: u64,
}

/// Every score of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Mean identity score over the identities analysed, 0 to 100 (one decimal).
    pub overall: f64,
    /// Sum of identity scores.
    pub total: u64,
    /// Identities with at least one finding.
    pub identities_with_debt: u64,
    /// Owners by debt, highest first.
    pub owners: Vec<GroupScore>,
    /// Teams by debt, highest first.
    pub teams: Vec<GroupScore>,
    /// Findings per OWASP item (`NHI1` …), every item present.
    pub by_owasp: BTreeMap<String, u64>,
    /// Findings per severity.
    pub by_severity: BTreeMap<String, u64>,
    /// Findings per kind.
    pub by_kind: BTreeMap<String, u64>,
}

/// Who an identity's debt is counted for when it has no owner or team.
pub const NONE_KEY: &str = "(none)";

impl Scores {
    /// The scores of `ranking` (identities with debt) out of `analysed` identities.
    pub fn compute(analysed: u64, ranking: &[IdentityDebt], findings: &[Finding]) -> Self {
        let total: u64 = ranking.iter().map(|debt| u64::from(debt.score)).sum();
        let overall = if analysed == 0 {
            0.0
        } else {
            (total as f64 / analysed as f64 * 10.0).round() / 10.0
        };
        let group = |key_of: &dyn Fn(&IdentityDebt) -> Option<String>| {
            let mut groups: HashMap<String, GroupScore> = HashMap::new();
            for debt in ranking {
                let key = key_of(debt).unwrap_or_else(|| NONE_KEY.to_owned());
                let entry = groups.entry(key.clone()).or_insert_with(|| GroupScore {
                    key,
                    total: 0,
                    identities: 0,
                    max: 0,
                    findings: 0,
                    previous: None,
                    delta: None,
                    trend: Vec::new(),
                });
                entry.total += u64::from(debt.score);
                entry.identities += 1;
                entry.max = entry.max.max(debt.score);
                entry.findings += debt.kinds.len() as u64;
            }
            let mut groups: Vec<GroupScore> = groups.into_values().collect();
            groups.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.key.cmp(&b.key)));
            groups
        };
        let mut by_owasp: BTreeMap<String, u64> = crate::Owasp::ALL
            .iter()
            .map(|item| (item.code().to_owned(), 0))
            .collect();
        let mut by_severity = BTreeMap::new();
        let mut by_kind = BTreeMap::new();
        for finding in findings {
            *by_owasp.entry(finding.owasp.code().to_owned()).or_default() += 1;
            *by_severity
                .entry(finding.severity.as_str().to_owned())
                .or_default() += 1;
            *by_kind.entry(finding.kind.as_str().to_owned()).or_default() += 1;
        }
        Self {
            overall,
            total,
            identities_with_debt: ranking.len() as u64,
            owners: group(&|debt| debt.owner.clone()),
            teams: group(&|debt| debt.team.clone()),
            by_owasp,
            by_severity,
            by_kind,
        }
    }
}
