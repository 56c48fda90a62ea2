//! The bar of issue 6: a generated inventory and decision history with planted problems of
//! every kind; every planted finding is reported with its OWASP item and evidence, and none on
//! clean identities (precision and recall 100% on the fixture).

use crate::fixture::{actor, records, request, sources, Server};
use arbiter_core::{EntityRef, Identity, InventoryDocument};
use arbiter_debt::{
    analyse, suggest, FindingKind, Grants, Inputs, MembershipBase, Owasp, Report, SuggestionChange,
    SuggestionKind, Thresholds, Usage,
};
use arbiter_engine::PolicySet;
use arbiter_log::LogDb;
use arbiter_replay::{impact, replay, Candidate, ReplayOptions};
use arbiter_store::Store;
use serde_json::json;
use std::collections::BTreeSet;

pub(crate) const NOW: i64 = 1_767_225_600; // 2026-01-01
pub(crate) const DAY: i64 = 86_400;

pub(crate) const POLICIES: &str = r#"@id("readers-read")
permit(principal in Role::"readers", action == Action::"read", resource);

@id("deployers-deploy")
permit(principal in Role::"deployers", action == Action::"deploy", resource);

@id("admins-delete")
permit(principal in Role::"admins", action == Action::"delete", resource);

permit(principal == Agent::"overpriv", action in [Action::"read", Action::"write", Action::"delete"], resource);
"#;

fn e(kind: &str, id: &str) -> EntityRef {
    EntityRef::new(kind, id)
}

/// The inventory: clean identities and one or more planted problems per kind.
pub(crate) fn inventory() -> InventoryDocument {
    let recent = NOW - 10 * DAY;
    let readers = json!([{"type": "Role", "id": "readers"}]);
    serde_json::from_value(json!({
        "groups": [
            {"type": "Role", "id": "readers"},
            {"type": "Role", "id": "deployers"},
            {"type": "Role", "id": "admins"}
        ],
        "resources": [
            {"type": "Dataset", "id": "docs", "sensitivity": "internal", "attributes": {"environment": "prod"}},
            {"type": "Dataset", "id": "ledger", "sensitivity": "restricted", "attributes": {"environment": "prod"}},
            {"type": "Dataset", "id": "staging-db", "sensitivity": "internal", "attributes": {"environment": "staging"}},
            {"type": "Tool", "id": "search", "sensitivity": "internal", "attributes": {"environment": "prod"}},
            {"type": "Tool", "id": "deploy", "sensitivity": "confidential", "attributes": {"environment": "prod"}}
        ],
        "identities": [
            {"id": "alice", "kind": "human", "member_of": readers, "attributes": {"team": "payments"}},
            {"id": "bob", "kind": "human", "attributes": {"team": "data"}},
            {"id": "carol", "kind": "human", "lifecycle": "revoked", "attributes": {"team": "payments"}},

            // Clean.
            {"id": "clean-1", "kind": "ai_agent", "owner": "alice", "member_of": readers, "attributes": {"reviewed_at": recent}},
            {"id": "clean-2", "kind": "service_account", "owner": "bob", "member_of": [{"type": "Role", "id": "deployers"}], "attributes": {"reviewed_at": recent}},
            {"id": "w1", "kind": "workload", "owner": "alice", "member_of": readers},
            {"id": "w2", "kind": "workload", "owner": "alice", "member_of": readers},
            {"id": "clean-key", "kind": "credential", "owner": "alice", "attributes": {"credential_type": "oauth_client"},
             "credential": {"holder": {"type": "Agent", "id": "clean-1"}, "issued_at": NOW - 30 * DAY, "rotated_at": recent,
                            "expires_at": NOW + 60 * DAY, "last_used_at": NOW - DAY}},

            // Planted.
            {"id": "dormant", "kind": "ai_agent", "owner": "alice", "member_of": readers},
            {"id": "orphan", "kind": "service_account"},
            {"id": "left-behind", "kind": "ai_agent", "owner": "carol"},
            {"id": "retired", "kind": "service_account", "owner": "alice", "lifecycle": "revoked"},
            {"id": "outlived", "kind": "credential", "owner": "alice",
             "credential": {"holder": {"type": "ServiceAccount", "id": "retired"}, "issued_at": recent, "rotated_at": recent,
                            "expires_at": NOW + 60 * DAY, "last_used_at": NOW - DAY}},
            {"id": "overpriv", "kind": "ai_agent", "owner": "bob", "member_of": [{"type": "Role", "id": "admins"}], "attributes": {"reviewed_at": recent}},
            {"id": "old-key", "kind": "credential", "owner": "alice",
             "credential": {"holder": {"type": "Agent", "id": "clean-1"}, "issued_at": NOW - 200 * DAY,
                            "expires_at": NOW + 30 * DAY, "last_used_at": NOW - DAY}},
            {"id": "forever", "kind": "credential", "owner": "alice",
             "credential": {"holder": {"type": "Agent", "id": "clean-1"}, "issued_at": recent, "last_used_at": NOW - DAY}},
            {"id": "longlived", "kind": "credential", "owner": "bob",
             "credential": {"holder": {"type": "ServiceAccount", "id": "clean-2"}, "issued_at": NOW - 20 * DAY,
                            "expires_at": NOW + 700 * DAY, "last_used_at": NOW - DAY}},
            {"id": "static", "kind": "credential", "owner": "bob", "attributes": {"credential_type": "static_key"},
             "credential": {"holder": {"type": "ServiceAccount", "id": "clean-2"}, "issued_at": recent,
                            "expires_at": NOW + 60 * DAY, "last_used_at": NOW - DAY}},
            {"id": "multienv", "kind": "ai_agent", "owner": "bob", "member_of": readers},
            {"id": "shared", "kind": "service_account", "owner": "alice", "member_of": readers, "attributes": {"reviewed_at": recent}},
            {"id": "human-used", "kind": "ai_agent", "owner": "bob", "member_of": readers},
            {"id": "standing", "kind": "ai_agent", "owner": "alice", "member_of": readers},
            {"id": "unreviewed", "kind": "ai_agent", "owner": "alice", "member_of": readers}
        ],
        "signals": [
            {"subject": {"type": "Agent", "id": "human-used"}, "name": "interactive_login", "value": true,
             "source": "okta", "observed_at": NOW - 3 * DAY, "ttl_seconds": 86400},
            {"subject": {"type": "Agent", "id": "clean-1"}, "name": "risk_score", "value": 5,
             "source": "siem", "observed_at": NOW - DAY, "ttl_seconds": 86400}
        ]
    }))
    .unwrap()
}

