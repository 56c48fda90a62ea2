//! Graduated containment: observe, require approval, downgrade to an overlay, quarantine with a
//! safe set; on the principal, its owner, its holder, or the resource and its ancestors; with
//! expiry; and the orphan rule's downgrade.

use crate::decide::{decide, request};
use arbiter_core::{
    Control, ControlLevel, Decision, EntityRef, GuardViolation, InventoryDocument, Outcome,
};
use arbiter_engine::{
    EngineConfig, InventoryBuilder, OrphanRule, PolicySet, PolicySource, Snapshot,
};

const INVENTORY: &str = r#"{
  "identities": [
    {"id": "alice", "kind": "human"},
    {"id": "bob", "kind": "human", "lifecycle": "suspended"},
    {"id": "bot", "kind": "ai_agent", "owner": "alice"},
    {"id": "helper", "kind": "ai_agent", "owner": "alice"},
    {"id": "orphan", "kind": "ai_agent", "owner": "bob"},
    {"id": "token", "kind": "credential", "credential": {"holder": {"type": "Agent", "id": "bot"}, "issued_at": 1}}
  ],
  "groups": [{"type": "McpServer", "id": "files"}],
  "resources": [
    {"type": "Tool", "id": "files/read", "parents": [{"type": "McpServer", "id": "files"}], "attributes": {"destructive": false}},
    {"type": "Tool", "id": "files/delete", "parents": [{"type": "McpServer", "id": "files"}], "attributes": {"destructive": true}},
    {"type": "Tool", "id": "web/search", "attributes": {"destructive": false}}
  ]
}"#;

const POLICIES: &str = r#"
permit(principal, action, resource);

@overlay("read-only")
@id("read-only-no-destructive")
forbid(principal, action, resource) when { resource has destructive && resource.destructive };

@overlay("read-only")
@id("read-only-no-status")
forbid(principal, action == Action::"status", resource);
"#;

fn snapshot(config: EngineConfig) -> Snapshot {
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "p.cedar".into(),
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

fn control(id: &str, target: &str, level: ControlLevel) -> Control {
    let (entity_type, entity_id) = target.split_once(':').unwrap();
    Control {
        id: id.into(),
        target: EntityRef::new(entity_type, entity_id),
        level,
        overlay: None,
        safe_actions: Vec::new(),
        reason: format!("test {id}"),
        placed_by: "tester".into(),
        placed_at: 0,
        expires_at: None,
    }
}

fn run(snapshot: &Snapshot, subject: &str, action: &str, resource: &str) -> Decision {
    decide(snapshot, &request(subject, action, resource, ""))
}

#[test]
fn overlays_are_not_policies_until_a_downgrade_applies_them() {
    let snapshot = snapshot(EngineConfig::default());
    assert!(snapshot.policies().has_overlay("read-only"));
    // Without a control the overlay's forbids do not apply.
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/delete").outcome,
        Outcome::Allow
    );
}

#[test]
fn an_overlay_must_be_made_of_forbids() {
    let error = PolicySet::compile(
        vec![PolicySource {
            name: "bad.cedar".into(),
            text: "@overlay(\"x\") permit(principal, action, resource);".into(),
        }],
        None,
        1,
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("overlays can only restrict"),
        "{error}"
    );
}

#[test]
fn observe_flags_without_changing_the_outcome() {
    let mut snapshot = snapshot(EngineConfig::default());
    snapshot
        .inventory_mut()
        .set_control(control("c1", "Agent:bot", ControlLevel::Observe))
        .unwrap();
    let decision = run(&snapshot, "Agent:bot", "call", "Tool:files/read");
    assert_eq!(decision.outcome, Outcome::Allow);
    assert_eq!(decision.hops[0].controls[0].id, "c1");
    assert!(
        decision.reason_admin.contains("observed: control `c1`"),
        "{}",
        decision.reason_admin
    );
}

#[test]
fn require_approval_turns_an_allow_into_approval_required_but_not_a_deny() {
    let mut snapshot = snapshot(EngineConfig::default());
    let mut gate = control("c2", "Tool:files/delete", ControlLevel::RequireApproval);
    gate.reason = "deletes need a second pair of eyes".into();
    snapshot.inventory_mut().set_control(gate).unwrap();
    let decision = run(&snapshot, "Agent:bot", "call", "Tool:files/delete");
    assert_eq!(decision.outcome, Outcome::ApprovalRequired);
    assert!(
        decision.reason_admin.contains("control `c2`"),
        "{}",
        decision.reason_admin
    );
    // Other tools are untouched.
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Allow
    );
    // A deny stays a deny: approval never widens what policy and guards allow.
    snapshot
        .inventory_mut()
        .set_control(control("c3", "Agent:bot", ControlLevel::Quarantine))
        .unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/delete").outcome,
        Outcome::Deny
    );
}

