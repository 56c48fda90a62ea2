//! The demo bundle (with its schema) living through changes: an identity quarantined and
//! reinstated, a group membership granted, a signal updated, time passing beyond a signal's
//! lifetime, version 2 activated and rolled back. Decisions are made before and after each.

use crate::fixture::{sources, Server};
use arbiter_core::{
    parse_request, DecisionRequest, EntityRef, Identity, InventoryDocument, Lifecycle, Outcome,
    RequestLimits, Signal,
};
use arbiter_engine::{DecideOptions, PolicySet, Schema};
use arbiter_log::{DecisionEntry, Entry};
use arbiter_replay::{impact, replay, Candidate, ReplayOptions};
use arbiter_store::{SqliteStore, Store};
use std::collections::BTreeSet;

const POLICIES: &str = include_str!("../../../../examples/demo/policies.cedar");
const INVENTORY: &str = include_str!("../../../../examples/demo/inventory.json");
const SCHEMA: &str = include_str!("../../../../examples/demo/schema.cedarschema");
const REQUESTS: &str = include_str!("../../../../examples/demo/requests.jsonl");

/// Version 2: destructive tools are denied outright, and nothing deploys to production.
const V2_EXTRA: &str = r#"
@id("no-destructive-tools")
forbid(principal, action == Action::"call_tool", resource)
when { resource.destructive };

@id("no-prod-deploys")
forbid(principal, action == Action::"deploy", resource)
when { resource.env == "prod" };
"#;

/// The signals in the demo inventory were observed at this time, good for an hour.
const OBSERVED: i64 = 1_767_225_000;

/// What the tampered store does instead of the quarantine.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Faithful,
    /// The quarantine of `support-copilot` is replaced by a write that changes nothing, so the
    /// feed keeps its numbering but the state differs.
    WithoutQuarantine,
}

fn schema() -> Schema {
    Schema::parse("schema.cedarschema", SCHEMA).unwrap()
}

fn requests() -> Vec<DecisionRequest> {
    let mut requests: Vec<DecisionRequest> = REQUESTS
        .lines()
        .filter_map(|line| parse_request(line, RequestLimits::default()).ok())
        .collect();
    for (who, what) in [
        ("Human::bob", "customer-pii"),
        ("Human::alice", "customer-pii"),
    ] {
        let (kind, id) = who.split_once("::").unwrap();
        let text = format!(
            r#"{{"subject":{{"type":"{kind}","id":"{id}"}},"action":{{"name":"read"}},"resource":{{"type":"Dataset","id":"{what}"}}}}"#
        );
        requests.push(parse_request(&text, RequestLimits::default()).unwrap());
    }
    assert_eq!(requests.len(), 11);
    requests
}

fn copilot() -> EntityRef {
    EntityRef::new("Agent", "support-copilot")
}

/// Runs the scenario and returns the server, its log closed.
fn run(variant: Variant) -> (Server, arbiter_log::LogDb) {
    let document: InventoryDocument = serde_json::from_str(INVENTORY).unwrap();
    let mut server = Server::bootstrap(
        sources("policies.cedar", POLICIES),
        &document,
        &[],
        Some(schema()),
    );
    let v2 = server.upload(sources(
        "policies.cedar",
        &format!("{POLICIES}\n{V2_EXTRA}"),
    ));
    assert_eq!(v2, 2);
    let requests = requests();
    let t0 = OBSERVED + 100;
    server.decide(&requests, t0);

    match variant {
        Variant::Faithful => server.set_lifecycle(&copilot(), Lifecycle::Quarantined),
        Variant::WithoutQuarantine => {
            let unchanged = server.store.get_identity(&copilot()).unwrap();
            server.put_identity(&unchanged);
        }
    }
    server.decide(&requests, t0 + 60);

    server.set_lifecycle(&copilot(), Lifecycle::Active);
    let mut bob: Identity = server
        .store
        .get_identity(&EntityRef::new("Human", "bob"))
        .unwrap();
    bob.member_of.push(EntityRef::new("Group", "data-stewards"));
    server.put_identity(&bob);
    server.decide(&requests, t0 + 120);

    server.put_signal(&Signal {
        subject: EntityRef::new("Agent", "triage-agent"),
        name: "risk_score".into(),
        value: 20.into(),
        source: "acme-siem".into(),
        observed_at: OBSERVED + 150,
        ttl_seconds: 3600,
    });
    server.decide(&requests, t0 + 180);

    server.activate(v2);
    server.decide(&requests, t0 + 240);

    server.activate(1);
    server.decide(&requests, t0 + 300);

    // Past the copilot's signal lifetime: its tool calls now fail closed.
    server.decide(&requests, OBSERVED + 4000);
    let log = server.finish();
    (server, log)
}

