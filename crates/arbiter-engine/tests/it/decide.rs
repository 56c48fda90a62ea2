//! Outcomes, guards, delegation, signals and explanations, one small world at a time.

use arbiter_core::{
    parse_request, ConditionOutcome, Decision, GuardViolation, InventoryDocument, Lifecycle,
    Outcome, PolicyTraceRole, RequestLimits,
};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};

pub(crate) const POLICIES: &str = r#"
@id("agents-read-internal")
permit(principal is Agent, action == Action::"read", resource is Dataset)
when { resource.sensitivity_level <= 1 && context.arbiter.signals.risk_score.value < 50 };

@id("humans-read")
permit(principal is Human, action == Action::"read", resource);

@id("deploy-needs-approval")
@approval("production deploys need the owner's sign-off")
forbid(principal, action == Action::"deploy", resource)
when { resource.env == "prod" };

@id("ci-can-deploy")
permit(principal in Group::"ci", action == Action::"deploy", resource);

@id("no-deletes-of-restricted")
@reason("restricted data cannot be deleted by automation")
forbid(principal, action == Action::"delete", resource)
when { resource.sensitivity_level >= 3 };

@id("ci-can-delete")
permit(principal in Group::"ci", action == Action::"delete", resource);

@id("forbid-on-missing-attribute")
forbid(principal, action == Action::"write", resource)
when { resource.frozen };

@id("ci-can-write")
permit(principal in Group::"ci", action == Action::"write", resource);

@id("posture-gated")
@requires_signals("device_posture")
permit(principal, action == Action::"admin", resource)
when { context.arbiter.signals.device_posture.value == "compliant" };

@id("objects-by-owner")
permit(principal, action == Action::"open", resource is Document)
when { resource has owner && resource.owner == principal };
"#;

pub(crate) const INVENTORY: &str = r#"{
  "identities": [
    {"id": "alice", "kind": "human"},
    {"id": "bob", "kind": "human", "lifecycle": "revoked"},
    {"id": "bot", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Group", "id": "ci"}]},
    {"id": "calm-bot", "kind": "ai_agent", "owner": "alice"},
    {"id": "sub-bot", "kind": "ai_agent", "owner": "alice", "sponsor": {"type": "Agent", "id": "bot"}},
    {"id": "quiet-bot", "kind": "ai_agent", "owner": "alice", "lifecycle": "quarantined", "member_of": [{"type": "Group", "id": "ci"}]},
    {"id": "tok-1", "kind": "credential", "owner": "alice", "member_of": [{"type": "Group", "id": "ci"}],
     "credential": {"holder": {"type": "Agent", "id": "bot"}, "issued_at": 0, "expires_at": 5000}},
    {"id": "tok-old", "kind": "credential", "owner": "alice", "member_of": [{"type": "Group", "id": "ci"}],
     "credential": {"holder": {"type": "Agent", "id": "bot"}, "issued_at": 0, "expires_at": 1000}},
    {"id": "tok-q", "kind": "credential", "owner": "alice", "member_of": [{"type": "Group", "id": "ci"}],
     "credential": {"holder": {"type": "Agent", "id": "quiet-bot"}}}
  ],
  "groups": [{"id": "ci"}],
  "resources": [
    {"type": "Dataset", "id": "wiki", "sensitivity": "internal"},
    {"type": "Dataset", "id": "payroll", "sensitivity": "restricted"},
    {"type": "Service", "id": "api", "attributes": {"env": "prod"}},
    {"type": "Service", "id": "staging", "attributes": {"env": "staging"}}
  ],
  "signals": [
    {"subject": {"type": "Agent", "id": "bot"}, "name": "risk_score", "value": 72, "source": "siem", "observed_at": 1000, "ttl_seconds": 600},
    {"subject": {"type": "Agent", "id": "calm-bot"}, "name": "risk_score", "value": 10, "source": "siem", "observed_at": 1000, "ttl_seconds": 600},
    {"subject": {"type": "Agent", "id": "bot"}, "name": "device_posture", "value": "compliant", "source": "mdm", "observed_at": 0, "ttl_seconds": 60},
    {"subject": {"type": "Agent", "id": "calm-bot"}, "name": "device_posture", "value": "compliant", "source": "mdm", "observed_at": 1090, "ttl_seconds": 60}
  ]
}"#;

pub(crate) const NOW: i64 = 1100;

pub(crate) fn world() -> Snapshot {
    world_with(EngineConfig::default())
}

pub(crate) fn world_with(config: EngineConfig) -> Snapshot {
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "test.cedar".into(),
            text: POLICIES.into(),
        }],
        None,
        1,
    )
    .unwrap();
    let document: InventoryDocument = serde_json::from_str(INVENTORY).unwrap();
    let mut builder = InventoryBuilder::new();
    builder.add_document(&document).unwrap();
    Snapshot::new(policies, builder.build(None).unwrap(), None, config)
}

