//! What-if with an inventory change: an identity taken out of a role on top of every recorded
//! state. Decisions that relied on the membership change, those made before the identity
//! joined do not, and the walk's own state is left as the store had it.

use crate::fixture::{sources, Server};
use arbiter_core::{parse_request, DecisionRequest, EntityRef, Identity, InventoryDocument};
use arbiter_core::{Outcome, RequestLimits};
use arbiter_engine::EngineConfig;
use arbiter_replay::{impact, replay, Candidate, InventoryChange, ReplayOptions, StateWalker};
use arbiter_store::Store;
use serde_json::json;

const POLICIES: &str = r#"
@id("ops-restart")
permit(principal in Role::"ops", action == Action::"restart", resource);

@id("idle-delete")
permit(principal in Role::"idle", action == Action::"delete", resource);
"#;

const T0: i64 = 1_767_225_600;

fn agent(id: &str) -> EntityRef {
    EntityRef::new("Agent", id)
}

fn role(id: &str) -> EntityRef {
    EntityRef::new("Role", id)
}

fn inventory() -> InventoryDocument {
    serde_json::from_value(json!({
        "groups": [{"type": "Role", "id": "ops"}, {"type": "Role", "id": "idle"}],
        "resources": [{"type": "Service", "id": "api", "sensitivity": "internal"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "a", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "idle"}]},
            {"id": "b", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "ops"}]}
        ]
    }))
    .unwrap()
}

fn restart(subject: &str) -> DecisionRequest {
    let text = format!(
        r#"{{"subject":{{"type":"Agent","id":"{subject}"}},"action":{{"name":"restart"}},"resource":{{"type":"Service","id":"api"}}}}"#
    );
    parse_request(&text, RequestLimits::default()).unwrap()
}

/// `a` restarts once before it joins `ops` (denied) and three times after (allowed); `b`, a
/// member throughout, restarts four times. Returns the server, its log closed.
fn recorded() -> (Server, arbiter_log::LogDb) {
    let mut server =
        Server::bootstrap(sources("policies.cedar", POLICIES), &inventory(), &[], None);
    assert_eq!(
        server.decide(&[restart("a"), restart("b")], T0),
        [Outcome::Deny, Outcome::Allow]
    );
    let mut joined: Identity = server.store.get_identity(&agent("a")).unwrap();
    joined.member_of.push(role("ops"));
    server.put_identity(&joined);
    for round in 1..=3 {
        assert_eq!(
            server.decide(&[restart("a"), restart("b")], T0 + round * 60),
            [Outcome::Allow, Outcome::Allow]
        );
    }
    let log = server.finish();
    (server, log)
}

fn remove(identity: &str, group: &str) -> InventoryChange {
    InventoryChange::RemoveMembership {
        identity: agent(identity),
        group: role(group),
    }
}

#[test]
fn removing_a_used_membership_counts_every_decision_that_used_it() {
    let (server, log) = recorded();
    let options = ReplayOptions::default();
    assert!(replay(&server.store, &log, &options, None)
        .unwrap()
        .all_reproduced());

    let what_if = impact(
        &server.store,
        &log,
        &Candidate::Inventory(vec![remove("a", "ops")]),
        &options,
        None,
    )
    .unwrap();
    assert_eq!(what_if.total, 8);
    assert_eq!(what_if.evaluated, 8);
    assert_eq!(what_if.unreplayable, 0, "{what_if:?}");
    // The three allows after `a` joined; its deny from before it joined stays a deny.
    assert_eq!(what_if.changed, 3, "{what_if:#?}");
    assert_eq!(what_if.by_subject.top.len(), 1);
    assert_eq!(what_if.by_subject.top[0].key, "Agent::\"a\"");
    assert_eq!(what_if.by_subject.top[0].count, 3);
    let [transition] = what_if.transitions.as_slice() else {
        panic!("one transition expected: {:?}", what_if.transitions);
    };
    assert_eq!(
        (transition.from, transition.to),
        (Outcome::Allow, Outcome::Deny)
    );
    assert_eq!(
        transition.examples[0].recorded.determining,
        vec!["ops-restart".to_owned()]
    );
    assert_eq!(what_if.candidate.inventory, vec![remove("a", "ops")]);
    assert_eq!(what_if.candidate.policies, 0);

    // Both agents out of `ops`: every allow changes.
    let both = impact(
        &server.store,
        &log,
        &Candidate::Inventory(vec![remove("a", "ops"), remove("b", "ops")]),
        &options,
        None,
    )
    .unwrap();
    assert_eq!(both.changed, 7, "{both:#?}");
}

#[test]
fn removing_an_unused_or_absent_membership_changes_nothing() {
    let (server, log) = recorded();
    let options = ReplayOptions::default();
    for change in [
        remove("a", "idle"),
        remove("nobody", "ops"),
        remove("b", "idle"),
    ] {
        let what_if = impact(
            &server.store,
            &log,
            &Candidate::Inventory(vec![change.clone()]),
            &options,
            None,
        )
        .unwrap();
        assert_eq!(
            (what_if.evaluated, what_if.changed, what_if.unreplayable),
            (8, 0, 0),
            "{change}: {what_if:#?}"
        );
    }
}

#[test]
fn a_changed_state_leaves_the_walk_as_the_store_had_it() {
    let (server, _log) = recorded();
    let mut walker = StateWalker::new(&server.store, None, EngineConfig::default());
    walker
        .advance_to(server.store.latest_seq().unwrap())
        .unwrap();
    let changed = walker.snapshot_with(&[remove("a", "ops")]).unwrap();
    assert!(!changed.inventory().is_in(&agent("a"), &role("ops")));
    assert!(changed.inventory().is_in(&agent("a"), &role("idle")));
    assert!(changed.inventory().is_in(&agent("b"), &role("ops")));
    let as_stored = walker.snapshot().unwrap();
    assert!(as_stored.inventory().is_in(&agent("a"), &role("ops")));
    assert_eq!(
        walker.document().identities,
        server.store.load_inventory().unwrap().identities
    );
}
