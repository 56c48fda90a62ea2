//! The state at each position of the feed, checked against what the store held right after
//! each write, and against an inventory built from scratch, including the writes the engine
//! cannot apply in place (a group removed while it has members, actions stored as groups).

use arbiter_core::{
    parse_request, Control, ControlLevel, DecisionRequest, EntityRef, Group, Identity,
    IdentityKind, InventoryDocument, Lifecycle, RequestLimits, Resource, Signal,
};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, OrphanRule, PolicySet, PolicySource, Snapshot,
};
use arbiter_replay::{StateError, StateWalker};
use arbiter_store::{Actor, SqliteStore, Store};
use std::collections::BTreeMap;
use std::sync::Arc;

/// These histories name owners the store never holds: the walk, not the orphan rule, is what
/// is tested here, so orphans are allowed.
fn config() -> EngineConfig {
    EngineConfig {
        orphans: OrphanRule::Allow,
        ..EngineConfig::default()
    }
}

const POLICIES: &str = r#"
@id("h-reads")
permit(principal in Group::"H", action in Action::"readers", resource);
@id("k-reads")
permit(principal in Group::"K", action == Action::"read", resource);
@id("f-writes")
permit(principal, action == Action::"write", resource in Folder::"F");
@id("risky")
forbid(principal, action, resource)
when { context.arbiter.signals has risk && context.arbiter.signals.risk.value > 50 };
"#;

fn group(id: &str, parents: &[&str]) -> Group {
    Group {
        group_type: "Group".into(),
        id: id.into(),
        parents: parents
            .iter()
            .map(|parent| EntityRef::new("Group", *parent))
            .collect(),
        attributes: serde_json::Map::new(),
    }
}

fn agent(id: &str, groups: &[&str]) -> Identity {
    Identity {
        id: id.into(),
        kind: IdentityKind::AiAgent,
        display_name: None,
        owner: Some("h".into()),
        sponsor: None,
        lifecycle: Lifecycle::Active,
        member_of: groups
            .iter()
            .map(|group| EntityRef::new("Group", *group))
            .collect(),
        credential: None,
        attributes: serde_json::Map::new(),
    }
}

fn resource(kind: &str, id: &str, parents: &[(&str, &str)]) -> Resource {
    Resource {
        resource_type: kind.into(),
        id: id.into(),
        sensitivity: Default::default(),
        parents: parents
            .iter()
            .map(|(kind, id)| EntityRef::new(*kind, *id))
            .collect(),
        attributes: serde_json::Map::new(),
    }
}

fn risk(id: &str, value: i64) -> Signal {
    Signal {
        subject: EntityRef::new("Agent", id),
        name: "risk".into(),
        value: value.into(),
        source: "siem".into(),
        observed_at: 1000,
        ttl_seconds: 1_000_000,
    }
}

fn requests() -> Vec<DecisionRequest> {
    let mut requests = Vec::new();
    for who in ["x", "y"] {
        for action in ["read", "write"] {
            let text = format!(
                r#"{{"subject": {{"type": "Agent", "id": "{who}"}}, "action": {{"name": "{action}"}}, "resource": {{"type": "Doc", "id": "r"}}}}"#
            );
            requests.push(parse_request(&text, RequestLimits::default()).unwrap());
        }
    }
    requests
}

