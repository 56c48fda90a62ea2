//! The walk both analyses share: find the decisions to replay, order them by the state they
//! were made on, rebuild each state once, and decide every recorded request again, on every
//! core.

use crate::state::{InventoryChange, StateWalker};
use crate::{ReplayError, ReplayOptions};
use arbiter_core::{request_from_value, Outcome, SnapshotInfo};
use arbiter_engine::{DecideOptions, PolicySet, PolicySource, Snapshot};
use arbiter_log::LogDb;
use arbiter_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Decisions fetched and decided together; the progress callback runs once per batch.
const BATCH: usize = 2048;

/// Which policies to decide with.
pub(crate) enum Policies {
    /// Each decision's own recorded version, from the store, checked against its digest.
    Recorded,
    /// One candidate set for every decision.
    Candidate(Arc<PolicySet>),
    /// Each decision's own recorded version, on its state with these changes made (a what-if
    /// of an inventory change).
    RecordedOn(Vec<InventoryChange>),
}

impl Policies {
    /// The inventory changes made on every state.
    fn changes(&self) -> &[InventoryChange] {
        match self {
            Policies::RecordedOn(changes) => changes,
            Policies::Recorded | Policies::Candidate(_) => &[],
        }
    }
}

/// The parts of a decision entry replay reads. Everything else in the entry (explanations,
/// context, hops) is skipped unparsed.
#[derive(Debug, Deserialize)]
pub(crate) struct Recorded {
    pub(crate) request: Value,
    #[serde(default)]
    pub(crate) redacted: Vec<String>,
    pub(crate) decision: RecordedDecision,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RecordedDecision {
    pub(crate) id: String,
    pub(crate) outcome: Outcome,
    pub(crate) determining: Vec<PolicyRef>,
    #[serde(default)]
    pub(crate) reason_admin: String,
    pub(crate) snapshot: SnapshotInfo,
    pub(crate) decided_at: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PolicyRef {
    pub(crate) id: String,
}

/// Just enough of an entry to order it.
#[derive(Deserialize)]
struct Header {
    decision: HeaderDecision,
}

#[derive(Deserialize)]
struct HeaderDecision {
    snapshot: HeaderSnapshot,
}

#[derive(Deserialize)]
struct HeaderSnapshot {
    #[serde(default)]
    change_seq: u64,
}

/// Who asked to do what to which, for reports.
#[derive(Debug, Clone)]
pub(crate) struct Summary {
    pub(crate) subject: String,
    pub(crate) action: String,
    pub(crate) resource: String,
}

/// A decision entry decided again.
pub(crate) struct Replayed {
    pub(crate) seq: u64,
    pub(crate) recorded: Recorded,
    pub(crate) summary: Summary,
    pub(crate) replayed: arbiter_core::Decision,
}

/// A decision entry that could not be decided again, and why.
#[derive(Debug, Clone)]
pub(crate) struct NotReplayed {
    pub(crate) seq: u64,
    pub(crate) decision_id: String,
    pub(crate) reason: String,
}

/// Facts about the walk, for the reports.
#[derive(Debug, Default)]
pub(crate) struct WalkStats {
    /// Decision entries selected.
    pub(crate) total: u64,
    /// Decision entries in range whose bodies retention dropped (not selected: nothing is
    /// left to decide).
    pub(crate) pruned: u64,
    /// Distinct feed positions decided against.
    pub(crate) states: u64,
    /// Distinct recorded policy versions met.
    pub(crate) policy_versions: Vec<u64>,
}

/// An entry's body, with the columns the walk needs before parsing it.
struct Fetched {
    policy_version: u64,
    decision_id: String,
    body: Vec<u8>,
}

impl From<arbiter_log::db::Row> for Fetched {
    fn from(row: arbiter_log::db::Row) -> Self {
        Self {
            policy_version: row.columns.policy_version,
            decision_id: row.columns.decision_id,
            body: row.body,
        }
    }
}

struct Key {
    change_seq: u64,
    seq: u64,
}

struct Job {
    seq: u64,
    decision_id: String,
    body: Vec<u8>,
    snapshot: Result<Arc<Snapshot>, String>,
    /// Whether the snapshot holds the decision's own recorded policy version, to be checked
    /// against the recorded version and digest.
    recorded_policies: bool,
}

/// Walks every selected decision in `log`, in (change seq, log seq) order, and hands each
/// result, in that order, to `sink` after `judge` (which runs on the worker threads) has
/// boiled it down.
pub(crate) fn walk<V: Send>(
    store: &dyn Store,
    log: &LogDb,
    options: &ReplayOptions,
    policies: &Policies,
    progress: Option<&dyn Fn(u64, u64)>,
    judge: &(dyn Fn(Result<Replayed, NotReplayed>) -> V + Sync),
    sink: &mut dyn FnMut(V),
) -> Result<WalkStats, ReplayError> {
    let (mut keys, unreadable, pruned) = select(log, options)?;
    let total = (keys.len() + unreadable.len()) as u64;
    let mut stats = WalkStats {
        total,
        pruned,
        ..WalkStats::default()
    };
    let mut done = 0u64;
    for not_replayed in unreadable {
        sink(judge(Err(not_replayed)));
        done += 1;
    }
    keys.sort_unstable_by_key(|key| (key.change_seq, key.seq));
    let threads = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        threads => threads,
    };
    let mut walker = StateWalker::new(store, options.schema.clone(), options.engine.clone());
    let mut resolver = Resolver {
        store,
        options,
        policies,
        versions: HashMap::new(),
        at: None,
        states: 0,
    };
    if let Some(progress) = progress {
        progress(done, total);
    }
    for batch in keys.chunks(BATCH) {
        let mut bodies = fetch(log, batch)?;
        let mut jobs = Vec::with_capacity(batch.len());
        for key in batch {
            let Some(Fetched {
                policy_version,
                decision_id,
                body,
            }) = bodies.remove(&key.seq)
            else {
                return Err(ReplayError::Log(arbiter_log::LogError::Corrupt(format!(
                    "entry {} vanished during the replay",
                    key.seq
                ))));
            };
            let snapshot = resolver.snapshot(&mut walker, key.change_seq, policy_version)?;
            jobs.push(Job {
                seq: key.seq,
                decision_id,
                body,
                snapshot,
                recorded_policies: !matches!(policies, Policies::Candidate(_)),
            });
        }
        for verdict in decide_all(&jobs, threads, judge) {
            sink(verdict);
        }
        done += jobs.len() as u64;
        if let Some(progress) = progress {
            progress(done, total);
        }
    }
    stats.states = resolver.states;
    stats.policy_versions = resolver.versions.keys().copied().collect();
    stats.policy_versions.sort_unstable();
    Ok(stats)
}

/// First pass: the decision entries in range, with the feed position each was made at.
/// Entries whose position cannot even be read are returned apart, to be reported, and those
/// whose bodies retention dropped are counted.
fn select(
    log: &LogDb,
    options: &ReplayOptions,
) -> Result<(Vec<Key>, Vec<NotReplayed>, u64), ReplayError> {
    let mut keys = Vec::new();
    let mut unreadable = Vec::new();
    let mut pruned = 0;
    log.scan(1, u64::MAX, |row| {
        let columns = &row.columns;
        if columns.kind != "decision"
            || options.since.is_some_and(|since| columns.at < since)
            || options.until.is_some_and(|until| columns.at >= until)
        {
            return Ok(());
        }
        if row.body.is_empty() {
            // Retention keeps a pruned entry's columns and leaf, not its request.
            pruned += 1;
            return Ok(());
        }
        match serde_json::from_slice::<Header>(&row.body) {
            Ok(header) => keys.push(Key {
                change_seq: header.decision.snapshot.change_seq,
                seq: row.seq,
            }),
            Err(err) => unreadable.push(NotReplayed {
                seq: row.seq,
                decision_id: columns.decision_id.clone(),
                reason: format!("the entry does not parse: {err}"),
            }),
        }
        Ok(())
    })?;
    Ok((keys, unreadable, pruned))
}

/// The bodies of a batch's entries, by seq, with their policy version and decision id columns.
/// Reads the batch's seq range in one scan when the batch is dense in it (the usual case: log
/// order follows feed order), one by one otherwise.
fn fetch(log: &LogDb, batch: &[Key]) -> Result<HashMap<u64, Fetched>, ReplayError> {
    let mut wanted: HashMap<u64, Fetched> = HashMap::with_capacity(batch.len());
    let first = batch.iter().map(|key| key.seq).min().unwrap_or(0);
    let last = batch.iter().map(|key| key.seq).max().unwrap_or(0);
    let span = last.saturating_sub(first).saturating_add(1);
    if span <= 4 * batch.len() as u64 {
        let seqs: std::collections::HashSet<u64> = batch.iter().map(|key| key.seq).collect();
        log.scan(first, last, |row| {
            if seqs.contains(&row.seq) {
                wanted.insert(row.seq, Fetched::from(row));
            }
            Ok(())
        })?;
    } else {
        for key in batch {
            if let Some(row) = log.row(key.seq)? {
                wanted.insert(row.seq, Fetched::from(row));
            }
        }
    }
    Ok(wanted)
}

/// Finds the snapshot for each (position, policy version), building each once.
struct Resolver<'r> {
    store: &'r dyn Store,
    options: &'r ReplayOptions,
    policies: &'r Policies,
    /// Recorded policy versions, compiled (or why they cannot be).
    versions: HashMap<u64, Result<Arc<PolicySet>, String>>,
    /// The position being replayed, its state, and its snapshot per policy version.
    at: Option<At>,
    states: u64,
}

