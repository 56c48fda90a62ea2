//! Least-privilege suggestions: from what an over-privileged identity used, the narrower
//! policy set or the fewer role memberships it needs, checked with the what-if replay against
//! the recorded decisions of the usage window before anyone is asked to apply it.
//!
//! Two kinds are proposed. A *policy* suggestion ([`propose`]) changes the active policy
//! version: remove a permit that no grantee used in the window, and narrow the actions of a
//! permit granted to one identity (`principal == X`) to those it used. It is the whole
//! candidate version, with every policy given an explicit `@id` equal to its current id, so
//! that ids (and the log's references to them) do not move when a policy before them is
//! removed. A *membership* suggestion ([`propose_memberships`]) takes the identity out of the
//! roles none of whose grants it used: an ordinary identity change, checked by replaying each
//! recorded decision on its state with the membership removed (`arbiter_replay::Candidate::Inventory`).

use crate::findings::FindingKind;
use crate::grants::{policy_id, Grants};
use crate::report::Report;
use crate::usage::Usage;
use crate::{date, DebtError, Progress};
use arbiter_core::{EntityRef, Identity, InventoryDocument};
use arbiter_engine::PolicySource;
use arbiter_log::LogDb;
use arbiter_replay::{impact, Candidate, InventoryChange, ReplayOptions};
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
    /// Take the identity out of this group or role (its direct `member_of`).
    RemoveMembership {
        /// The group or role.
        group: EntityRef,
    },
}

impl SuggestionChange {
    /// The policy it changes, if it changes one.
    pub fn policy(&self) -> Option<&str> {
        match self {
            SuggestionChange::RemovePolicy { policy }
            | SuggestionChange::NarrowActions { policy, .. } => Some(policy),
            SuggestionChange::RemoveMembership { .. } => None,
        }
    }
}

/// What a suggestion changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuggestionKind {
    /// A new policy version (`sources`), uploaded and activated.
    #[default]
    Policies,
    /// Role memberships removed from one identity: an ordinary identity change.
    Membership,
}

/// The identity a membership suggestion changes, as the report saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipBase {
    /// The identity.
    pub identity: EntityRef,
    /// Its direct memberships when the suggestion was made; applying refuses if they changed.
    pub member_of: Vec<EntityRef>,
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

/// A proposed narrower policy version, or fewer role memberships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suggestion {
    /// Stable id: `ls-` (a policy version) or `lm-` (memberships) and 12 hex digits of the
    /// change's hash, so that it names the same change only while the state it was made on
    /// holds.
    pub id: String,
    /// What it changes.
    #[serde(default)]
    pub kind: SuggestionKind,
    /// The over-privileged identity it is for.
    pub identity: String,
    /// The changes, one per policy or membership.
    pub changes: Vec<SuggestionChange>,
    /// For people, with the replay's verdict.
    pub summary: String,
    /// The grants it removes: `<policy>`, `<policy>: <action>`, or `member of <group>`.
    pub removes: Vec<String>,
    /// The active version it was computed from; applying a policy suggestion on another is
    /// refused.
    pub base_version: u64,
    /// The whole candidate version, source by source (empty for a membership suggestion).
    pub sources: Vec<SuggestedSource>,
    /// For a membership suggestion, the identity it changes as the report saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<MembershipBase>,
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

    /// The inventory changes a membership suggestion makes, for the what-if replay.
    pub fn inventory_changes(&self) -> Vec<InventoryChange> {
        let Some(base) = &self.membership else {
            return Vec::new();
        };
        self.changes
            .iter()
            .filter_map(|change| match change {
                SuggestionChange::RemoveMembership { group } => {
                    Some(InventoryChange::RemoveMembership {
                        identity: base.identity.clone(),
                        group: group.clone(),
                    })
                }
                SuggestionChange::RemovePolicy { .. } | SuggestionChange::NarrowActions { .. } => {
                    None
                }
            })
            .collect()
    }

    /// Makes a membership suggestion's change on `identity` as it is now. Refused (with why)
    /// when the suggestion is not a membership one, is for another identity, or the identity's
    /// memberships are no longer those the suggestion was made on: the replay's verdict was
    /// about that state, not this one.
    pub fn apply_to(&self, identity: &mut Identity) -> Result<(), String> {
        let Some(base) = &self.membership else {
            return Err(format!("`{}` is not a membership suggestion", self.id));
        };
        if identity.entity_ref() != base.identity {
            return Err(format!(
                "`{}` is for {}, not {}",
                self.id,
                base.identity,
                identity.entity_ref()
            ));
        }
        if identity.member_of != base.member_of {
            return Err(format!(
                "the memberships of {} changed since `{}` was made: run the report again",
                base.identity, self.id
            ));
        }
        let leaving: Vec<&EntityRef> =
            self.changes
                .iter()
                .filter_map(|change| match change {
                    SuggestionChange::RemoveMembership { group } => Some(group),
                    SuggestionChange::RemovePolicy { .. }
                    | SuggestionChange::NarrowActions { .. } => None,
                })
                .collect();
        identity.member_of.retain(|group| !leaving.contains(&group));
        Ok(())
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
                // Not proposed here: see `propose_memberships`.
                SuggestionChange::RemoveMembership { .. } => {}
            }
        }
        removes.sort();
        let id = suggestion_id(identity, &candidate);
        if !seen.insert(id.clone()) {
            continue;
        }
        suggestions.push(Suggestion {
            id,
            kind: SuggestionKind::Policies,
            identity: identity.to_owned(),
            changes,
            summary: format!("{identity}: {}", parts.join(", ")),
            removes,
            base_version,
            sources: candidate,
            membership: None,
            check: None,
        });
    }
    Ok(suggestions)
}