/// What is planted: identity → the kinds it must be reported for, with the OWASP item.
pub(crate) fn planted() -> BTreeSet<(String, FindingKind)> {
    [
        ("Agent::\"dormant\"", FindingKind::Dormant),
        ("ServiceAccount::\"orphan\"", FindingKind::Orphaned),
        ("Agent::\"left-behind\"", FindingKind::OwnerOffboarded),
        (
            "Credential::\"outlived\"",
            FindingKind::CredentialOutlivesHolder,
        ),
        ("Agent::\"overpriv\"", FindingKind::OverPrivileged),
        ("Credential::\"old-key\"", FindingKind::Unrotated),
        ("Credential::\"forever\"", FindingKind::NoExpiry),
        ("Credential::\"longlived\"", FindingKind::LongLived),
        ("Credential::\"static\"", FindingKind::StaticCredential),
        ("Agent::\"multienv\"", FindingKind::MultiEnvironment),
        ("ServiceAccount::\"shared\"", FindingKind::Reused),
        ("Agent::\"human-used\"", FindingKind::HumanUse),
        ("Agent::\"standing\"", FindingKind::StandingHighRiskAccess),
        ("Agent::\"unreviewed\"", FindingKind::UnreviewedAutomation),
    ]
    .into_iter()
    .map(|(identity, kind)| (identity.to_owned(), kind))
    .collect()
}

