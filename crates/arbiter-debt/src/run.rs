//! A whole report from a store and a log, as the CLI, the server and the benchmark compute it.

use crate::report::{analyse, Inputs, Report};
use crate::suggest::{check, propose, propose_memberships};
use crate::{DebtError, Grants, Progress, Thresholds, Usage, DAY};
use arbiter_engine::PolicySource;
use arbiter_log::LogDb;
use arbiter_store::Store;

/// How much of the report to compute.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Suggestions for at most this many over-privileged identities, worst first (0: none):
    /// a policy suggestion and a membership suggestion each, where there is something to
    /// propose. Each is checked by a what-if replay of the usage window, the costly part.
    pub suggestions: usize,
    /// Whether to check the suggestions by replay.
    pub check: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            suggestions: 10,
            check: true,
        }
    }
}

/// The active policy version's number and sources (0 and none before any is active).
pub fn active_sources(store: &dyn Store) -> Result<(u64, Vec<PolicySource>), DebtError> {
    let Some(version) = store.active_policy_version()? else {
        return Ok((0, Vec::new()));
    };
    let stored = store.get_policy_version(version)?;
    let sources = stored
        .sources
        .into_iter()
        .map(|source| PolicySource {
            name: source.name,
            text: source.text,
        })
        .collect();
    Ok((version, sources))
}

/// Computes the report at `now` from the store's inventory and active policies and the whole
/// log, reporting progress.
pub fn compute(
    store: &dyn Store,
    log: &LogDb,
    thresholds: &Thresholds,
    now: i64,
    options: RunOptions,
    progress: Option<Progress<'_>>,
) -> Result<Report, DebtError> {
    let inventory = store.load_inventory()?;
    let (version, sources) = active_sources(store)?;
    let grants = Grants::parse(&sources)?;
    let window_start = now - thresholds.usage_window_days * DAY;
    let mut usage = Usage::new(window_start, grants.approval_policies.clone());
    usage.read_log(log, progress)?;
    let mut report = analyse(
        Inputs {
            inventory: &inventory,
            grants: &grants,
            thresholds,
            now,
        },
        &usage,
        progress,
    );
    if options.suggestions > 0 {
        let mut suggestions = propose(
            &report,
            &usage,
            &grants,
            &sources,
            version,
            options.suggestions,
        )?;
        suggestions.extend(propose_memberships(
            &report,
            &inventory,
            version,
            options.suggestions,
        ));
        if options.check {
            check(
                &mut suggestions,
                store,
                log,
                thresholds.usage_window_days,
                window_start,
                progress,
            )?;
        }
        report.suggestions = suggestions;
    }
    Ok(report)
}