/// Proposes membership suggestions for the over-privileged identities of `report` (worst
/// first, at most `limit` of them) that are direct members of roles none of whose grants they
/// used in the window (the finding's `unused_roles`): one suggestion per identity, taking it
/// out of all of them. A role whose grant it used is never proposed; the replay then says
/// whether anything else (a forbid, a condition on membership) depended on the membership.
pub fn propose_memberships(
    report: &Report,
    inventory: &InventoryDocument,
    base_version: u64,
    limit: usize,
) -> Vec<Suggestion> {
    let ranked = report
        .ranking
        .iter()
        .filter(|debt| debt.kinds.contains(&FindingKind::OverPrivileged))
        .take(limit);
    let mut suggestions = Vec::new();
    for debt in ranked {
        let Some(finding) = report.findings.iter().find(|finding| {
            finding.identity == debt.identity && finding.kind == FindingKind::OverPrivileged
        }) else {
            continue;
        };
        let unused: BTreeSet<&str> = finding
            .evidence
            .get("unused_roles")
            .and_then(|value| value.as_array())
            .into_iter()
            .flatten()
            .filter_map(|value| value.as_str())
            .collect();
        let Some(identity) = inventory
            .identities
            .iter()
            .find(|identity| identity.entity_ref().to_string() == debt.identity)
        else {
            continue;
        };
        let mut leaving: Vec<EntityRef> = identity
            .member_of
            .iter()
            .filter(|group| unused.contains(group.to_string().as_str()))
            .cloned()
            .collect();
        leaving.sort();
        leaving.dedup();
        if leaving.is_empty() {
            continue;
        }
        let names: Vec<String> = leaving.iter().map(ToString::to_string).collect();
        let base = MembershipBase {
            identity: identity.entity_ref(),
            member_of: identity.member_of.clone(),
        };
        suggestions.push(Suggestion {
            id: membership_id(&base, &leaving),
            kind: SuggestionKind::Membership,
            identity: debt.identity.clone(),
            summary: format!(
                "{}: remove from {} (none of its grants used in the last {} days)",
                debt.identity,
                names.join(", "),
                report.thresholds.usage_window_days
            ),
            removes: names
                .iter()
                .map(|name| format!("member of {name}"))
                .collect(),
            changes: leaving
                .into_iter()
                .map(|group| SuggestionChange::RemoveMembership { group })
                .collect(),
            base_version,
            sources: Vec::new(),
            membership: Some(base),
            check: None,
        });
    }
    suggestions
}

/// `lm-` and the hash of the identity, its memberships as seen, and those removed.
fn membership_id(base: &MembershipBase, leaving: &[EntityRef]) -> String {
    let mut hasher = Sha256::new();
    let mut field = |text: &str| {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    };
    field(&base.identity.to_string());
    field("member_of");
    for group in &base.member_of {
        field(&group.to_string());
    }
    field("remove");
    for group in leaving {
        field(&group.to_string());
    }
    let digest = hex::encode(hasher.finalize());
    format!("lm-{}", digest.get(..12).unwrap_or(&digest))
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
        let candidate = match suggestion.kind {
            SuggestionKind::Policies => Candidate::Sources(suggestion.policy_sources()),
            SuggestionKind::Membership => Candidate::Inventory(suggestion.inventory_changes()),
        };
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
        .filter(|(id, _, _)| {
            changes
                .iter()
                .any(|change| change.policy() == Some(id.as_str()))
        })
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
            let Some(change) = changes
                .iter()
                .find(|change| change.policy() == Some(id.as_str()))
            else {
                texts.push(if pinned {
                    policy.to_string()
                } else {
                    format!("@id({})\n{policy}", serde_json::Value::from(id.as_str()))
                });
                continue;
            };
            match change {
                SuggestionChange::RemovePolicy { .. }
                | SuggestionChange::RemoveMembership { .. } => {}
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
