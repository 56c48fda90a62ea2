//! Least-privilege suggestions: from what an over-privileged identity used, the narrower
//! policy set it needs, checked with the what-if replay against the recorded decisions of the
//! usage window before anyone is asked to apply it.
//!
//! Two changes are proposed, both to the active policy version: remove a permit that no
//! grantee used in the window, and narrow the actions of a permit granted to one identity
//! (`principal == X`) to those it used. Each suggestion is the whole candidate version, with
//! every policy given an explicit `@id` equal to its current id, so that ids (and the log's
//! references to them) do not move when a policy before them is removed.

use crate::findings::FindingKind;
use crate::grants::{policy_id, Grants};
use crate::report::Report;
use crate::usage::Usage;
use crate::{date, DebtError, Progress};
use arbiter_engine::PolicySource;
use arbiter_log::LogDb;
use arbiter_replay::{impact, Candidate, ReplayOptions};
use arbiter_store::Store;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::str::FromStr;

/// What a suggestion changes in one policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SuggestionChange {
    /// Remove the permit.
    RemovePolicy {
        /// The policy.
        policy: String,
    },
    /// Keep the permit for these actions only.
    NarrowActions {
        /// The policy.
        policy: String,
        /// The actions in its scope now (`None`: any action).
        from: Option<Vec<String>>,
        /// The actions it allowed in the window.
        to: Vec<String>,
    },
}

impl SuggestionChange {
    /// The policy it changes.
    pub fn policy(&self) -> &str {
        match self {
            SuggestionChange::RemovePolicy { policy }
            | SuggestionChange::NarrowActions { policy, .. } => policy,
        }
    }
}

/// What the what-if replay said about a suggestion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Decisions of the window decided again with the candidate.
    pub evaluated: u64,
    /// Of those, with another outcome.
    pub changed: u64,
    /// Decisions that could not be decided again.
    pub unreplayable: u64,
    /// Start of the window checked.
    pub since: i64,
    /// Days in the window.
    pub window_days: i64,
    /// Up to five changed decisions: `decision id: subject action resource from → to`.
    pub examples: Vec<String>,
}

/// A proposed narrower policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Stable id: `ls-` and 12 hex digits of the change's hash.
    pub id: String,
    /// The over-privileged identity it is for.
    pub identity: String,
    /// The changes, one per policy.
    pub changes: Vec<SuggestionChange>,
    /// For people, with the replay's verdict.
    pub summary: String,
    /// The grants it removes: `<policy>` or `<policy>: <action>`.
    pub removes: Vec<String>,
    /// The active version it was computed from; applying it on another is refused.
    pub base_version: u64,
    /// The whole candidate version, source by source.
    pub sources: Vec<SuggestedSource>,
    /// The replay's verdict.
    pub check: Option<Check>,
}

/// One policy file of a candidate version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuggestedSource {
    /// File name.
    pub name: String,
    /// Cedar text.
    pub text: String,
}

impl Suggestion {
    /// The candidate as policy sources.
    pub fn policy_sources(&self) -> Vec<PolicySource> {
        self.sources
            .iter()
            .map(|source| PolicySource {
                name: source.name.clone(),
                text: source.text.clone(),
            })
            .collect()
    }

    /// Whether the replay found the change harmless on the recorded decisions.
    pub fn safe(&self) -> bool {
        self.check
            .as_ref()
            .is_some_and(|check| check.changed == 0 && check.unreplayable == 0)
    }
}