/// Runs the writes, recording the store's inventory after each, by feed position.
fn history(store: &SqliteStore) -> BTreeMap<u64, InventoryDocument> {
    let actor = Actor::new("t", "admin");
    let mut states = BTreeMap::new();
    let mut record = |store: &SqliteStore| {
        let (document, seq) = store.load_inventory_with_seq().unwrap();
        states.insert(seq, document);
    };
    record(store);
    let sources = vec![arbiter_store::PolicySourceRecord {
        name: "p.cedar".into(),
        text: POLICIES.into(),
    }];
    let digest = PolicySet::compile(policy_sources(), None, 1)
        .unwrap()
        .digest()
        .to_owned();
    store
        .create_policy_version(&sources, &digest, &actor, "t")
        .unwrap();
    record(store);
    macro_rules! step {
        ($call:expr) => {{
            $call.unwrap();
            record(store);
        }};
    }
    // Actions and their group, stored as groups (the engine cannot upsert actions in place).
    let read = Group {
        group_type: "Action".into(),
        id: "read".into(),
        parents: vec![EntityRef::new("Action", "readers")],
        attributes: serde_json::Map::new(),
    };
    step!(store.put_group(&read, &actor, "t"));
    // A member named before its group exists; the group then gets a parent.
    step!(store.put_identity(&agent("x", &["G"]), &actor, "t"));
    step!(store.put_group(&group("H", &[]), &actor, "t"));
    step!(store.put_group(&group("G", &["H"]), &actor, "t"));
    step!(store.put_signal(&risk("x", 80), &actor, "t"));
    // Deleted and created again: the store kept its signal.
    step!(store.delete_identity(&EntityRef::new("Agent", "x"), &actor, "t"));
    step!(store.put_identity(&agent("x", &["G"]), &actor, "t"));
    step!(store.put_signal(&risk("x", 10), &actor, "t"));
    step!(store.put_group(&group("K", &[]), &actor, "t"));
    step!(store.put_identity(&agent("y", &["K"]), &actor, "t"));
    // A group removed while it has a member.
    step!(store.delete_group(&EntityRef::new("Group", "K"), &actor, "t"));
    step!(store.put_group(&group("G", &[]), &actor, "t"));
    step!(store.put_group(&group("G", &["H"]), &actor, "t"));
    step!(store.set_lifecycle(
        &EntityRef::new("Agent", "y"),
        Lifecycle::Suspended,
        &actor,
        "t"
    ));
    step!(store.set_lifecycle(
        &EntityRef::new("Agent", "y"),
        Lifecycle::Active,
        &actor,
        "t"
    ));
    step!(store.put_resource(&resource("Doc", "r", &[("Folder", "F")]), &actor, "t"));
    step!(store.put_resource(&resource("Folder", "F", &[]), &actor, "t"));
    step!(store.delete_resource(&EntityRef::new("Doc", "r"), &actor, "t"));
    step!(store.put_resource(&resource("Doc", "r", &[("Folder", "F")]), &actor, "t"));
    // Runtime controls: placed, and one of them lifted again.
    let control = |id: &str, target: &str, level: ControlLevel| Control {
        id: id.into(),
        target: EntityRef::new("Agent", target),
        level,
        overlay: None,
        safe_actions: Vec::new(),
        reason: "t".into(),
        placed_by: "t".into(),
        placed_at: 1,
        expires_at: None,
    };
    step!(store.place_control(
        &control("ctl_q", "x", ControlLevel::Quarantine),
        &actor,
        "t"
    ));
    step!(store.place_control(&control("ctl_o", "y", ControlLevel::Observe), &actor, "t"));
    step!(store.lift_control("ctl_q", &actor, "t"));
    states
}

fn policy_sources() -> Vec<PolicySource> {
    vec![PolicySource {
        name: "p.cedar".into(),
        text: POLICIES.into(),
    }]
}

fn normalised(document: &InventoryDocument) -> Vec<String> {
    let mut items: Vec<String> = document
        .identities
        .iter()
        .map(|item| serde_json::to_string(item).unwrap())
        .chain(
            document
                .groups
                .iter()
                .map(|item| serde_json::to_string(item).unwrap()),
        )
        .chain(
            document
                .resources
                .iter()
                .map(|item| serde_json::to_string(item).unwrap()),
        )
        .chain(
            document
                .signals
                .iter()
                .map(|item| serde_json::to_string(item).unwrap()),
        )
        .chain(
            document
                .controls
                .iter()
                .map(|item| serde_json::to_string(item).unwrap()),
        )
        .collect();
    items.sort();
    items
}

