//! The two analyses and their reports: replay (does every recorded decision come out the same
//! on the state it was made on?) and what-if (which would come out differently under a
//! candidate policy set?).

use crate::state::InventoryChange;
use crate::walk::{walk, NotReplayed, Policies, Replayed};
use crate::{ReplayError, ReplayOptions};
use arbiter_core::{Decision, Outcome};
use arbiter_engine::{PolicySet, PolicySource};
use arbiter_log::LogDb;
use arbiter_store::Store;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What a what-if changes: the policy set it decides with, or the inventory it decides on.
#[derive(Debug, Clone)]
pub enum Candidate {
    /// A version stored in the governance store (typically uploaded but not yet active).
    Version(u64),
    /// Policy sources, e.g. read from `.cedar` files. Name them as they would be uploaded
    /// (by file name): policy ids of a multi-file set include the source name.
    Sources(Vec<PolicySource>),
    /// Inventory changes made on top of the state each decision is replayed on, decided with
    /// the decision's own recorded policy version (checked against its digest, as in a replay).
    Inventory(Vec<InventoryChange>),
}

/// An outcome, the policies that determined it, and the reason given to administrators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Allow, deny or approval required.
    pub outcome: Outcome,
    /// Determining policy ids, sorted.
    pub determining: Vec<String>,
    /// The reason for an administrator.
    pub reason_admin: String,
}

/// A recorded decision that came out differently when decided again on the same state: a bug.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mismatch {
    /// The entry's position in the log.
    pub seq: u64,
    /// The decision id.
    pub decision_id: String,
    /// When it was decided (seconds since the Unix epoch).
    pub decided_at: i64,
    /// The subject, `Type::"id"`.
    pub subject: String,
    /// The action name.
    pub action: String,
    /// The resource, `Type::"id"`.
    pub resource: String,
    /// The policy version it was decided with.
    pub policy_version: u64,
    /// The change-feed position it was decided at.
    pub change_seq: u64,
    /// What the log says.
    pub recorded: Verdict,
    /// What deciding again gave.
    pub replayed: Verdict,
}

/// A decision entry that could not be decided again, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unreplayable {
    /// The entry's position in the log.
    pub seq: u64,
    /// The decision id.
    pub decision_id: String,
    /// Why: the policy version is missing or has another digest, the store's feed ends too
    /// early, the request does not parse…
    pub reason: String,
}

/// A key and how many decisions have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// The identity, action, resource, or reason.
    pub key: String,
    /// How many.
    pub count: u64,
}

/// Counts by key, most first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grouped {
    /// How many distinct keys there are.
    pub distinct: u64,
    /// The most frequent keys, at most [`ReplayOptions::group_limit`], most first (ties by key).
    pub top: Vec<Tally>,
}

/// What [`replay`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// Decision entries selected.
    pub total: u64,
    /// Decided again with the same outcome and the same determining policies.
    pub reproduced: u64,
    /// Decided again with another outcome or other determining policies.
    pub mismatched: u64,
    /// Could not be decided again.
    pub unreplayable: u64,
    /// Decisions in range whose bodies retention dropped: not selected (not in `total`), as
    /// nothing is left to decide.
    pub pruned: u64,
    /// The mismatches, in log order, at most [`ReplayOptions::list_limit`].
    pub mismatches: Vec<Mismatch>,
    /// Why entries could not be replayed, with how many each.
    pub unreplayable_reasons: Vec<Tally>,
    /// Entries that could not be replayed, in log order, at most [`ReplayOptions::list_limit`].
    pub unreplayable_entries: Vec<Unreplayable>,
    /// Distinct change-feed positions the decisions were made at (states rebuilt).
    pub states: u64,
    /// The recorded policy versions met.
    pub policy_versions: Vec<u64>,
}

impl ReplayReport {
    /// Whether every selected decision was reproduced.
    pub fn all_reproduced(&self) -> bool {
        self.reproduced == self.total
    }
}