pub(crate) fn decide(snapshot: &Snapshot, request: &str) -> Decision {
    let request = parse_request(request, RequestLimits::default()).unwrap();
    snapshot.decide(
        &request,
        &DecideOptions {
            now: NOW,
            decision_id: "d-test".into(),
            explain: true,
        },
    )
}

/// `subject` and `resource` as `Type:id`, plus optional extra JSON members after `context`.
pub(crate) fn request(subject: &str, action: &str, resource: &str, context: &str) -> String {
    let (subject_type, subject_id) = subject.split_once(':').unwrap();
    let (resource_type, resource_id) = resource.split_once(':').unwrap();
    format!(
        r#"{{"subject":{{"type":"{subject_type}","id":"{subject_id}"}},"action":{{"name":"{action}"}},"resource":{{"type":"{resource_type}","id":"{resource_id}"}},"context":{{{context}}}}}"#
    )
}

fn check(subject: &str, action: &str, resource: &str, expected: Outcome, determining: &[&str]) {
    let decision = decide(&world(), &request(subject, action, resource, ""));
    assert_eq!(
        decision.outcome, expected,
        "{subject} {action} {resource}: {}",
        decision.reason_admin
    );
    let ids: Vec<&str> = decision.determining.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, determining, "{subject} {action} {resource}");
}

#[test]
fn outcomes_follow_policy() {
    check(
        "Agent:calm-bot",
        "read",
        "Dataset:wiki",
        Outcome::Allow,
        &["agents-read-internal"],
    );
    check(
        "Human:alice",
        "read",
        "Dataset:payroll",
        Outcome::Allow,
        &["humans-read"],
    );
    check(
        "Agent:bot",
        "deploy",
        "Service:staging",
        Outcome::Allow,
        &["ci-can-deploy"],
    );
    check(
        "Agent:bot",
        "deploy",
        "Service:api",
        Outcome::ApprovalRequired,
        &["deploy-needs-approval"],
    );
    check(
        "Agent:bot",
        "delete",
        "Dataset:payroll",
        Outcome::Deny,
        &["no-deletes-of-restricted"],
    );
    check(
        "Agent:bot",
        "delete",
        "Dataset:wiki",
        Outcome::Allow,
        &["ci-can-delete"],
    );
    check(
        "Agent:calm-bot",
        "deploy",
        "Service:staging",
        Outcome::Deny,
        &[],
    );
}

#[test]
fn approval_only_when_a_permit_would_otherwise_allow() {
    // calm-bot is not in ci: no permit, so asking a human would not help.
    let decision = decide(
        &world(),
        &request("Agent:calm-bot", "deploy", "Service:api", ""),
    );
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.determining[0].id, "deploy-needs-approval");
    assert!(
        decision.reason_admin.contains("denied by forbid"),
        "{}",
        decision.reason_admin
    );
}

#[test]
fn user_reason_comes_from_the_reason_annotation() {
    let decision = decide(
        &world(),
        &request("Agent:bot", "delete", "Dataset:payroll", ""),
    );
    assert_eq!(
        decision.reason_user,
        "restricted data cannot be deleted by automation"
    );
}

#[test]
fn lifecycle_guards_override_every_policy() {
    let world = world();
    for (subject, lifecycle) in [
        ("Human:bob", Lifecycle::Revoked),
        ("Agent:quiet-bot", Lifecycle::Quarantined),
    ] {
        let decision = decide(&world, &request(subject, "read", "Dataset:wiki", ""));
        assert_eq!(decision.outcome, Outcome::Deny);
        match &decision.hops[0].guard {
            Some(GuardViolation::NotActive {
                lifecycle: seen, ..
            }) => assert_eq!(*seen, lifecycle),
            other => panic!("{subject}: expected a lifecycle guard, got {other:?}"),
        }
        assert!(decision.reason_admin.contains(lifecycle.as_str()));
    }
    // Permitted by `ci-can-deploy` if it were active.
    let decision = decide(
        &world,
        &request("Agent:quiet-bot", "deploy", "Service:staging", ""),
    );
    assert_eq!(decision.outcome, Outcome::Deny);
}

#[test]
fn unknown_principals_are_denied_even_with_properties() {
    let text = r#"{"subject":{"type":"Human","id":"mallory","properties":{"admin":true}},
        "action":{"name":"read"},"resource":{"type":"Dataset","id":"wiki"}}"#;
    let decision = decide(&world(), text);
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(matches!(
        decision.hops[0].guard,
        Some(GuardViolation::UnknownPrincipal { .. })
    ));
}

