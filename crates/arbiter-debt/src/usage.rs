//! What each identity actually did, aggregated from the decision log's search columns.
//!
//! Strings are interned as they stream by and the JSON array columns are parsed once per
//! distinct text (a cache), so memory grows with distinct identities, actions, resources and
//! policy combinations, not with decisions.

use crate::{DebtError, Progress};
use arbiter_log::{DecisionColumns, LogDb, LogError};
use serde::Serialize;
use smol_str::SmolStr;
use std::sync::Arc;

// A scan of millions of rows is mostly hash lookups: a fast hasher for interned ids (not
// attacker-chosen hash-flooding input: the keys are names from our own log), and names up to
// 23 bytes stored inside the table (`SmolStr`), so a lookup does not chase a pointer to the heap.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An interned name: an identity, action, resource or policy id.
type Name = u32;

/// No name (a route with no delegating origin).
const NONE: Name = Name::MAX;

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<SmolStr, Name>,
    names: Vec<Box<str>>,
}

impl Interner {
    fn intern(&mut self, text: &str) -> Name {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.names.len() as Name;
        self.names.push(text.into());
        self.ids.insert(SmolStr::new(text), id);
        id
    }

    fn get(&self, text: &str) -> Option<Name> {
        self.ids.get(text).copied()
    }

    fn name(&self, id: Name) -> &str {
        self.names.get(id as usize).map(AsRef::as_ref).unwrap_or("")
    }
}

/// One identity's recorded activity.
#[derive(Debug, Default, Clone)]
pub struct PrincipalUsage {
    /// Decisions with it as the subject, over the whole log.
    pub decisions: u64,
    /// The last time it was seen, as the subject or as a hop of a delegation chain.
    pub last_at: Option<i64>,
    /// Decisions with it as the subject inside the usage window.
    pub window_decisions: u64,
    /// Of those, allowed.
    pub window_allowed: u64,
    /// Of the allowed, allowed through an approval (a determining `@approval` policy).
    pub window_approved: u64,
    /// Determining policies of its allowed decisions in the window, with the actions each
    /// allowed.
    policy_actions: HashMap<Name, HashSet<Name>>,
    /// Resources it was decided on in the window.
    resources: HashSet<Name>,
    /// Resources allowed to it in the window by standing permits (no approval involved).
    standing: HashSet<Name>,
    /// The hop directly before it in delegation chains (who used it).
    delegators: HashSet<Name>,
    /// Distinct (chain origin, resource) routes it was decided on in the window.
    routes: HashSet<(Name, Name)>,
}

/// Usage of every identity seen in the log.
#[derive(Debug, Default)]
pub struct Usage {
    /// Decisions read.
    pub decisions: u64,
    /// Decisions read inside the usage window.
    pub window_decisions: u64,
    /// The earliest decision's time.
    pub first_at: Option<i64>,
    /// The latest decision's time.
    pub last_at: Option<i64>,
    /// The last log position read (a later scan can resume after it).
    pub last_seq: u64,
    /// Start of the usage window (seconds since the Unix epoch).
    pub window_start: i64,
    names: Interner,
    principals: HashMap<Name, PrincipalUsage>,
    lists: HashMap<Box<str>, Arc<[Name]>>,
    approval_policies: HashSet<Name>,
}

/// Rows between progress reports.
const PROGRESS_EVERY: u64 = 250_000;

impl Usage {
    /// An empty aggregate whose window starts at `window_start`; a decision determined by one
    /// of `approval_policies` counts as approved, not standing.
    pub fn new(window_start: i64, approval_policies: impl IntoIterator<Item = String>) -> Self {
        let mut usage = Self {
            window_start,
            ..Self::default()
        };
        usage.approval_policies = approval_policies
            .into_iter()
            .map(|policy| usage.names.intern(&policy))
            .collect();
        usage
    }

    /// Reads every decision of `log` after `usage.last_seq` into `usage`, reporting progress.
    pub fn read_log(
        &mut self,
        log: &LogDb,
        progress: Option<Progress<'_>>,
    ) -> Result<(), DebtError> {
        let total = log.len()?;
        let mut since_report = 0u64;
        log.scan_decision_columns(self.last_seq, |columns| {
            self.add(&columns);
            since_report += 1;
            if since_report >= PROGRESS_EVERY {
                since_report = 0;
                if let Some(progress) = progress {
                    progress("usage", columns.seq, total);
                }
            }
            Ok::<(), LogError>(())
        })?;
        if let Some(progress) = progress {
            progress("usage", total, total);
        }
        Ok(())
    }