#[test]
fn downgrade_applies_the_overlay_and_keeps_the_rest() {
    let mut snapshot = snapshot(EngineConfig::default());
    let mut downgrade = control("c4", "Agent:bot", ControlLevel::Downgrade);
    downgrade.overlay = Some("read-only".into());
    snapshot.inventory_mut().set_control(downgrade).unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Allow
    );
    let denied = run(&snapshot, "Agent:bot", "call", "Tool:files/delete");
    assert_eq!(denied.outcome, Outcome::Deny);
    assert!(
        matches!(&denied.hops[0].guard, Some(GuardViolation::Downgraded { overlay, policy, .. })
            if overlay == "read-only" && policy == "read-only-no-destructive"),
        "{:?}",
        denied.hops[0].guard
    );
    assert_eq!(
        run(&snapshot, "Agent:bot", "status", "Tool:web/search").outcome,
        Outcome::Deny
    );
    // Its credential is downgraded with it; a sibling agent of the same owner is not.
    assert_eq!(
        run(&snapshot, "Credential:token", "call", "Tool:files/delete").outcome,
        Outcome::Deny
    );
    assert_eq!(
        run(&snapshot, "Agent:helper", "call", "Tool:files/delete").outcome,
        Outcome::Allow
    );
}

#[test]
fn a_downgrade_whose_overlay_is_gone_fails_closed() {
    let mut snapshot = snapshot(EngineConfig::default());
    let mut downgrade = control("c5", "Agent:bot", ControlLevel::Downgrade);
    downgrade.overlay = Some("no-such-overlay".into());
    snapshot.inventory_mut().set_control(downgrade).unwrap();
    let decision = run(&snapshot, "Agent:bot", "call", "Tool:files/read");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(matches!(
        decision.hops[0].guard,
        Some(GuardViolation::Contained { .. })
    ));
}

#[test]
fn quarantine_denies_all_but_the_safe_set() {
    let mut snapshot = snapshot(EngineConfig::default());
    let mut quarantine = control("c6", "Agent:bot", ControlLevel::Quarantine);
    quarantine.safe_actions = vec!["status".into()];
    snapshot.inventory_mut().set_control(quarantine).unwrap();
    let denied = run(&snapshot, "Agent:bot", "call", "Tool:files/read");
    assert_eq!(denied.outcome, Outcome::Deny);
    assert!(
        denied.reason_admin.contains("quarantines") && denied.reason_admin.contains("test c6"),
        "{}",
        denied.reason_admin
    );
    assert_eq!(
        run(&snapshot, "Agent:bot", "status", "Tool:files/read").outcome,
        Outcome::Allow
    );
    // Lifting it restores access on the next decision.
    assert_eq!(
        snapshot.inventory_mut().lift_control("c6").map(|c| c.id),
        Some("c6".into())
    );
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Allow
    );
}

#[test]
fn controls_on_an_owner_or_an_mcp_server_reach_what_they_hold() {
    let mut snapshot = snapshot(EngineConfig::default());
    snapshot
        .inventory_mut()
        .set_control(control("c7", "Human:alice", ControlLevel::Quarantine))
        .unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:web/search").outcome,
        Outcome::Deny
    );
    assert_eq!(
        run(&snapshot, "Agent:helper", "call", "Tool:web/search").outcome,
        Outcome::Deny
    );
    // The credential's holder is owned by alice, so the credential is contained too.
    assert_eq!(
        run(&snapshot, "Credential:token", "call", "Tool:web/search").outcome,
        Outcome::Deny
    );
    snapshot.inventory_mut().lift_control("c7");

    snapshot
        .inventory_mut()
        .set_control(control("c8", "McpServer:files", ControlLevel::Quarantine))
        .unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Deny
    );
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:web/search").outcome,
        Outcome::Allow
    );
}

#[test]
fn an_expired_control_no_longer_applies() {
    let mut snapshot = snapshot(EngineConfig::default());
    let mut expired = control("c9", "Agent:bot", ControlLevel::Quarantine);
    expired.expires_at = Some(crate::decide::NOW);
    snapshot.inventory_mut().set_control(expired).unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Allow
    );
    let mut current = control("c10", "Agent:bot", ControlLevel::Quarantine);
    current.expires_at = Some(crate::decide::NOW + 1);
    snapshot.inventory_mut().set_control(current).unwrap();
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/read").outcome,
        Outcome::Deny
    );
}

#[test]
fn the_orphan_rule_can_downgrade_until_a_new_owner_is_assigned() {
    let snapshot = snapshot(EngineConfig {
        orphans: OrphanRule::Downgrade {
            overlay: "read-only".into(),
        },
        ..EngineConfig::default()
    });
    assert_eq!(
        run(&snapshot, "Agent:orphan", "call", "Tool:files/read").outcome,
        Outcome::Allow
    );
    let denied = run(&snapshot, "Agent:orphan", "call", "Tool:files/delete");
    assert_eq!(denied.outcome, Outcome::Deny);
    assert_eq!(
        denied.hops[0].controls[0].id,
        arbiter_engine::ORPHAN_RULE_CONTROL
    );
    // An identity with an active owner is not downgraded.
    assert_eq!(
        run(&snapshot, "Agent:bot", "call", "Tool:files/delete").outcome,
        Outcome::Allow
    );
}
