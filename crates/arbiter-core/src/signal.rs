//! Live signals: facts about an identity that change faster than the inventory.

use crate::{EntityRef, Timestamp};
use serde::{Deserialize, Serialize};

/// One observation, e.g. `risk_score = 72` from the SIEM, seen at `observed_at`, good for `ttl_seconds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// The identity or workload it describes.
    pub subject: EntityRef,
    /// Name as policies see it: `context.arbiter.signals.<name>`.
    pub name: String,
    /// Value: a boolean, an integer or a string (Cedar has no floating point).
    pub value: serde_json::Value,
    /// Who reported it.
    pub source: String,
    /// When it was observed.
    pub observed_at: Timestamp,
    /// How long it stays trustworthy; an older signal is stale and is withheld from policies.
    pub ttl_seconds: i64,
}

impl Signal {
    /// Age at `now`, never negative (a clock skew does not make a signal younger than fresh).
    pub fn age_seconds(&self, now: Timestamp) -> i64 {
        now.saturating_sub(self.observed_at).max(0)
    }

    /// A signal past its time-to-live is not evidence of anything.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.age_seconds(now) > self.ttl_seconds
    }
}