/// Which candidate a what-if ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CandidateInfo {
    /// The stored version, when the candidate is one.
    pub version: Option<u64>,
    /// SHA-256 of its sources, hex (as recorded in decisions made with it).
    pub digest: String,
    /// How many policies it has (0 for an inventory change: each decision's recorded version).
    pub policies: usize,
    /// The inventory changes, when the candidate is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inventory: Vec<InventoryChange>,
}

/// A decision whose outcome the candidate changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The entry's position in the log.
    pub seq: u64,
    /// The decision id.
    pub decision_id: String,
    /// The recorded outcome.
    pub from: Outcome,
    /// The outcome under the candidate.
    pub to: Outcome,
}

/// A changed decision in full, as an example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The entry's position in the log.
    pub seq: u64,
    /// The decision id.
    pub decision_id: String,
    /// When it was decided.
    pub decided_at: i64,
    /// The subject, `Type::"id"`.
    pub subject: String,
    /// The action name.
    pub action: String,
    /// The resource, `Type::"id"`.
    pub resource: String,
    /// What the log says.
    pub recorded: Verdict,
    /// What the candidate decides, with its explanation for an administrator.
    pub candidate: Verdict,
}

/// All decisions going from one outcome to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The recorded outcome.
    pub from: Outcome,
    /// The outcome under the candidate.
    pub to: Outcome,
    /// How many decisions.
    pub count: u64,
    /// The first of them in log order, at most [`ReplayOptions::examples`].
    pub examples: Vec<Example>,
}

/// What [`impact`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImpactReport {
    /// The candidate.
    pub candidate: CandidateInfo,
    /// Decision entries selected.
    pub total: u64,
    /// Decided under the candidate.
    pub evaluated: u64,
    /// Whose outcome the candidate changes.
    pub changed: u64,
    /// Whose outcome stays.
    pub unchanged: u64,
    /// Of the unchanged, those decided by other policies than recorded.
    pub determining_changed: u64,
    /// Could not be decided (state not rebuilt, request not parsed).
    pub unreplayable: u64,
    /// Decisions in range whose bodies retention dropped: not selected (not in `total`).
    pub pruned: u64,
    /// Of the evaluated, those whose recorded request had fields redacted: the candidate saw
    /// the keyed hashes, not the values.
    pub redacted: u64,
    /// Changes by recorded and new outcome, most first.
    pub transitions: Vec<Transition>,
    /// Changes by subject.
    pub by_subject: Grouped,
    /// Changes by action.
    pub by_action: Grouped,
    /// Changes by resource.
    pub by_resource: Grouped,
    /// Every changed decision, in log order.
    pub changed_decisions: Vec<Changed>,
    /// Why entries could not be decided, with how many each.
    pub unreplayable_reasons: Vec<Tally>,
    /// Entries that could not be decided, in log order, at most [`ReplayOptions::list_limit`].
    pub unreplayable_entries: Vec<Unreplayable>,
    /// Distinct change-feed positions the decisions were made at (states rebuilt).
    pub states: u64,
}