/// Thirty days of traffic (plus one decision 60 days ago), decided by the real engine.
pub(crate) fn record(server: &mut Server) {
    let docs = e("Dataset", "docs");
    let search = e("Tool", "search");
    let at = |days_ago: i64, n: i64| NOW - days_ago * DAY + n * 60;
    // The dormant agent's last decision.
    server.decide(
        &request(&e("Agent", "dormant"), "read", &docs, &[]),
        at(60, 0),
    );
    for day in (1..=28).rev() {
        let mut n = 0;
        let mut go = |server: &mut Server,
                      subject: EntityRef,
                      action: &str,
                      resource: &EntityRef,
                      chain: &[EntityRef]| {
            n += 1;
            server.decide(&request(&subject, action, resource, chain), at(day, n))
        };
        go(server, e("Agent", "clean-1"), "read", &search, &[]);
        go(
            server,
            e("ServiceAccount", "clean-2"),
            "deploy",
            &e("Tool", "deploy"),
            &[],
        );
        go(server, e("Workload", "w1"), "read", &docs, &[]);
        go(server, e("Workload", "w2"), "read", &docs, &[]);
        go(server, e("ServiceAccount", "orphan"), "read", &docs, &[]);
        go(server, e("Agent", "left-behind"), "read", &docs, &[]);
        go(server, e("Agent", "overpriv"), "read", &search, &[]);
        go(server, e("Agent", "multienv"), "read", &docs, &[]);
        go(
            server,
            e("Agent", "multienv"),
            "read",
            &e("Dataset", "staging-db"),
            &[],
        );
        go(
            server,
            e("ServiceAccount", "shared"),
            "read",
            &docs,
            &[e("Workload", "w1")],
        );
        go(
            server,
            e("ServiceAccount", "shared"),
            "read",
            &docs,
            &[e("Workload", "w2")],
        );
        go(server, e("Agent", "human-used"), "read", &docs, &[]);
        go(
            server,
            e("Agent", "standing"),
            "read",
            &e("Dataset", "ledger"),
            &[],
        );
        go(
            server,
            e("Agent", "unreviewed"),
            "read",
            &docs,
            &[e("Human", "alice")],
        );
    }
}

pub(crate) struct Recorded {
    pub(crate) server: Server,
    pub(crate) log: LogDb,
    pub(crate) report: Report,
    pub(crate) usage: Usage,
    pub(crate) grants: Grants,
}

pub(crate) fn recorded() -> Recorded {
    let document = inventory();
    let policies = sources("policies.cedar", POLICIES);
    let mut server = Server::bootstrap(policies.clone(), &document);
    record(&mut server);
    let log = server.finish();
    let thresholds = Thresholds::default();
    let grants = Grants::parse(&policies).unwrap();
    let mut usage = Usage::new(
        NOW - thresholds.usage_window_days * DAY,
        grants.approval_policies.clone(),
    );
    usage.read_log(&log, None).unwrap();
    let inventory = server.store.load_inventory().unwrap();
    let report = analyse(
        Inputs {
            inventory: &inventory,
            grants: &grants,
            thresholds: &thresholds,
            now: NOW,
        },
        &usage,
        None,
    );
    Recorded {
        server,
        log,
        report,
        usage,
        grants,
    }
}

#[test]
fn every_planted_finding_is_reported_and_nothing_else() {
    let Recorded { report, .. } = recorded();
    let reported: BTreeSet<(String, FindingKind)> = report
        .findings
        .iter()
        .map(|finding| (finding.identity.clone(), finding.kind))
        .collect();
    let planted = planted();
    let missed: Vec<_> = planted.difference(&reported).collect();
    let extra: Vec<_> = reported.difference(&planted).collect();
    assert!(missed.is_empty(), "recall below 100%: missed {missed:?}");
    assert!(
        extra.is_empty(),
        "precision below 100%: also reported {extra:?}"
    );
    assert_eq!(
        report.findings.len(),
        planted.len(),
        "one finding per planted problem"
    );
    let clean = [
        "Agent::\"clean-1\"",
        "ServiceAccount::\"clean-2\"",
        "Workload::\"w1\"",
        "Workload::\"w2\"",
        "Credential::\"clean-key\"",
    ];
    for finding in &report.findings {
        assert!(
            !clean.contains(&finding.identity.as_str()),
            "finding on a clean identity: {finding:?}"
        );
        assert_eq!(finding.owasp, finding.kind.owasp());
        assert!(!finding.fix.is_empty() && !finding.summary.is_empty());
    }
    // 19 active non-human identities were analysed (the revoked one is not).
    assert_eq!(report.identities_analysed, 19);
    assert_eq!(report.scores.identities_with_debt, 14);
}