fn answers(snapshot: &Snapshot) -> Vec<(String, Vec<String>)> {
    requests()
        .iter()
        .map(|request| {
            let decision = snapshot.decide(
                request,
                &DecideOptions {
                    now: 2000,
                    decision_id: "t".into(),
                    explain: false,
                },
            );
            (
                decision.outcome.as_str().to_owned(),
                decision.determining.iter().map(|p| p.id.clone()).collect(),
            )
        })
        .collect()
}

#[test]
fn the_state_at_every_position_is_what_the_store_held_then() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("arbiter.sqlite3")).unwrap();
    let states = history(&store);
    let policies = Arc::new(PolicySet::compile(policy_sources(), None, 1).unwrap());

    // Materialised at every position (the engine's copy changed in place), and only at the end
    // (built once): both must agree with the store and with an inventory built from scratch.
    let mut every = StateWalker::new(&store, None, config());
    let mut outcomes = std::collections::BTreeSet::new();
    for (seq, document) in &states {
        every.advance_to(*seq).unwrap();
        assert_eq!(every.position(), *seq);
        assert_eq!(
            normalised(&every.document()),
            normalised(document),
            "at {seq}"
        );
        let walked = every
            .snapshot()
            .unwrap()
            .with_policies(Arc::clone(&policies));
        assert_eq!(walked.change_seq(), *seq);
        let mut builder = InventoryBuilder::new();
        builder.add_document(document).unwrap();
        let built = Snapshot::new(
            PolicySet::empty(),
            builder.build(None).unwrap(),
            None,
            config(),
        )
        .with_policies(Arc::clone(&policies));
        assert_eq!(answers(&walked), answers(&built), "at {seq}");
        outcomes.extend(answers(&walked));
    }
    // The history exercises allows and denies by each policy.
    for policy in ["h-reads", "k-reads", "f-writes", "risky"] {
        assert!(
            outcomes
                .iter()
                .any(|(_, ids)| ids.iter().any(|id| id == policy)),
            "{policy} never decided: {outcomes:?}"
        );
    }

    let last = *states.keys().last().unwrap();
    let mut once = StateWalker::new(&store, None, config());
    once.advance_to(last).unwrap();
    let walked = once
        .snapshot()
        .unwrap()
        .with_policies(Arc::clone(&policies));
    let walked_every = every
        .snapshot()
        .unwrap()
        .with_policies(Arc::clone(&policies));
    assert_eq!(answers(&walked), answers(&walked_every));

    // Forward only, and not past the feed.
    assert!(matches!(
        once.advance_to(1),
        Err(StateError::Backwards { .. })
    ));
    assert!(matches!(
        once.advance_to(last + 1),
        Err(StateError::FeedEnds { end, wanted }) if end == last && wanted == last + 1
    ));
}

#[test]
fn a_member_named_before_its_group_gets_the_group_s_ancestors() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("arbiter.sqlite3")).unwrap();
    let states = history(&store);
    let policies = Arc::new(PolicySet::compile(policy_sources(), None, 1).unwrap());
    // Materialise once `x` names `G` but before `G` and `H` exist, then walk to just after `G`
    // is created with `H` as its parent: `x` must be in `H`.
    let mut walker = StateWalker::new(&store, None, config());
    let seqs: Vec<u64> = states.keys().copied().collect();
    walker.advance_to(seqs[3]).unwrap();
    walker.snapshot().unwrap();
    walker.advance_to(seqs[5]).unwrap();
    let snapshot = walker.snapshot().unwrap().with_policies(policies);
    let read = &requests()[0];
    let decision = snapshot.decide(
        read,
        &DecideOptions {
            now: 2000,
            decision_id: "t".into(),
            explain: false,
        },
    );
    assert_eq!(
        decision.outcome.as_str(),
        "allow",
        "{}",
        decision.reason_admin
    );
    assert_eq!(decision.determining[0].id, "h-reads");
}