/// Decides every selected decision in `log` again, on the inventory as of the change-feed
/// position it was made at and with the policy version it was made with (read from `store`
/// and checked against the recorded digest), at its recorded time and with its id, and
/// compares the outcome and the determining policies with the recorded ones.
///
/// `progress`, when given, is called with (decisions done, decisions selected) after each
/// batch. Errors are the store's or the log's; a decision that cannot be replayed is counted
/// and listed in the report, never skipped.
pub fn replay(
    store: &dyn Store,
    log: &LogDb,
    options: &ReplayOptions,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<ReplayReport, ReplayError> {
    enum Found {
        Same,
        Differs(Box<Mismatch>),
        Not(Unreplayable),
    }
    let judge = |result: Result<Replayed, NotReplayed>| match result {
        Err(not_replayed) => Found::Not(unreplayable(not_replayed)),
        Ok(replayed) => {
            let recorded = recorded_verdict(&replayed);
            let again = verdict(&replayed.replayed);
            if recorded.outcome == again.outcome && recorded.determining == again.determining {
                Found::Same
            } else if let Some(pointer) = replayed.recorded.redacted.first() {
                // The replay decided on keyed hashes where the original saw values.
                Found::Not(Unreplayable {
                    seq: replayed.seq,
                    decision_id: replayed.recorded.decision.id.clone(),
                    reason: format!(
                        "the request was recorded with `{pointer}` redacted, and deciding it \
                         again gives {} instead of {}",
                        again.outcome.as_str(),
                        recorded.outcome.as_str()
                    ),
                })
            } else {
                Found::Differs(Box::new(Mismatch {
                    seq: replayed.seq,
                    decision_id: replayed.recorded.decision.id.clone(),
                    decided_at: replayed.recorded.decision.decided_at,
                    subject: replayed.summary.subject.clone(),
                    action: replayed.summary.action.clone(),
                    resource: replayed.summary.resource.clone(),
                    policy_version: replayed.recorded.decision.snapshot.policy_version,
                    change_seq: replayed.recorded.decision.snapshot.change_seq,
                    recorded,
                    replayed: again,
                }))
            }
        }
    };
    let mut report = ReplayReport::default();
    let mut reasons = Reasons::new(options.list_limit);
    let mut sink = |found: Found| match found {
        Found::Same => report.reproduced += 1,
        Found::Differs(mismatch) => {
            report.mismatched += 1;
            keep_first(&mut report.mismatches, *mismatch, options.list_limit, |m| {
                m.seq
            });
        }
        Found::Not(entry) => {
            report.unreplayable += 1;
            reasons.add(entry);
        }
    };
    let stats = walk(
        store,
        log,
        options,
        &Policies::Recorded,
        progress,
        &judge,
        &mut sink,
    )?;
    report.total = stats.total;
    report.pruned = stats.pruned;
    report.states = stats.states;
    report.policy_versions = stats.policy_versions;
    report.mismatches.sort_by_key(|mismatch| mismatch.seq);
    report.mismatches.truncate(options.list_limit);
    (report.unreplayable_reasons, report.unreplayable_entries) = reasons.finish();
    Ok(report)
}

/// Decides every selected decision in `log` again with `candidate` instead of the policy
/// version it was made with (or, for [`Candidate::Inventory`], with its own version on the
/// changed inventory), on the inventory as of its change-feed position and at its
/// recorded time, and reports which decisions would change outcome: how many, by subject,
/// action and resource, by recorded and new outcome, with examples and their new explanations.
///
/// The comparison is with the recorded outcome. Run [`replay`] first: a decision that does
/// not reproduce would show up here as a change the candidate did not cause.
pub fn impact(
    store: &dyn Store,
    log: &LogDb,
    candidate: &Candidate,
    options: &ReplayOptions,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<ImpactReport, ReplayError> {
    let (policies, info) = match candidate {
        Candidate::Inventory(changes) => (
            Policies::RecordedOn(changes.clone()),
            CandidateInfo {
                version: None,
                digest: String::new(),
                policies: 0,
                inventory: changes.clone(),
            },
        ),
        Candidate::Version(version) => {
            let policies = compile_candidate(store, Some(*version), &[], options)?;
            policy_candidate(policies, Some(*version))
        }
        Candidate::Sources(sources) => {
            let policies = compile_candidate(store, None, sources, options)?;
            policy_candidate(policies, None)
        }
    };
    enum Found {
        Same {
            determining_changed: bool,
            redacted: bool,
        },
        Differs {
            example: Box<Example>,
            redacted: bool,
        },
        Not(Unreplayable),
    }
    let judge = |result: Result<Replayed, NotReplayed>| match result {
        Err(not_replayed) => Found::Not(unreplayable(not_replayed)),
        Ok(replayed) => {
            let recorded = recorded_verdict(&replayed);
            let again = verdict(&replayed.replayed);
            let redacted = !replayed.recorded.redacted.is_empty();
            if recorded.outcome == again.outcome {
                Found::Same {
                    determining_changed: recorded.determining != again.determining,
                    redacted,
                }
            } else {
                Found::Differs {
                    example: Box::new(Example {
                        seq: replayed.seq,
                        decision_id: replayed.recorded.decision.id.clone(),
                        decided_at: replayed.recorded.decision.decided_at,
                        subject: replayed.summary.subject.clone(),
                        action: replayed.summary.action.clone(),
                        resource: replayed.summary.resource.clone(),
                        recorded,
                        candidate: again,
                    }),
                    redacted,
                }
            }
        }
    };
    let mut report = ImpactReport {
        candidate: info,
        total: 0,
        evaluated: 0,
        changed: 0,
        unchanged: 0,
        determining_changed: 0,
        unreplayable: 0,
        pruned: 0,
        redacted: 0,
        transitions: Vec::new(),
        by_subject: Grouped::default(),
        by_action: Grouped::default(),
        by_resource: Grouped::default(),
        changed_decisions: Vec::new(),
        unreplayable_reasons: Vec::new(),
        unreplayable_entries: Vec::new(),
        states: 0,
    };
    let mut reasons = Reasons::new(options.list_limit);
    let mut transitions: BTreeMap<(&'static str, &'static str), Transition> = BTreeMap::new();
    let mut by_subject: HashMap<String, u64> = HashMap::new();
    let mut by_action: HashMap<String, u64> = HashMap::new();
    let mut by_resource: HashMap<String, u64> = HashMap::new();
    let mut sink = |found: Found| match found {
        Found::Same {
            determining_changed,
            redacted,
        } => {
            report.evaluated += 1;
            report.unchanged += 1;
            report.determining_changed += u64::from(determining_changed);
            report.redacted += u64::from(redacted);
        }
        Found::Differs { example, redacted } => {
            report.evaluated += 1;
            report.changed += 1;
            report.redacted += u64::from(redacted);
            let from = example.recorded.outcome;
            let to = example.candidate.outcome;
            report.changed_decisions.push(Changed {
                seq: example.seq,
                decision_id: example.decision_id.clone(),
                from,
                to,
            });
            *by_subject.entry(example.subject.clone()).or_default() += 1;
            *by_action.entry(example.action.clone()).or_default() += 1;
            *by_resource.entry(example.resource.clone()).or_default() += 1;
            let transition = transitions
                .entry((from.as_str(), to.as_str()))
                .or_insert_with(|| Transition {
                    from,
                    to,
                    count: 0,
                    examples: Vec::new(),
                });
            transition.count += 1;
            keep_first(&mut transition.examples, *example, options.examples, |e| {
                e.seq
            });
        }
        Found::Not(entry) => {
            report.unreplayable += 1;
            reasons.add(entry);
        }
    };
    let stats = walk(store, log, options, &policies, progress, &judge, &mut sink)?;
    report.total = stats.total;
    report.pruned = stats.pruned;
    report.states = stats.states;
    report.changed_decisions.sort_by_key(|changed| changed.seq);
    let mut transitions: Vec<Transition> = transitions.into_values().collect();
    for transition in &mut transitions {
        transition.examples.sort_by_key(|example| example.seq);
        transition.examples.truncate(options.examples);
    }
    transitions.sort_by_key(|transition| std::cmp::Reverse(transition.count));
    report.transitions = transitions;
    report.by_subject = grouped(by_subject, options.group_limit);
    report.by_action = grouped(by_action, options.group_limit);
    report.by_resource = grouped(by_resource, options.group_limit);
    (report.unreplayable_reasons, report.unreplayable_entries) = reasons.finish();
    Ok(report)
}

/// How the walk decides with a compiled candidate policy set, and how the report names it.
fn policy_candidate(policies: Arc<PolicySet>, version: Option<u64>) -> (Policies, CandidateInfo) {
    let info = CandidateInfo {
        version,
        digest: policies.digest().to_owned(),
        policies: policies.len(),
        inventory: Vec::new(),
    };
    (Policies::Candidate(policies), info)
}

/// Compiles a candidate policy set (a stored version when `version` is given, else `sources`)
/// the way the server compiles a version it activates.
fn compile_candidate(
    store: &dyn Store,
    version: Option<u64>,
    sources: &[PolicySource],
    options: &ReplayOptions,
) -> Result<Arc<PolicySet>, ReplayError> {
    let sources: Vec<PolicySource> = match version {
        Some(version) => store
            .get_policy_version(version)?
            .sources
            .into_iter()
            .map(|source| PolicySource {
                name: source.name,
                text: source.text,
            })
            .collect(),
        None => sources.to_vec(),
    };
    let compiled = PolicySet::compile(sources, options.schema.as_ref(), version.unwrap_or(0))
        .map_err(ReplayError::Candidate)?;
    Ok(Arc::new(compiled))
}

fn verdict(decision: &Decision) -> Verdict {
    let mut determining: Vec<String> = decision
        .determining
        .iter()
        .map(|policy| policy.id.clone())
        .collect();
    determining.sort();
    determining.dedup();
    Verdict {
        outcome: decision.outcome,
        determining,
        reason_admin: decision.reason_admin.clone(),
    }
}

fn recorded_verdict(replayed: &Replayed) -> Verdict {
    let decision = &replayed.recorded.decision;
    let mut determining: Vec<String> = decision
        .determining
        .iter()
        .map(|policy| policy.id.clone())
        .collect();
    determining.sort();
    determining.dedup();
    Verdict {
        outcome: decision.outcome,
        determining,
        reason_admin: decision.reason_admin.clone(),
    }
}

fn unreplayable(not_replayed: NotReplayed) -> Unreplayable {
    Unreplayable {
        seq: not_replayed.seq,
        decision_id: not_replayed.decision_id,
        reason: not_replayed.reason,
    }
}

/// Adds `item` to `items`, which keeps (once sorted and truncated) the `limit` items with the
/// lowest keys. The walk visits decisions in feed order, not log order, so the first in log
/// order are only known at the end; this bounds the memory meanwhile.
fn keep_first<T>(items: &mut Vec<T>, item: T, limit: usize, key: impl Fn(&T) -> u64) {
    if limit == 0 {
        return;
    }
    items.push(item);
    if items.len() >= limit.saturating_mul(2).max(64) {
        items.sort_by_key(|item| key(item));
        items.truncate(limit);
    }
}

/// Unreplayable entries, counted by reason; the first `limit` in log order kept.
struct Reasons {
    limit: usize,
    counts: HashMap<String, u64>,
    entries: Vec<Unreplayable>,
}

impl Reasons {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            counts: HashMap::new(),
            entries: Vec::new(),
        }
    }

    fn add(&mut self, entry: Unreplayable) {
        *self.counts.entry(entry.reason.clone()).or_default() += 1;
        keep_first(&mut self.entries, entry, self.limit, |entry| entry.seq);
    }

    fn finish(mut self) -> (Vec<Tally>, Vec<Unreplayable>) {
        self.entries.sort_by_key(|entry| entry.seq);
        self.entries.truncate(self.limit);
        (grouped(self.counts, usize::MAX).top, self.entries)
    }
}

