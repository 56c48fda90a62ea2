//! The bar from issue 4: a recorded log of at least 100,000 decisions, made over a generated
//! NHI workload while its inventory and active policy version change, replays with 100% of
//! outcomes reproduced. Prints how long recording and replaying took.

use crate::fixture::{entities_as_groups, sources, Server};
use arbiter_core::{EntityRef, Lifecycle, Outcome};
use arbiter_engine::{DecideOptions, PolicySet};
use arbiter_replay::{impact, replay, Candidate, ReplayOptions};
use arbiter_store::Store;
use arbiter_testkit::{generate, WorkloadConfig};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

const CONFIG: WorkloadConfig = WorkloadConfig {
    seed: 0x5EED_4005,
    identities: 3_000,
    groups: 60,
    resources: 400,
    policies: 60,
};

const DECISIONS: usize = 100_000;
const ROUNDS: usize = 10;

/// Appended, so the generated policies keep their ids (`policy0`, `policy1`, …).
const V2_EXTRA: &str = r#"
@id("night-freeze")
forbid(principal, action in Action::"mutating", resource)
when { context.hour < 6 };
"#;

/// The what-if candidate, tried on the last round (decided with version 1).
const CANDIDATE_EXTRA: &str = r#"
@id("admin-needs-mfa")
forbid(principal, action in Action::"admin", resource)
unless { context.mfa };
"#;

#[test]
fn replay_of_100k_recorded_decisions_reproduces_every_outcome() {
    let workload = generate(&CONFIG);
    let document = workload.inventory_document();
    let actions = entities_as_groups(&workload.action_entities());
    let v1 = sources("generated.cedar", &workload.policies_text);
    let started = Instant::now();
    let mut server = Server::bootstrap(v1, &document, &actions, None);
    server.keep_made = false;
    let v2 = server.upload(sources(
        "generated.cedar",
        &format!("{}\n{V2_EXTRA}", workload.policies_text),
    ));
    let requests: Vec<_> = workload
        .requests(CONFIG.seed + 1, DECISIONS)
        .iter()
        .map(|request| request.to_decision_request())
        .collect();
    let identities: Vec<EntityRef> = workload.identities().collect();
    let per_round = DECISIONS / ROUNDS;
    let t0 = 1_767_225_000;
    let mut n_decisions = 0;
    let mut allowed = 0;
    let candidate = sources(
        "generated.cedar",
        &format!("{}\n{CANDIDATE_EXTRA}", workload.policies_text),
    );
    let compiled = Arc::new(PolicySet::compile(candidate.clone(), None, 0).unwrap());
    let mut expected_changes = BTreeSet::new();
    for (round, chunk) in requests.chunks(per_round).enumerate() {
        // Between rounds the world changes: identities contained and reinstated, memberships
        // moved, a version activated and rolled back.
        let someone = &identities[(round * 37) % identities.len()];
        match round {
            1 | 4 | 7 => server.set_lifecycle(someone, Lifecycle::Quarantined),
            2 | 6 | 9 => {
                let mut identity = server.store.get_identity(someone).unwrap();
                identity.member_of.rotate_left(1);
                identity.member_of.pop();
                server.put_identity(&identity);
            }
            3 => server.activate(v2),
            8 => server.activate(1),
            _ => {}
        }
        if round == 5 {
            let earlier = &identities[37 % identities.len()];
            server.set_lifecycle(earlier, Lifecycle::Active);
        }
        let now = t0 + round as i64 * 60;
        if round == ROUNDS - 1 {
            // The candidate's effect on this round, by direct re-evaluation on the very
            // snapshot the round is decided on. Ids follow the fixture's `d-<n>` numbering.
            let candidate_snapshot = server.snapshot.with_policies(Arc::clone(&compiled));
            let recorded = server.snapshot.as_ref().clone();
            for (idx, request) in chunk.iter().enumerate() {
                let options = DecideOptions {
                    now,
                    decision_id: format!("d-{}", round * per_round + idx + 1),
                    explain: false,
                };
                let before = recorded.decide(request, &options).outcome;
                let after = candidate_snapshot.decide(request, &options).outcome;
                if before != after {
                    expected_changes.insert(options.decision_id);
                }
            }
        }
        let outcomes = server.decide(chunk, now);
        n_decisions += outcomes.len();
        allowed += outcomes
            .iter()
            .filter(|outcome| **outcome == Outcome::Allow)
            .count();
    }
    let log = server.finish();
    let recorded = started.elapsed();
    let log_bytes = std::fs::metadata(server.log_path()).unwrap().len();
    assert!(n_decisions >= 100_000);
    // A log of nothing but denials would prove little.
    assert!(
        allowed > n_decisions / 20,
        "{allowed} of {n_decisions} allowed"
    );

    let started = Instant::now();
    let report = replay(&server.store, &log, &ReplayOptions::default(), None).unwrap();
    let replayed = started.elapsed();
    eprintln!(
        "recorded {n_decisions} decisions ({allowed} allowed) in {:.1} s, log {:.0} MB ({} bytes per decision); \
         replayed in {:.1} s ({:.0} decisions/s, {} states, policy versions {:?}): {} reproduced, {} mismatched, {} not replayable",
        recorded.as_secs_f64(),
        log_bytes as f64 / 1e6,
        log_bytes / n_decisions as u64,
        replayed.as_secs_f64(),
        n_decisions as f64 / replayed.as_secs_f64(),
        report.states,
        report.policy_versions,
        report.reproduced,
        report.mismatched,
        report.unreplayable,
    );
    assert_eq!(report.total, n_decisions as u64);
    assert!(report.all_reproduced(), "{report:#?}");
    assert_eq!(report.policy_versions, vec![1, 2]);
    assert_eq!(report.states, ROUNDS as u64);

    // What-if on the last round: exactly the decisions the direct re-evaluation changed.
    let started = Instant::now();
    let options = ReplayOptions {
        since: Some(t0 + (ROUNDS as i64 - 1) * 60),
        ..ReplayOptions::default()
    };
    let report = impact(
        &server.store,
        &log,
        &Candidate::Sources(candidate),
        &options,
        None,
    )
    .unwrap();
    eprintln!(
        "what-if over {} decisions in {:.1} s: {} would change",
        report.total,
        started.elapsed().as_secs_f64(),
        report.changed
    );
    assert_eq!(report.total, per_round as u64);
    let found: BTreeSet<String> = report
        .changed_decisions
        .iter()
        .map(|changed| changed.decision_id.clone())
        .collect();
    assert!(!expected_changes.is_empty());
    assert_eq!(found, expected_changes);
}
