//! Containment that flows from others: a contained sponsor contains what it sponsors, and an
//! identity whose owner is not an active human is orphaned (denied by default, configurable).

use crate::decide::{decide, request};
use arbiter_core::{GuardViolation, InventoryDocument, Lifecycle, Outcome};
use arbiter_engine::{
    EngineConfig, InventoryBuilder, OrphanRule, PolicySet, PolicySource, Snapshot,
};

const INVENTORY: &str = r#"{
  "identities": [
    {"id": "alice", "kind": "human"},
    {"id": "gone", "kind": "human", "lifecycle": "suspended"},
    {"id": "lead", "kind": "ai_agent", "owner": "alice"},
    {"id": "sub", "kind": "ai_agent", "owner": "alice", "sponsor": {"type": "Agent", "id": "lead"}},
    {"id": "stray", "kind": "ai_agent", "owner": "nobody"},
    {"id": "left-behind", "kind": "service_account", "owner": "gone"},
    {"id": "token", "kind": "credential", "credential": {"holder": {"type": "Agent", "id": "sub"}, "issued_at": 1}}
  ],
  "resources": [{"type": "Dataset", "id": "d"}]
}"#;

fn snapshot(config: EngineConfig) -> Snapshot {
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "all.cedar".into(),
            text: "permit(principal, action, resource);".into(),
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

fn guard_of(snapshot: &Snapshot, subject: &str) -> (Outcome, Option<GuardViolation>, String) {
    let decision = decide(snapshot, &request(subject, "read", "Dataset:d", ""));
    let guard = decision.hops.last().and_then(|hop| hop.guard.clone());
    (decision.outcome, guard, decision.reason_admin)
}

#[test]
fn containing_a_sponsor_contains_what_it_sponsors_and_the_credentials_they_hold() {
    let mut snapshot = snapshot(EngineConfig::default());
    assert_eq!(guard_of(&snapshot, "Agent:sub").0, Outcome::Allow);
    assert_eq!(guard_of(&snapshot, "Credential:token").0, Outcome::Allow);
    snapshot
        .inventory_mut()
        .set_lifecycle(
            &arbiter_core::EntityRef::new("Agent", "lead"),
            Lifecycle::Quarantined,
        )
        .unwrap();
    let (outcome, guard, reason) = guard_of(&snapshot, "Agent:sub");
    assert_eq!(outcome, Outcome::Deny);
    assert!(
        matches!(
            guard,
            Some(GuardViolation::SponsorNotActive {
                lifecycle: Some(Lifecycle::Quarantined),
                ..
            })
        ),
        "{guard:?}"
    );
    assert!(reason.contains("sponsored by"), "{reason}");
    // The sub-agent's token goes with it.
    let (outcome, _, _) = guard_of(&snapshot, "Credential:token");
    assert_eq!(outcome, Outcome::Deny);
    // A chain through the sub-agent is denied too.
    let chained = decide(
        &snapshot,
        &request(
            "Human:alice",
            "read",
            "Dataset:d",
            r#""delegation":[{"type":"Agent","id":"sub"}]"#,
        ),
    );
    assert_eq!(chained.outcome, Outcome::Deny);

    // Where sponsorship does not cascade, the sub-agent acts on.
    let mut independent = self::snapshot(EngineConfig {
        contain_sponsored: false,
        ..EngineConfig::default()
    });
    independent
        .inventory_mut()
        .set_lifecycle(
            &arbiter_core::EntityRef::new("Agent", "lead"),
            Lifecycle::Quarantined,
        )
        .unwrap();
    assert_eq!(guard_of(&independent, "Agent:sub").0, Outcome::Allow);
}

#[test]
fn an_identity_without_an_active_human_owner_is_orphaned() {
    let snapshot = snapshot(EngineConfig::default());
    let (outcome, guard, reason) = guard_of(&snapshot, "Agent:stray");
    assert_eq!(outcome, Outcome::Deny);
    assert!(
        matches!(&guard, Some(GuardViolation::Orphaned { state, .. }) if state == "not in the inventory"),
        "{guard:?}"
    );
    assert!(reason.contains("orphaned"), "{reason}");
    let (outcome, guard, _) = guard_of(&snapshot, "ServiceAccount:left-behind");
    assert_eq!(outcome, Outcome::Deny);
    assert!(
        matches!(&guard, Some(GuardViolation::Orphaned { state, .. }) if state == "suspended"),
        "{guard:?}"
    );
    // An owner that is itself an agent does not count.
    let (_, guard, _) = guard_of(&snapshot, "Agent:lead");
    assert_eq!(guard, None, "alice is an active human");

    // With orphans allowed, they act (and are left to the trust-debt report).
    let lenient = self::snapshot(EngineConfig {
        orphans: OrphanRule::Allow,
        ..EngineConfig::default()
    });
    assert_eq!(guard_of(&lenient, "Agent:stray").0, Outcome::Allow);
    assert_eq!(
        guard_of(&lenient, "ServiceAccount:left-behind").0,
        Outcome::Allow
    );
}