#[test]
fn credentials_are_bounded_by_expiry_and_by_their_holder() {
    let world = world();
    check(
        "Credential:tok-1",
        "deploy",
        "Service:staging",
        Outcome::Allow,
        &["ci-can-deploy"],
    );
    let expired = decide(
        &world,
        &request("Credential:tok-old", "deploy", "Service:staging", ""),
    );
    assert!(matches!(
        expired.hops[0].guard,
        Some(GuardViolation::CredentialExpired {
            expires_at: 1000,
            ..
        })
    ));
    let held_by_quarantined = decide(
        &world,
        &request("Credential:tok-q", "deploy", "Service:staging", ""),
    );
    assert!(matches!(
        held_by_quarantined.hops[0].guard,
        Some(GuardViolation::HolderNotActive {
            lifecycle: Some(Lifecycle::Quarantined),
            ..
        })
    ));
}

#[test]
fn caller_properties_never_override_the_inventory() {
    // The caller claims the dataset is public; the inventory says restricted.
    let text = r#"{"subject":{"type":"Agent","id":"bot","properties":{"lifecycle":"active"}},
        "action":{"name":"delete"},
        "resource":{"type":"Dataset","id":"payroll","properties":{"sensitivity_level":0}}}"#;
    let decision = decide(&world(), text);
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(
        decision.ignored_properties,
        vec![
            "subject.properties.lifecycle",
            "resource.properties.sensitivity_level"
        ]
    );
}

#[test]
fn properties_describe_entities_the_inventory_does_not_hold() {
    let text = |owner: &str| {
        format!(
            r#"{{"subject":{{"type":"Human","id":"alice"}},"action":{{"name":"open"}},
            "resource":{{"type":"Document","id":"memo","properties":{{"owner":{{"__entity":{{"type":"Human","id":"{owner}"}}}}}}}}}}"#
        )
    };
    assert_eq!(decide(&world(), &text("alice")).outcome, Outcome::Allow);
    assert_eq!(decide(&world(), &text("carol")).outcome, Outcome::Deny);
}

#[test]
fn an_erroring_forbid_denies_where_cedar_would_skip_it() {
    // `resource.frozen` does not exist: Cedar skips the forbid and `ci-can-write` would allow.
    let decision = decide(&world(), &request("Agent:bot", "write", "Dataset:wiki", ""));
    assert_eq!(decision.outcome, Outcome::Deny);
    match &decision.hops[0].guard {
        Some(GuardViolation::ForbidErrored { policy, .. }) => {
            assert_eq!(policy, "forbid-on-missing-attribute")
        }
        other => panic!("expected the fail-closed guard, got {other:?}"),
    }
    assert_eq!(decision.errors.len(), 1);
    let errored = &decision.hops[0].explanation.policies[0];
    assert_eq!(errored.role, PolicyTraceRole::Errored);
    assert!(errored
        .conditions
        .iter()
        .any(|c| c.outcome == ConditionOutcome::Errored));
}

#[test]
fn stale_or_missing_required_signals_fail_closed() {
    let world = world();
    // calm-bot's posture is fresh and compliant.
    check(
        "Agent:calm-bot",
        "admin",
        "Service:api",
        Outcome::Allow,
        &["posture-gated"],
    );
    // bot's posture was observed at 0 with a 60 s time-to-live: stale at 1100.
    let stale = decide(&world, &request("Agent:bot", "admin", "Service:api", ""));
    assert_eq!(stale.outcome, Outcome::Deny);
    match &stale.hops[0].guard {
        Some(GuardViolation::SignalUnavailable { signal, state, .. }) => {
            assert_eq!(
                (signal.as_str(), state.as_str()),
                ("device_posture", "stale")
            );
        }
        other => panic!("expected a signal guard, got {other:?}"),
    }
    assert_eq!(
        stale.context["arbiter"]["stale_signals"][0],
        "device_posture"
    );
    let missing = decide(&world, &request("Human:alice", "admin", "Service:api", ""));
    assert!(matches!(
        &missing.hops[0].guard,
        Some(GuardViolation::SignalUnavailable { state, .. }) if state == "missing"
    ));
}