fn options() -> ReplayOptions {
    ReplayOptions {
        schema: Some(schema()),
        list_limit: 1000,
        ..ReplayOptions::default()
    }
}

#[test]
fn replay_reproduces_every_decision_before_and_after_each_change() {
    let (server, log) = run(Variant::Faithful);
    let outcomes: BTreeSet<(String, &str)> = server
        .made
        .iter()
        .map(|made| {
            (
                made.request.subject.entity.id.clone(),
                made.decision.outcome.as_str(),
            )
        })
        .collect();
    // The scenario really moves: the copilot is allowed, contained, and stale; bob gains a read.
    for expected in [
        ("support-copilot", "allow"),
        ("support-copilot", "deny"),
        ("support-copilot", "approval_required"),
        ("bob", "allow"),
        ("bob", "deny"),
        ("triage-agent", "allow"),
        ("triage-agent", "deny"),
        ("deploy-bot", "allow"),
    ] {
        assert!(
            outcomes.contains(&(expected.0.to_owned(), expected.1)),
            "{expected:?} never happened: {outcomes:?}"
        );
    }

    let calls = std::sync::Mutex::new(Vec::new());
    let progress = |done: u64, total: u64| calls.lock().unwrap().push((done, total));
    let report = replay(&server.store, &log, &options(), Some(&progress)).unwrap();

    assert_eq!(report.total, server.made.len() as u64, "{report:#?}");
    assert_eq!(report.reproduced, report.total, "{report:#?}");
    assert!(report.all_reproduced());
    assert_eq!(report.mismatched, 0);
    assert_eq!(report.unreplayable, 0);
    assert_eq!(report.policy_versions, vec![1, 2]);
    // Seven rounds of decisions on six states: the last round only lets time pass.
    assert_eq!(report.states, 6);
    let calls = calls.into_inner().unwrap();
    assert_eq!(calls.last(), Some(&(report.total, report.total)));
}

#[test]
fn replay_on_a_store_with_a_different_history_reports_exactly_the_decisions_that_differ() {
    let (faithful, log) = run(Variant::Faithful);
    let (other, _other_log) = run(Variant::WithoutQuarantine);
    // The decisions the other history would have made differently, pairwise.
    let expected: BTreeSet<String> = faithful
        .made
        .iter()
        .zip(&other.made)
        .filter(|(a, b)| {
            assert_eq!(a.decision.id, b.decision.id);
            let policies = |made: &crate::fixture::Made| {
                let mut ids: Vec<String> = made
                    .decision
                    .determining
                    .iter()
                    .map(|policy| policy.id.clone())
                    .collect();
                ids.sort();
                ids
            };
            a.decision.outcome != b.decision.outcome || policies(a) != policies(b)
        })
        .map(|(a, _)| a.decision.id.clone())
        .collect();
    assert!(!expected.is_empty());

    let report = replay(&other.store, &log, &options(), None).unwrap();
    let found: BTreeSet<String> = report
        .mismatches
        .iter()
        .map(|mismatch| mismatch.decision_id.clone())
        .collect();
    assert_eq!(found, expected, "{report:#?}");
    assert_eq!(report.mismatched, expected.len() as u64);
    assert_eq!(report.reproduced + report.mismatched, report.total);
    assert!(!report.all_reproduced());
    let mismatch = &report.mismatches[0];
    assert_eq!(mismatch.subject, copilot().to_string());
    assert_eq!(mismatch.recorded.outcome, Outcome::Deny);
    assert!(
        mismatch.recorded.reason_admin.contains("quarantined"),
        "{mismatch:#?}"
    );
    assert_ne!(mismatch.replayed.outcome, Outcome::Deny);
}

/// The outcome each made decision gets under `candidate`, re-evaluated directly on the very
/// snapshot it was made on (not through the replay's rebuilt state).
fn changed_under(server: &Server, candidate: &std::sync::Arc<PolicySet>) -> BTreeSet<String> {
    server
        .made
        .iter()
        .filter(|made| {
            let options = DecideOptions {
                now: made.decision.decided_at,
                decision_id: made.decision.id.clone(),
                explain: false,
            };
            let again = made
                .snapshot
                .with_policies(std::sync::Arc::clone(candidate))
                .decide(&made.request, &options);
            again.outcome != made.decision.outcome
        })
        .map(|made| made.decision.id.clone())
        .collect()
}