/// Proposes suggestions for the over-privileged identities of `report` (worst first, at most
/// `limit` of them) against the active `sources` (version `base_version`).
pub fn propose(
    report: &Report,
    usage: &Usage,
    grants: &Grants,
    sources: &[PolicySource],
    base_version: u64,
    limit: usize,
) -> Result<Vec<Suggestion>, DebtError> {
    // A group-scoped permit is removed only if no grantee at all used it.
    let used_by_anyone: HashSet<&str> = usage.all_used_policies().into_iter().collect();
    let mut suggestions: Vec<Suggestion> = Vec::new();
    let mut seen = HashSet::new();
    let ranked: Vec<&str> = report
        .ranking
        .iter()
        .filter(|debt| debt.kinds.contains(&FindingKind::OverPrivileged))
        .map(|debt| debt.identity.as_str())
        .take(limit)
        .collect();
    for identity in ranked {
        let Some(finding) = report.findings.iter().find(|finding| {
            finding.identity == identity && finding.kind == FindingKind::OverPrivileged
        }) else {
            continue;
        };
        let unused: BTreeSet<&str> = finding
            .evidence
            .get("unused_policies")
            .and_then(|value| value.as_array())
            .into_iter()
            .flatten()
            .filter_map(|value| value.as_str())
            .collect();
        let used: BTreeMap<String, Vec<String>> =
            usage.used_policies(identity).into_iter().collect();
        let mut changes = Vec::new();
        for grant in &grants.grants {
            if unused.contains(grant.id.as_str()) {
                // A group-scoped permit is removed only if no grantee at all used it.
                if !grant.direct && used_by_anyone.contains(grant.id.as_str()) {
                    continue;
                }
                changes.push(SuggestionChange::RemovePolicy {
                    policy: grant.id.clone(),
                });
            } else if grant.direct && grant.scope == identity {
                let Some(actions) = used.get(&grant.id) else {
                    continue;
                };
                let listed: BTreeSet<&String> = grant.actions.iter().flatten().collect();
                let wanted: BTreeSet<&String> = actions.iter().collect();
                if listed != wanted {
                    changes.push(SuggestionChange::NarrowActions {
                        policy: grant.id.clone(),
                        from: grant.actions.clone(),
                        to: actions.clone(),
                    });
                }
            }
        }
        if changes.is_empty() {
            continue;
        }
        let candidate = rewrite(grants, sources, &changes)?;
        let mut removes = Vec::new();
        let mut parts = Vec::new();
        for change in &changes {
            match change {
                SuggestionChange::RemovePolicy { policy } => {
                    removes.push(policy.clone());
                    parts.push(format!("remove `{policy}` (unused)"));
                }
                SuggestionChange::NarrowActions { policy, from, to } => {
                    match from {
                        Some(from) => removes.extend(
                            from.iter()
                                .filter(|action| !to.contains(action))
                                .map(|action| format!("{policy}: {action}")),
                        ),
                        None => {
                            removes.push(format!("{policy}: every action but {}", to.join(", ")))
                        }
                    }
                    parts.push(format!("narrow `{policy}` to {}", to.join(", ")));
                }
            }
        }
        removes.sort();
        let id = suggestion_id(identity, &candidate);
        if !seen.insert(id.clone()) {
            continue;
        }
        suggestions.push(Suggestion {
            id,
            identity: identity.to_owned(),
            changes,
            summary: format!("{identity}: {}", parts.join(", ")),
            removes,
            base_version,
            sources: candidate,
            check: None,
        });
    }
    Ok(suggestions)
}

/// Checks each suggestion with the what-if replay over the recorded decisions since
/// `report.usage.window_start`, and says what it found in its summary.
pub fn check(
    suggestions: &mut [Suggestion],
    store: &dyn Store,
    log: &LogDb,
    window_days: i64,
    since: i64,
    progress: Option<Progress<'_>>,
) -> Result<(), DebtError> {
    let total = suggestions.len() as u64;
    for (idx, suggestion) in suggestions.iter_mut().enumerate() {
        if let Some(progress) = progress {
            progress("suggestions", idx as u64, total);
        }
        let options = ReplayOptions {
            since: Some(since),
            examples: 5,
            ..ReplayOptions::default()
        };
        let candidate = Candidate::Sources(suggestion.policy_sources());
        let found = impact(store, log, &candidate, &options, None)?;
        let examples: Vec<String> = found
            .transitions
            .iter()
            .flat_map(|transition| transition.examples.iter())
            .take(5)
            .map(|example| {
                format!(
                    "{}: {} {} {} {} → {}",
                    example.decision_id,
                    example.subject,
                    example.action,
                    example.resource,
                    example.recorded.outcome.as_str(),
                    example.candidate.outcome.as_str()
                )
            })
            .collect();
        let verdict = if found.changed == 0 {
            format!(
                "this would have changed 0 of the {} decisions recorded in the last {window_days} days (since {})",
                found.evaluated,
                date(since)
            )
        } else {
            format!(
                "this would have changed {} of the {} decisions recorded in the last {window_days} days (since {}): {}",
                found.changed,
                found.evaluated,
                date(since),
                examples.join("; ")
            )
        };
        suggestion.summary = format!("{}; {verdict}", suggestion.summary);
        suggestion.check = Some(Check {
            evaluated: found.evaluated,
            changed: found.changed,
            unreplayable: found.unreplayable,
            since,
            window_days,
            examples,
        });
    }
    if let Some(progress) = progress {
        progress("suggestions", total, total);
    }
    Ok(())
}