#[test]
fn delegation_is_the_intersection_of_every_hop() {
    let world = world();
    let via = |chain: &str, subject: &str, action: &str, resource: &str| {
        decide(
            &world,
            &request(
                subject,
                action,
                resource,
                &format!(r#""delegation":[{chain}]"#),
            ),
        )
    };
    // alice may read payroll and so may... no agent: the chain is denied at the agent's hop.
    let alice = r#"{"type":"Human","id":"alice"}"#;
    let decision = via(alice, "Agent:calm-bot", "read", "Dataset:payroll");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.hops.len(), 2);
    assert_eq!(decision.hops[0].outcome, Outcome::Allow);
    assert_eq!(decision.hops[1].outcome, Outcome::Deny);
    assert!(
        decision.reason_admin.starts_with("hop 2 of 2"),
        "{}",
        decision.reason_admin
    );
    // bot may deploy to staging, alice may not: denied at alice's hop, never a union.
    let decision = via(alice, "Agent:bot", "deploy", "Service:staging");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.hops[0].outcome, Outcome::Deny);
    assert_eq!(decision.hops[1].outcome, Outcome::Allow);
    // Both may read the wiki.
    let decision = via(alice, "Agent:calm-bot", "read", "Dataset:wiki");
    assert_eq!(
        decision.outcome,
        Outcome::Allow,
        "{}",
        decision.reason_admin
    );
    assert_eq!(decision.context["arbiter"]["delegation"]["depth"], 1);
    // A revoked human in the chain denies.
    let bob = r#"{"type":"Human","id":"bob"}"#;
    let decision = via(bob, "Agent:calm-bot", "read", "Dataset:wiki");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(matches!(
        decision.hops[0].guard,
        Some(GuardViolation::NotActive { .. })
    ));
}

#[test]
fn delegation_chains_are_bounded() {
    let world = world_with(EngineConfig {
        max_delegation_hops: 2,
        ..EngineConfig::default()
    });
    let chain = r#""delegation":[{"type":"Human","id":"alice"},{"type":"Agent","id":"calm-bot"}]"#;
    let decision = decide(
        &world,
        &request("Agent:calm-bot", "read", "Dataset:wiki", chain),
    );
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(matches!(
        decision.hops[0].guard,
        Some(GuardViolation::DelegationTooLong {
            hops: 3,
            max_hops: 2
        })
    ));
}

#[test]
fn a_deny_explains_what_would_have_to_change() {
    let decision = decide(&world(), &request("Agent:bot", "read", "Dataset:wiki", ""));
    assert_eq!(decision.outcome, Outcome::Deny);
    let nearest = &decision.hops[0].explanation.policies[0];
    assert_eq!(nearest.id, "agents-read-internal");
    assert_eq!(nearest.role, PolicyTraceRole::NearestMiss);
    let failed = nearest
        .conditions
        .iter()
        .find(|condition| condition.outcome == ConditionOutcome::Failed)
        .unwrap();
    assert_eq!(
        failed.source,
        "context.arbiter.signals.risk_score.value < 50"
    );
    assert_eq!(failed.seen[0].value, "72");
    assert!(
        decision
            .reason_admin
            .contains("context.arbiter.signals.risk_score.value = 72"),
        "{}",
        decision.reason_admin
    );
}

#[test]
fn explanations_follow_short_circuit_order() {
    let policies = r#"
        @id("p") permit(principal, action, resource)
        when { context.a > 1 || context.b > 1 } when { context.c && context.missing };
    "#;
    let snapshot = Snapshot::new(
        PolicySet::compile(
            vec![PolicySource {
                name: "p.cedar".into(),
                text: policies.into(),
            }],
            None,
            1,
        )
        .unwrap(),
        InventoryBuilder::new().build(None).unwrap(),
        None,
        EngineConfig::default(),
    );
    let mut builder = InventoryBuilder::new();
    builder
        .add_cedar_entities(
            serde_json::json!([{"uid": {"type": "User", "id": "u"}, "attrs": {}, "parents": []}]),
        )
        .unwrap();
    let snapshot = Snapshot::new(
        PolicySet::compile(snapshot.policies().sources().to_vec(), None, 1).unwrap(),
        builder.build(None).unwrap(),
        None,
        EngineConfig::default(),
    );
    let decision = decide(
        &snapshot,
        &request("User:u", "x", "R:r", r#""a":5,"b":0,"c":false"#),
    );
    assert_eq!(decision.outcome, Outcome::Deny);
    let trace = &decision.hops[0].explanation.policies[0];
    let or = &trace.conditions[0];
    assert_eq!(or.outcome, ConditionOutcome::Held);
    assert_eq!(or.parts[0].outcome, ConditionOutcome::Held);
    assert_eq!(
        or.parts[1].outcome,
        ConditionOutcome::NotEvaluated,
        "`||` stops at the first true"
    );
    assert_eq!(trace.conditions[1].outcome, ConditionOutcome::Failed);
    assert_eq!(
        trace.conditions[2].outcome,
        ConditionOutcome::NotEvaluated,
        "`&&` stops at the first false"
    );
}

#[test]
fn bad_requests_deny_with_the_field_named() {
    let text = r#"{"subject":{"type":"Not A Type","id":"x"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"wiki"}}"#;
    let decision = decide(&world(), text);
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(
        decision.reason_admin.contains("`subject.type`"),
        "{}",
        decision.reason_admin
    );
    let text = r#"{"subject":{"type":"Agent","id":"bot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"wiki"},"context":{"x":1.5}}"#;
    let decision = decide(&world(), text);
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(
        decision.reason_admin.contains("`context`"),
        "{}",
        decision.reason_admin
    );
}
