//! Changing the inventory one entity at a time keeps the hierarchy closed and decisions right.

use crate::decide::{decide, request, world};
use arbiter_core::{EntityRef, Group, Identity, IdentityKind, Lifecycle, Outcome, Resource};

fn agent(id: &str, groups: &[&str]) -> Identity {
    Identity {
        id: id.into(),
        kind: IdentityKind::AiAgent,
        display_name: None,
        owner: Some("alice".into()),
        sponsor: None,
        lifecycle: Lifecycle::Active,
        member_of: groups
            .iter()
            .map(|group| EntityRef::new("Group", *group))
            .collect(),
        credential: None,
        attributes: Default::default(),
    }
}

#[test]
fn joining_and_leaving_a_group_changes_the_next_decision() {
    let mut snapshot = world();
    let deploy = request("Agent:new-bot", "deploy", "Service:staging", "");
    snapshot
        .inventory_mut()
        .upsert_identity(&agent("new-bot", &[]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Deny);
    snapshot
        .inventory_mut()
        .upsert_identity(&agent("new-bot", &["ci"]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Allow);
    snapshot
        .inventory_mut()
        .upsert_identity(&agent("new-bot", &[]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Deny);
}

#[test]
fn re_parenting_a_group_repairs_its_members_ancestors() {
    let mut snapshot = world();
    let deploy = request("Agent:nested-bot", "deploy", "Service:staging", "");
    let team = |parents: &[&str]| Group {
        group_type: "Group".into(),
        id: "team".into(),
        parents: parents
            .iter()
            .map(|parent| EntityRef::new("Group", *parent))
            .collect(),
        attributes: Default::default(),
    };
    let inventory = snapshot.inventory_mut();
    inventory.upsert_group(&team(&[]), None).unwrap();
    inventory
        .upsert_identity(&agent("nested-bot", &["team"]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Deny);
    // team joins ci: its members are now (transitively) in ci.
    snapshot
        .inventory_mut()
        .upsert_group(&team(&["ci"]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Allow);
    snapshot
        .inventory_mut()
        .upsert_group(&team(&[]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Deny);
}

#[test]
fn a_group_created_after_its_members_passes_its_ancestors_to_them() {
    let mut snapshot = world();
    let deploy = request("Agent:early-bot", "deploy", "Service:staging", "");
    // The member names `late-team` before the group exists…
    snapshot
        .inventory_mut()
        .upsert_identity(&agent("early-bot", &["late-team"]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Deny);
    // …then the group arrives, inside `ci`: the member is in `ci` from the next decision on,
    // as it would be after a restart.
    snapshot
        .inventory_mut()
        .upsert_group(
            &Group {
                group_type: "Group".into(),
                id: "late-team".into(),
                parents: vec![EntityRef::new("Group", "ci")],
                attributes: Default::default(),
            },
            None,
        )
        .unwrap();
    assert_eq!(decide(&snapshot, &deploy).outcome, Outcome::Allow);
}

#[test]
fn a_cycle_is_refused_and_leaves_the_inventory_unchanged() {
    let mut snapshot = world();
    let group = |id: &str, parent: &str| Group {
        group_type: "Group".into(),
        id: id.into(),
        parents: vec![EntityRef::new("Group", parent)],
        attributes: Default::default(),
    };
    snapshot
        .inventory_mut()
        .upsert_group(&group("a", "ci"), None)
        .unwrap();
    let version = snapshot.inventory().version();
    let err = snapshot
        .inventory_mut()
        .upsert_group(&group("ci", "a"), None)
        .unwrap_err();
    assert!(err.to_string().contains("own ancestor"), "{err}");
    assert_eq!(snapshot.inventory().version(), version);
}

#[test]
fn resource_labels_update_in_place() {
    let mut snapshot = world();
    let delete = request("Agent:bot", "delete", "Dataset:wiki", "");
    assert_eq!(decide(&snapshot, &delete).outcome, Outcome::Allow);
    let relabelled = Resource {
        resource_type: "Dataset".into(),
        id: "wiki".into(),
        sensitivity: arbiter_core::Sensitivity::Restricted,
        parents: vec![],
        attributes: Default::default(),
    };
    snapshot
        .inventory_mut()
        .upsert_resource(&relabelled, None)
        .unwrap();
    assert_eq!(decide(&snapshot, &delete).outcome, Outcome::Deny);
}

#[test]
fn signals_outlive_a_deleted_identity_as_they_do_in_the_store() {
    let mut snapshot = world();
    let read = request("Agent:calm-bot", "read", "Dataset:wiki", "");
    assert_eq!(decide(&snapshot, &read).outcome, Outcome::Allow);
    let calm = EntityRef::new("Agent", "calm-bot");
    snapshot.inventory_mut().remove(&calm).unwrap();
    assert_eq!(decide(&snapshot, &read).outcome, Outcome::Deny);
    // Created again, it reads its live risk score as a restarted server would.
    snapshot
        .inventory_mut()
        .upsert_identity(&agent("calm-bot", &[]), None)
        .unwrap();
    assert_eq!(decide(&snapshot, &read).outcome, Outcome::Allow);
}