fn suggestion_id(policy: &str, sources: &[SuggestedSource]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(policy.as_bytes());
    for source in sources {
        hasher.update((source.name.len() as u64).to_be_bytes());
        hasher.update(source.name.as_bytes());
        hasher.update((source.text.len() as u64).to_be_bytes());
        hasher.update(source.text.as_bytes());
    }
    let digest = hex::encode(hasher.finalize());
    format!("ls-{}", digest.get(..12).unwrap_or(&digest))
}

/// The active sources with `changes` made.
fn rewrite(
    grants: &Grants,
    sources: &[PolicySource],
    changes: &[SuggestionChange],
) -> Result<Vec<SuggestedSource>, DebtError> {
    let touched: HashSet<&str> = grants
        .positions
        .iter()
        .filter(|(id, _, _)| changes.iter().any(|change| change.policy() == id))
        .map(|(_, source, _)| source.as_str())
        .collect();
    let prefix = sources.len() > 1;
    let mut out = Vec::with_capacity(sources.len());
    for source in sources {
        if !touched.contains(source.name.as_str()) {
            out.push(SuggestedSource {
                name: source.name.clone(),
                text: source.text.clone(),
            });
            continue;
        }
        let parse_error = |message: String| DebtError::Policy {
            source_name: source.name.clone(),
            message,
        };
        let set = cedar_policy::PolicySet::from_str(&source.text)
            .map_err(|err| parse_error(err.to_string()))?;
        let mut texts = Vec::new();
        for policy in set.policies() {
            let id = policy_id(policy, &source.name, prefix);
            let pinned = policy.annotation("id").is_some();
            let Some(change) = changes.iter().find(|change| change.policy() == id) else {
                texts.push(if pinned {
                    policy.to_string()
                } else {
                    format!("@id({})\n{policy}", serde_json::Value::from(id.as_str()))
                });
                continue;
            };
            match change {
                SuggestionChange::RemovePolicy { .. } => {}
                SuggestionChange::NarrowActions { to, .. } => {
                    let mut json = policy
                        .to_json()
                        .map_err(|err| parse_error(err.to_string()))?;
                    let action = |name: &String| serde_json::json!({"type": "Action", "id": name});
                    let scope = if let [only] = to.as_slice() {
                        serde_json::json!({"op": "==", "entity": action(only)})
                    } else {
                        serde_json::json!({"op": "in", "entities": to.iter().map(action).collect::<Vec<_>>()})
                    };
                    let object = json
                        .as_object_mut()
                        .ok_or_else(|| parse_error("policy JSON is not an object".into()))?;
                    object.insert("action".into(), scope);
                    let annotations = object
                        .entry("annotations")
                        .or_insert_with(|| serde_json::json!({}));
                    if let Some(annotations) = annotations.as_object_mut() {
                        annotations.insert("id".into(), serde_json::Value::from(id.as_str()));
                    }
                    let narrowed = cedar_policy::Policy::from_json(None, json)
                        .map_err(|err| parse_error(err.to_string()))?;
                    texts.push(narrowed.to_string());
                }
            }
        }
        let mut text = texts.join("\n\n");
        text.push('\n');
        out.push(SuggestedSource {
            name: source.name.clone(),
            text,
        });
    }
    Ok(out)
}