#[test]
fn findings_carry_the_right_owasp_item_and_evidence() {
    let Recorded { report, .. } = recorded();
    let find = |identity: &str, kind: FindingKind| {
        report
            .findings
            .iter()
            .find(|finding| finding.identity == identity && finding.kind == kind)
            .unwrap_or_else(|| panic!("no {kind:?} finding for {identity}"))
            .clone()
    };
    let expect = [
        ("Agent::\"dormant\"", FindingKind::Dormant, Owasp::Nhi1),
        (
            "ServiceAccount::\"orphan\"",
            FindingKind::Orphaned,
            Owasp::Nhi1,
        ),
        (
            "Agent::\"left-behind\"",
            FindingKind::OwnerOffboarded,
            Owasp::Nhi1,
        ),
        (
            "Credential::\"outlived\"",
            FindingKind::CredentialOutlivesHolder,
            Owasp::Nhi1,
        ),
        (
            "Agent::\"overpriv\"",
            FindingKind::OverPrivileged,
            Owasp::Nhi5,
        ),
        (
            "Agent::\"standing\"",
            FindingKind::StandingHighRiskAccess,
            Owasp::Nhi5,
        ),
        (
            "Agent::\"unreviewed\"",
            FindingKind::UnreviewedAutomation,
            Owasp::Nhi5,
        ),
        (
            "Credential::\"old-key\"",
            FindingKind::Unrotated,
            Owasp::Nhi7,
        ),
        (
            "Credential::\"forever\"",
            FindingKind::NoExpiry,
            Owasp::Nhi7,
        ),
        (
            "Credential::\"longlived\"",
            FindingKind::LongLived,
            Owasp::Nhi7,
        ),
        (
            "Credential::\"static\"",
            FindingKind::StaticCredential,
            Owasp::Nhi4,
        ),
        (
            "Agent::\"multienv\"",
            FindingKind::MultiEnvironment,
            Owasp::Nhi8,
        ),
        (
            "ServiceAccount::\"shared\"",
            FindingKind::Reused,
            Owasp::Nhi9,
        ),
        ("Agent::\"human-used\"", FindingKind::HumanUse, Owasp::Nhi10),
    ];
    for (identity, kind, owasp) in expect {
        assert_eq!(find(identity, kind).owasp, owasp, "{identity} {kind:?}");
    }
    let evidence =
        |identity: &str, kind: FindingKind, key: &str| find(identity, kind).evidence[key].clone();
    assert_eq!(
        evidence("Agent::\"dormant\"", FindingKind::Dormant, "last_seen"),
        json!("2025-11-02")
    );
    assert_eq!(
        evidence("Agent::\"dormant\"", FindingKind::Dormant, "idle_days"),
        json!(60)
    );
    assert_eq!(
        evidence(
            "Agent::\"left-behind\"",
            FindingKind::OwnerOffboarded,
            "owner_lifecycle"
        ),
        json!("revoked")
    );
    assert_eq!(
        evidence(
            "Credential::\"outlived\"",
            FindingKind::CredentialOutlivesHolder,
            "holder"
        ),
        json!("ServiceAccount::\"retired\"")
    );
    assert_eq!(
        evidence(
            "Agent::\"overpriv\"",
            FindingKind::OverPrivileged,
            "granted"
        ),
        json!(2)
    );
    assert_eq!(
        evidence("Agent::\"overpriv\"", FindingKind::OverPrivileged, "used"),
        json!(1)
    );
    assert_eq!(
        evidence(
            "Agent::\"overpriv\"",
            FindingKind::OverPrivileged,
            "unused_policies"
        ),
        json!(["admins-delete"])
    );
    assert_eq!(
        evidence(
            "Agent::\"overpriv\"",
            FindingKind::OverPrivileged,
            "unused_roles"
        ),
        json!(["Role::\"admins\""])
    );
    assert_eq!(
        evidence(
            "Credential::\"old-key\"",
            FindingKind::Unrotated,
            "age_days"
        ),
        json!(200)
    );
    assert_eq!(
        evidence(
            "Credential::\"old-key\"",
            FindingKind::Unrotated,
            "issued_at"
        ),
        json!("2025-06-15")
    );
    assert_eq!(
        evidence(
            "Credential::\"longlived\"",
            FindingKind::LongLived,
            "lifetime_days"
        ),
        json!(720)
    );
    assert_eq!(
        evidence(
            "Credential::\"static\"",
            FindingKind::StaticCredential,
            "credential_type"
        ),
        json!("static_key")
    );
    assert_eq!(
        evidence(
            "Agent::\"multienv\"",
            FindingKind::MultiEnvironment,
            "environments"
        ),
        json!(["prod", "staging"])
    );
    assert_eq!(
        evidence(
            "ServiceAccount::\"shared\"",
            FindingKind::Reused,
            "workloads"
        ),
        json!(["Workload::\"w1\"", "Workload::\"w2\""])
    );
    assert_eq!(
        evidence(
            "Agent::\"human-used\"",
            FindingKind::HumanUse,
            "observed_at"
        ),
        json!("2025-12-29")
    );
    assert_eq!(
        evidence(
            "Agent::\"standing\"",
            FindingKind::StandingHighRiskAccess,
            "resources"
        ),
        json!(["Dataset::\"ledger\""])
    );
    assert_eq!(
        evidence(
            "Agent::\"unreviewed\"",
            FindingKind::UnreviewedAutomation,
            "routes"
        ),
        json!(1)
    );
    // Figures policies read.
    assert_eq!(report.figures["Agent::\"clean-1\""].unrotated_days, 200);
    assert_eq!(report.figures["Agent::\"clean-1\""].score, 0);
    assert!(report.figures["ServiceAccount::\"orphan\""].orphaned);
    assert_eq!(report.figures["Agent::\"overpriv\""].unused_grants, 1);
}