struct At {
    change_seq: u64,
    state: Result<Snapshot, String>,
    by_version: HashMap<u64, Result<Arc<Snapshot>, String>>,
}

impl Resolver<'_> {
    fn snapshot(
        &mut self,
        walker: &mut StateWalker<'_>,
        change_seq: u64,
        policy_version: u64,
    ) -> Result<Result<Arc<Snapshot>, String>, ReplayError> {
        if self
            .at
            .as_ref()
            .is_none_or(|at| at.change_seq != change_seq)
        {
            let state = walker
                .advance_to(change_seq)
                .and_then(|()| walker.snapshot_with(self.policies.changes()));
            let state = match state {
                Ok(state) => Ok(state),
                Err(crate::StateError::Store(err)) => return Err(ReplayError::Store(err)),
                Err(err @ crate::StateError::Candidate { .. }) => Err(err.to_string()),
                Err(err) => Err(format!("the inventory cannot be rebuilt: {err}")),
            };
            self.states += 1;
            self.at = Some(At {
                change_seq,
                state,
                by_version: HashMap::new(),
            });
        }
        let policies = match self.policies {
            Policies::Recorded | Policies::RecordedOn(_) => self.version(policy_version)?,
            Policies::Candidate(candidate) => Ok(Arc::clone(candidate)),
        };
        let Some(at) = self.at.as_mut() else {
            return Ok(Err("no state".to_owned()));
        };
        let key = match self.policies {
            Policies::Recorded | Policies::RecordedOn(_) => policy_version,
            Policies::Candidate(_) => 0,
        };
        let snapshot = at.by_version.entry(key).or_insert_with(|| {
            let state = at.state.as_ref().map_err(Clone::clone)?;
            let policies = policies?;
            Ok(Arc::new(state.with_policies(policies)))
        });
        Ok(snapshot.clone())
    }

    fn version(&mut self, version: u64) -> Result<Result<Arc<PolicySet>, String>, ReplayError> {
        if let Some(known) = self.versions.get(&version) {
            return Ok(known.clone());
        }
        let compiled = if version == 0 {
            // A server with no active version decides with the empty set.
            Ok(Arc::new(PolicySet::empty()))
        } else {
            match self.store.get_policy_version(version) {
                Ok(stored) => {
                    let sources = stored
                        .sources
                        .iter()
                        .map(|source| PolicySource {
                            name: source.name.clone(),
                            text: source.text.clone(),
                        })
                        .collect();
                    PolicySet::compile(sources, self.options.schema.as_ref(), version)
                        .map(Arc::new)
                        .map_err(|err| format!("policy version {version} does not compile: {err}"))
                }
                Err(StoreError::NotFound { .. }) => {
                    Err(format!("policy version {version} is not in the store"))
                }
                Err(err) => return Err(ReplayError::Store(err)),
            }
        };
        self.versions.insert(version, compiled.clone());
        Ok(compiled)
    }
}