#[test]
fn what_if_lists_exactly_the_decisions_a_candidate_changes() {
    let (server, log) = run(Variant::Faithful);
    let options = ReplayOptions {
        examples: 2,
        ..options()
    };

    // A stored, inactive version (2 is inactive again after the rollback).
    let v2 = std::sync::Arc::new(
        PolicySet::compile(
            sources("policies.cedar", &format!("{POLICIES}\n{V2_EXTRA}")),
            options.schema.as_ref(),
            2,
        )
        .unwrap(),
    );
    let expected = changed_under(&server, &v2);
    let report = impact(&server.store, &log, &Candidate::Version(2), &options, None).unwrap();
    let found: BTreeSet<String> = report
        .changed_decisions
        .iter()
        .map(|changed| changed.decision_id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(found, expected, "{report:#?}");
    assert_eq!(report.changed, expected.len() as u64);
    assert_eq!(report.evaluated, report.total);
    assert_eq!(report.changed + report.unchanged, report.evaluated);
    assert_eq!(report.candidate.version, Some(2));
    assert_eq!(report.candidate.digest, v2.digest());
    let counted: u64 = report.transitions.iter().map(|t| t.count).sum();
    assert_eq!(counted, report.changed);
    let by_subject: u64 = report.by_subject.top.iter().map(|t| t.count).sum();
    assert_eq!(by_subject, report.changed);
    for transition in &report.transitions {
        assert!(transition.examples.len() <= 2);
        for example in &transition.examples {
            assert_eq!(
                (example.recorded.outcome, example.candidate.outcome),
                (transition.from, transition.to)
            );
            assert!(!example.candidate.reason_admin.is_empty());
        }
    }
    // The new forbids are the determining policies of the changes they cause.
    let policies: BTreeSet<&str> = report
        .transitions
        .iter()
        .flat_map(|t| &t.examples)
        .flat_map(|example| example.candidate.determining.iter().map(String::as_str))
        .collect();
    assert!(policies.contains("no-destructive-tools"), "{policies:?}");
    assert!(policies.contains("no-prod-deploys"), "{policies:?}");

    // Candidate sources from files: drop the copilot's tool permit.
    let without_crm: String = POLICIES.replace(
        "@id(\"support-agents-use-crm\")\n@requires_signals(\"risk_score\")\npermit",
        "@id(\"support-agents-use-crm\")\n@requires_signals(\"risk_score\")\nforbid",
    );
    assert_ne!(without_crm, POLICIES);
    let candidate = sources("policies.cedar", &without_crm);
    let compiled = std::sync::Arc::new(
        PolicySet::compile(candidate.clone(), options.schema.as_ref(), 0).unwrap(),
    );
    let expected = changed_under(&server, &compiled);
    let report = impact(
        &server.store,
        &log,
        &Candidate::Sources(candidate),
        &options,
        None,
    )
    .unwrap();
    let found: BTreeSet<String> = report
        .changed_decisions
        .iter()
        .map(|changed| changed.decision_id.clone())
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(found, expected, "{report:#?}");
    assert_eq!(report.candidate.version, None);

    // The active version as its own candidate changes only what version 2 decided.
    let v1 = std::sync::Arc::new(
        PolicySet::compile(
            sources("policies.cedar", POLICIES),
            options.schema.as_ref(),
            1,
        )
        .unwrap(),
    );
    let expected = changed_under(&server, &v1);
    let report = impact(&server.store, &log, &Candidate::Version(1), &options, None).unwrap();
    let found: BTreeSet<String> = report
        .changed_decisions
        .iter()
        .map(|changed| changed.decision_id.clone())
        .collect();
    assert_eq!(found, expected);
    assert!(server
        .made
        .iter()
        .filter(|made| found.contains(&made.decision.id))
        .all(|made| made.decision.snapshot.policy_version == 2));
}

#[test]
fn entries_that_cannot_be_replayed_are_reported_never_skipped() {
    let document: InventoryDocument = serde_json::from_str(INVENTORY).unwrap();
    let mut server = Server::bootstrap(
        sources("policies.cedar", POLICIES),
        &document,
        &[],
        Some(schema()),
    );
    let requests = requests();
    server.decide(&requests, OBSERVED + 100);
    let first = server.made[0].decision.clone();
    // Forged entries: a digest the stored version does not have, a version the store never
    // had, a position beyond the store's feed, a request that does not parse.
    let forge = |edit: &dyn Fn(&mut DecisionEntry), id: &str| {
        let mut entry = DecisionEntry {
            endpoint: "evaluation".into(),
            caller: None,
            request: requests[0].to_value(),
            owner: None,
            decision: first.clone(),
            latency_us: 0,
            redacted: Vec::new(),
            approval: None,
        };
        entry.decision.id = id.to_owned();
        edit(&mut entry);
        Entry::Decision(Box::new(entry))
    };
    server.append_raw(forge(
        &|entry| entry.decision.snapshot.policy_digest = "00".repeat(32),
        "forged-digest",
    ));
    server.append_raw(forge(
        &|entry| entry.decision.snapshot.policy_version = 9,
        "forged-version",
    ));
    server.append_raw(forge(
        &|entry| entry.decision.snapshot.change_seq = 10_000,
        "forged-position",
    ));
    server.append_raw(forge(
        &|entry| entry.request = serde_json::json!({"subject": 1}),
        "forged-request",
    ));
    let log = server.finish();

    let report = replay(&server.store, &log, &options(), None).unwrap();
    assert_eq!(report.total, requests.len() as u64 + 4);
    assert_eq!(report.reproduced, requests.len() as u64, "{report:#?}");
    assert_eq!(report.mismatched, 0);
    assert_eq!(report.unreplayable, 4);
    assert!(!report.all_reproduced());
    let reason = |id: &str| {
        report
            .unreplayable_entries
            .iter()
            .find(|entry| entry.decision_id == id)
            .map(|entry| entry.reason.clone())
            .unwrap_or_default()
    };
    assert!(reason("forged-digest").contains("digest"), "{report:#?}");
    assert!(reason("forged-version").contains("policy version 9 is not in the store"));
    assert!(reason("forged-position").contains("feed ends at"));
    assert!(reason("forged-request").contains("does not parse"));
    assert_eq!(
        report
            .unreplayable_reasons
            .iter()
            .map(|t| t.count)
            .sum::<u64>(),
        4
    );

    // Against a store that is not the one the decisions were made on, nothing replays, and
    // every entry says so.
    let empty_dir = tempfile::tempdir().unwrap();
    let empty = SqliteStore::open(empty_dir.path().join("arbiter.sqlite3")).unwrap();
    let report = replay(&empty, &log, &options(), None).unwrap();
    assert_eq!(report.unreplayable, report.total);
    assert_eq!(report.reproduced, 0);
    assert!(report
        .unreplayable_reasons
        .iter()
        .any(|tally| tally.key.contains("feed ends at 0")));
}

#[test]
fn since_and_until_select_by_decision_time() {
    let (server, log) = run(Variant::Faithful);
    let t0 = OBSERVED + 100;
    let options = ReplayOptions {
        since: Some(t0 + 120),
        until: Some(t0 + 240),
        ..options()
    };
    let report = replay(&server.store, &log, &options, None).unwrap();
    let expected = server
        .made
        .iter()
        .filter(|made| (t0 + 120..t0 + 240).contains(&made.decision.decided_at))
        .count();
    assert_eq!(report.total, expected as u64);
    assert!(report.all_reproduced(), "{report:#?}");
}

#[test]
fn decisions_pruned_by_retention_are_counted_apart() {
    let (server, log) = run(Variant::Faithful);
    drop(log);
    // Prune the first round: its bodies go, its columns and leaves stay.
    let first_round = requests().len() as u64;
    let mut writable = arbiter_log::LogDb::open(&server.log_path()).unwrap();
    let mut through = 0;
    let mut seen = 0;
    writable
        .scan(1, u64::MAX, |row| {
            if seen < first_round {
                through = row.seq;
                seen += u64::from(row.columns.kind == "decision");
            }
            Ok(())
        })
        .unwrap();
    assert!(writable.prune(1, through, OBSERVED).unwrap() > 0);
    drop(writable);
    let log = arbiter_log::LogDb::open_read_only(&server.log_path()).unwrap();
    let report = replay(&server.store, &log, &options(), None).unwrap();
    assert_eq!(report.pruned, first_round);
    assert_eq!(report.total, server.made.len() as u64 - first_round);
    assert!(report.all_reproduced(), "{report:#?}");
}