#[test]
fn scores_follow_the_documented_formula() {
    let Recorded { report, .. } = recorded();
    for debt in &report.ranking {
        let sum: u32 = report
            .findings
            .iter()
            .filter(|finding| finding.identity == debt.identity)
            .map(|finding| finding.severity.weight())
            .sum();
        assert_eq!(debt.score, sum.min(100), "{}", debt.identity);
    }
    let total: u64 = report
        .ranking
        .iter()
        .map(|debt| u64::from(debt.score))
        .sum();
    assert_eq!(report.scores.total, total);
    let overall = (total as f64 / report.identities_analysed as f64 * 10.0).round() / 10.0;
    assert_eq!(report.scores.overall, overall);
    let owners: u64 = report.scores.owners.iter().map(|owner| owner.total).sum();
    assert_eq!(
        owners, total,
        "every point is counted for exactly one owner"
    );
    assert_eq!(report.scores.by_owasp["NHI1"], 4);
    assert_eq!(report.scores.by_owasp["NHI5"], 3);
    assert_eq!(report.scores.by_owasp["NHI7"], 3);
    assert_eq!(report.scores.by_owasp["NHI2"], 0);
    let payments = report
        .scores
        .teams
        .iter()
        .find(|team| team.key == "payments")
        .unwrap();
    assert!(payments.total > 0);
}