fn grouped(counts: HashMap<String, u64>, limit: usize) -> Grouped {
    let distinct = counts.len() as u64;
    let mut top: Vec<Tally> = counts
        .into_iter()
        .map(|(key, count)| Tally { key, count })
        .collect();
    top.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    top.truncate(limit);
    Grouped { distinct, top }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_first_keeps_the_lowest_keys_whatever_the_order_they_come_in() {
        let mut kept = Vec::new();
        for seq in (0..1000u64).rev().chain(1000..2000) {
            keep_first(&mut kept, seq, 5, |seq| *seq);
        }
        kept.sort_unstable();
        kept.truncate(5);
        assert_eq!(kept, vec![0, 1, 2, 3, 4]);
        let mut none = Vec::new();
        keep_first(&mut none, 1u64, 0, |seq| *seq);
        assert!(none.is_empty());
    }

    #[test]
    fn grouped_lists_the_most_frequent_first_and_counts_every_key() {
        let counts: HashMap<String, u64> = [("b", 2), ("a", 2), ("c", 5), ("d", 1)]
            .into_iter()
            .map(|(key, count)| (key.to_owned(), count))
            .collect();
        let grouped = grouped(counts, 3);
        assert_eq!(grouped.distinct, 4);
        let keys: Vec<(&str, u64)> = grouped
            .top
            .iter()
            .map(|tally| (tally.key.as_str(), tally.count))
            .collect();
        assert_eq!(keys, vec![("c", 5), ("a", 2), ("b", 2)]);
    }
}