/// Decides a batch on `threads` threads; results come back in the batch's order.
fn decide_all<V: Send>(
    jobs: &[Job],
    threads: usize,
    judge: &(dyn Fn(Result<Replayed, NotReplayed>) -> V + Sync),
) -> Vec<V> {
    let per_thread = jobs.len().div_ceil(threads.max(1)).max(1);
    if threads <= 1 || jobs.len() <= per_thread {
        return jobs.iter().map(|job| judge(decide(job))).collect();
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(per_thread)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|job| judge(decide(job)))
                        .collect::<Vec<V>>()
                })
            })
            .collect();
        let mut verdicts = Vec::with_capacity(jobs.len());
        for worker in workers {
            match worker.join() {
                Ok(part) => verdicts.extend(part),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        verdicts
    })
}

fn decide(job: &Job) -> Result<Replayed, NotReplayed> {
    let not_replayed = |reason: String| NotReplayed {
        seq: job.seq,
        decision_id: job.decision_id.clone(),
        reason,
    };
    if job.body.is_empty() {
        return Err(not_replayed(
            "retention pruned its body during the replay".to_owned(),
        ));
    }
    let recorded: Recorded = serde_json::from_slice(&job.body)
        .map_err(|err| not_replayed(format!("the entry does not parse: {err}")))?;
    let snapshot = job
        .snapshot
        .as_ref()
        .map_err(|err| not_replayed(err.clone()))?;
    let info = &recorded.decision.snapshot;
    let policies = snapshot.policies();
    if job.recorded_policies {
        if policies.version() != info.policy_version {
            return Err(not_replayed(format!(
                "the entry names policy version {} but its search column says {}",
                info.policy_version,
                policies.version()
            )));
        }
        if policies.digest() != info.policy_digest {
            return Err(not_replayed(format!(
                "policy version {} in the store has digest {}…, but the decision was made with {}…",
                info.policy_version,
                short(policies.digest()),
                short(&info.policy_digest)
            )));
        }
    }
    let request = request_from_value(recorded.request.clone())
        .map_err(|err| not_replayed(format!("the recorded request does not parse: {err}")))?;
    let options = DecideOptions {
        now: recorded.decision.decided_at,
        decision_id: recorded.decision.id.clone(),
        explain: true,
    };
    let replayed = snapshot.decide(&request, &options);
    let summary = Summary {
        subject: request.subject.entity.to_string(),
        action: request.action.name.clone(),
        resource: request.resource.entity.to_string(),
    };
    Ok(Replayed {
        seq: job.seq,
        recorded,
        summary,
        replayed,
    })
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