#[test]
fn a_suggestion_for_the_over_privileged_agent_keeps_outcomes_and_removes_unused_grants() {
    let Recorded {
        server,
        log,
        report,
        usage,
        grants,
    } = recorded();
    let policies = sources("policies.cedar", POLICIES);
    let mut suggestions = suggest::propose(&report, &usage, &grants, &policies, 1, 10).unwrap();
    assert_eq!(suggestions.len(), 1, "{suggestions:#?}");
    let window = report.thresholds.usage_window_days;
    suggest::check(
        &mut suggestions,
        &server.store,
        &log,
        window,
        NOW - window * DAY,
        None,
    )
    .unwrap();
    let suggestion = &suggestions[0];
    assert_eq!(suggestion.identity, "Agent::\"overpriv\"");
    let check = suggestion.check.as_ref().unwrap();
    assert_eq!(check.changed, 0, "{suggestion:#?}");
    assert!(check.evaluated > 300, "{check:?}");
    assert!(suggestion.safe());
    assert!(
        suggestion
            .summary
            .contains("this would have changed 0 of the"),
        "{}",
        suggestion.summary
    );
    assert_eq!(
        suggestion.removes,
        vec![
            "admins-delete".to_owned(),
            "policy3: delete".to_owned(),
            "policy3: write".to_owned()
        ]
    );

    // Apply it in one reviewed step: a new version, activated with a reason.
    let candidate = suggestion.policy_sources();
    let compiled = PolicySet::compile(candidate.clone(), None, 2).unwrap();
    let ids: Vec<&str> = compiled.ids().collect();
    assert_eq!(
        ids,
        ["readers-read", "deployers-deploy", "policy3"],
        "ids do not move"
    );
    let version = server
        .store
        .create_policy_version(
            &records(&candidate),
            compiled.digest(),
            &actor(),
            &format!("apply {}", suggestion.id),
        )
        .unwrap();
    server
        .store
        .activate_policy_version(version, &actor(), "least privilege")
        .unwrap();

    // The recorded period replays unchanged with the applied version...
    let options = ReplayOptions::default();
    let replayed = replay(&server.store, &log, &options, None).unwrap();
    assert!(replayed.all_reproduced(), "{replayed:?}");
    let what_if = impact(
        &server.store,
        &log,
        &Candidate::Version(version),
        &options,
        None,
    )
    .unwrap();
    assert_eq!(what_if.changed, 0, "{what_if:?}");
    assert_eq!(what_if.unreplayable, 0);
    // ...and the agent no longer holds grants it does not use.
    let grants_after = Grants::parse(&candidate).unwrap();
    let inventory = server.store.load_inventory().unwrap();
    let thresholds = Thresholds::default();
    let after = analyse(
        Inputs {
            inventory: &inventory,
            grants: &grants_after,
            thresholds: &thresholds,
            now: NOW,
        },
        &usage,
        None,
    );
    assert_eq!(after.figures["Agent::\"overpriv\""].unused_grants, 0);
    assert!(!after
        .findings
        .iter()
        .any(|finding| finding.kind == FindingKind::OverPrivileged));
    let narrowed = grants_after.get("policy3").unwrap();
    assert_eq!(narrowed.actions, Some(vec!["read".to_owned()]));
    assert!(grants_after.get("admins-delete").is_none());
}