    /// Adds one decision.
    pub fn add(&mut self, columns: &DecisionColumns<'_>) {
        self.decisions += 1;
        self.last_seq = self.last_seq.max(columns.seq);
        self.first_at = Some(self.first_at.map_or(columns.at, |at| at.min(columns.at)));
        self.last_at = Some(self.last_at.map_or(columns.at, |at| at.max(columns.at)));
        let in_window = columns.at >= self.window_start;
        self.window_decisions += u64::from(in_window);
        let subject = self.names.intern(columns.principal);
        let hops = self.list(columns.entities);
        // Every hop of a chain acted, so none of them is dormant.
        for &hop in hops.iter() {
            let seen = self.principals.entry(hop).or_default();
            seen.last_at = Some(seen.last_at.map_or(columns.at, |at| at.max(columns.at)));
        }
        let delegator = hops
            .len()
            .checked_sub(2)
            .and_then(|idx| hops.get(idx))
            .copied();
        let origin = if hops.len() > 1 {
            hops.first().copied().unwrap_or(NONE)
        } else {
            NONE
        };
        let allowed = columns.outcome == "allow";
        let (policies, action, resource) = if in_window {
            let policies = if allowed {
                self.list(columns.policies)
            } else {
                Arc::default()
            };
            (
                policies,
                self.names.intern(columns.action),
                self.names.intern(columns.resource),
            )
        } else {
            (Arc::default(), NONE, NONE)
        };
        let approved = policies
            .iter()
            .any(|policy| self.approval_policies.contains(policy));
        let usage = self.principals.entry(subject).or_default();
        usage.decisions += 1;
        usage.last_at = Some(usage.last_at.map_or(columns.at, |at| at.max(columns.at)));
        if let Some(delegator) = delegator {
            usage.delegators.insert(delegator);
        }
        if !in_window {
            return;
        }
        usage.window_decisions += 1;
        usage.resources.insert(resource);
        usage.routes.insert((origin, resource));
        if allowed {
            usage.window_allowed += 1;
            if approved {
                usage.window_approved += 1;
            } else {
                usage.standing.insert(resource);
            }
            for &policy in policies.iter() {
                usage
                    .policy_actions
                    .entry(policy)
                    .or_default()
                    .insert(action);
            }
        }
    }

    /// The interned names of a JSON array column, parsed once per distinct text.
    fn list(&mut self, text: &str) -> Arc<[Name]> {
        if let Some(names) = self.lists.get(text) {
            return names.clone();
        }
        let parsed: Vec<String> = serde_json::from_str(text).unwrap_or_default();
        let names: Arc<[Name]> = parsed.iter().map(|name| self.names.intern(name)).collect();
        self.lists.insert(text.into(), names.clone());
        names
    }

    /// The activity of `entity` (`Type::"id"`), if it was ever seen.
    pub fn principal(&self, entity: &str) -> Option<&PrincipalUsage> {
        self.names
            .get(entity)
            .and_then(|name| self.principals.get(&name))
    }

    /// Identities seen.
    pub fn principals(&self) -> usize {
        self.principals.len()
    }

    /// Policies that determined an allow of `entity` in the window, each with the actions it
    /// allowed, sorted.
    pub fn used_policies(&self, entity: &str) -> Vec<(String, Vec<String>)> {
        let Some(usage) = self.principal(entity) else {
            return Vec::new();
        };
        let mut used: Vec<(String, Vec<String>)> = usage
            .policy_actions
            .iter()
            .map(|(policy, actions)| {
                let mut actions: Vec<String> = actions
                    .iter()
                    .map(|action| self.names.name(*action).to_owned())
                    .collect();
                actions.sort();
                (self.names.name(*policy).to_owned(), actions)
            })
            .collect();
        used.sort();
        used
    }

    /// Every policy that determined an allow of anyone in the window, sorted.
    pub fn all_used_policies(&self) -> Vec<&str> {
        let used: HashSet<Name> = self
            .principals
            .values()
            .flat_map(|usage| usage.policy_actions.keys().copied())
            .collect();
        let mut names: Vec<&str> = used.into_iter().map(|name| self.names.name(name)).collect();
        names.sort_unstable();
        names
    }

    /// Resources `entity` was decided on in the window, sorted.
    pub fn resources(&self, entity: &str) -> Vec<&str> {
        self.names_of(entity, |usage| &usage.resources)
    }

    /// Resources allowed to `entity` in the window with no approval involved, sorted.
    pub fn standing_resources(&self, entity: &str) -> Vec<&str> {
        self.names_of(entity, |usage| &usage.standing)
    }

    /// Identities that delegated to `entity` (the hop before it), sorted.
    pub fn delegators(&self, entity: &str) -> Vec<&str> {
        self.names_of(entity, |usage| &usage.delegators)
    }

    /// Distinct (origin, resource) routes `entity` took in the window that `keep` keeps,
    /// sorted; the origin is empty when it acted on its own.
    pub fn routes(&self, entity: &str, keep: impl Fn(&str, &str) -> bool) -> Vec<(&str, &str)> {
        let Some(usage) = self.principal(entity) else {
            return Vec::new();
        };
        // Filtered before sorting: most identities take many routes and few are kept.
        let mut routes: Vec<(&str, &str)> = usage
            .routes
            .iter()
            .map(|(origin, resource)| (self.names.name(*origin), self.names.name(*resource)))
            .filter(|(origin, resource)| keep(origin, resource))
            .collect();
        routes.sort_unstable();
        routes
    }

    fn names_of(&self, entity: &str, set: impl Fn(&PrincipalUsage) -> &HashSet<Name>) -> Vec<&str> {
        let Some(usage) = self.principal(entity) else {
            return Vec::new();
        };
        let mut names: Vec<&str> = set(usage)
            .iter()
            .map(|name| self.names.name(*name))
            .collect();
        names.sort_unstable();
        names
    }
}

/// The usage figures a report shows about its input.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct UsageSummary {
    /// Decisions read.
    pub decisions: u64,
    /// Of those, inside the usage window.
    pub window_decisions: u64,
    /// Identities seen.
    pub principals: u64,
    /// The earliest decision's time.
    pub first_at: Option<i64>,
    /// The latest decision's time.
    pub last_at: Option<i64>,
    /// Start of the usage window.
    pub window_start: i64,
}

impl Usage {
    /// The figures for a report.
    pub fn summary(&self) -> UsageSummary {
        UsageSummary {
            decisions: self.decisions,
            window_decisions: self.window_decisions,
            principals: self.principals.len() as u64,
            first_at: self.first_at,
            last_at: self.last_at,
            window_start: self.window_start,
        }
    }
}