#[test]
fn an_unused_role_membership_is_proposed_checked_applied_and_the_period_replays_unchanged() {
    let Recorded {
        server,
        log,
        report,
        usage,
        grants,
    } = recorded();
    let inventory = server.store.load_inventory().unwrap();
    let mut suggestions = suggest::propose_memberships(&report, &inventory, 1, 10);
    // Only the over-privileged agent has a role none of whose grants it used.
    assert_eq!(suggestions.len(), 1, "{suggestions:#?}");
    let window = report.thresholds.usage_window_days;
    suggest::check(
        &mut suggestions,
        &server.store,
        &log,
        window,
        NOW - window * DAY,
        None,
    )
    .unwrap();
    let suggestion = suggestions.remove(0);
    assert!(suggestion.id.starts_with("lm-"), "{}", suggestion.id);
    assert_eq!(suggestion.kind, SuggestionKind::Membership);
    assert_eq!(suggestion.identity, "Agent::\"overpriv\"");
    assert_eq!(
        suggestion.changes,
        vec![SuggestionChange::RemoveMembership {
            group: e("Role", "admins")
        }]
    );
    assert_eq!(
        suggestion.removes,
        vec!["member of Role::\"admins\"".to_owned()]
    );
    assert!(suggestion.sources.is_empty());
    let check = suggestion.check.as_ref().unwrap();
    assert_eq!(
        (check.changed, check.unreplayable),
        (0, 0),
        "{suggestion:#?}"
    );
    assert!(check.evaluated > 300, "{check:?}");
    assert!(suggestion.safe());
    assert!(
        suggestion.summary.contains(&format!(
            "this would have changed 0 of the {} decisions",
            check.evaluated
        )),
        "{}",
        suggestion.summary
    );

    // A state that moved on is refused: the verdict was about the memberships as seen.
    let mut moved: Identity = server.store.get_identity(&e("Agent", "overpriv")).unwrap();
    moved.member_of.push(e("Role", "deployers"));
    let refused = suggestion.apply_to(&mut moved).unwrap_err();
    assert!(refused.contains("changed since"), "{refused}");
    let mut other: Identity = server.store.get_identity(&e("Agent", "clean-1")).unwrap();
    assert!(suggestion.apply_to(&mut other).is_err());

    // Applied as one ordinary identity change, with the reason and the suggestion id.
    let mut identity: Identity = server.store.get_identity(&e("Agent", "overpriv")).unwrap();
    suggestion.apply_to(&mut identity).unwrap();
    assert!(identity.member_of.is_empty());
    let reason = format!("review (least-privilege suggestion {})", suggestion.id);
    server
        .store
        .put_identity(&identity, &actor(), &reason)
        .unwrap();
    let last = server.store.latest_seq().unwrap();
    let change = server.store.changes_since(last - 1, 1).unwrap().remove(0);
    assert_eq!(change.kind, "identity.put");
    assert_eq!(change.reason, reason);
    let stored: Identity = server.store.get_identity(&e("Agent", "overpriv")).unwrap();
    assert!(stored.member_of.is_empty(), "{stored:?}");

    // The recorded period replays unchanged, and the same change checked again on it (now
    // a no-op on states after it) still changes nothing.
    let options = ReplayOptions::default();
    let replayed = replay(&server.store, &log, &options, None).unwrap();
    assert!(replayed.all_reproduced(), "{replayed:?}");
    let again = impact(
        &server.store,
        &log,
        &Candidate::Inventory(suggestion.inventory_changes()),
        &options,
        None,
    )
    .unwrap();
    assert_eq!((again.changed, again.unreplayable), (0, 0), "{again:?}");

    // The agent no longer holds the role's grant, and nothing more is proposed for it.
    let inventory = server.store.load_inventory().unwrap();
    let thresholds = Thresholds::default();
    let after = analyse(
        Inputs {
            inventory: &inventory,
            grants: &grants,
            thresholds: &thresholds,
            now: NOW,
        },
        &usage,
        None,
    );
    assert!(!after.findings.iter().any(|finding| {
        finding.identity == "Agent::\"overpriv\"" && finding.kind == FindingKind::OverPrivileged
    }));
    assert!(suggest::propose_memberships(&after, &inventory, 1, 10).is_empty());
}

#[test]
fn a_used_membership_is_not_proposed_and_removing_it_counts_the_decisions_that_used_it() {
    let Recorded {
        server,
        log,
        report,
        ..
    } = recorded();
    let inventory = server.store.load_inventory().unwrap();
    let proposed = suggest::propose_memberships(&report, &inventory, 1, 100);
    for suggestion in &proposed {
        assert!(
            !suggestion
                .removes
                .contains(&"member of Role::\"readers\"".to_owned()),
            "a used role was proposed: {suggestion:#?}"
        );
    }
    // Were it proposed: clean-1's 28 reads of the search tool went through `readers`.
    let mut used = proposed[0].clone();
    used.identity = "Agent::\"clean-1\"".to_owned();
    used.changes = vec![SuggestionChange::RemoveMembership {
        group: e("Role", "readers"),
    }];
    used.membership = Some(MembershipBase {
        identity: e("Agent", "clean-1"),
        member_of: vec![e("Role", "readers")],
    });
    let window = report.thresholds.usage_window_days;
    let mut checked = [used];
    suggest::check(
        &mut checked,
        &server.store,
        &log,
        window,
        NOW - window * DAY,
        None,
    )
    .unwrap();
    let check = checked[0].check.as_ref().unwrap();
    assert_eq!(check.changed, 28, "{:#?}", checked[0]);
    assert_eq!(check.unreplayable, 0);
    assert!(!checked[0].safe());
    assert!(
        checked[0].summary.contains(&format!(
            "this would have changed 28 of the {} decisions",
            check.evaluated
        )),
        "{}",
        checked[0].summary
    );
    assert!(
        check.examples.iter().all(
            |example| example.contains("Agent::\"clean-1\" read Tool::\"search\" allow → deny")
        ),
        "{:?}",
        check.examples
    );
}
