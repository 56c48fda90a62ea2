//! The conformance story: one walk through every `Store` method, with the answers every backend
//! must give. Run it against each backend (SQLite in memory, SQLite on file, later PostgreSQL).

use crate::{admin, agent, file_store, group_ref, human, memory_store, signal};
use arbiter_core::{
    CredentialMeta, EntityRef, Group, Identity, IdentityKind, Lifecycle, Resource, Sensitivity,
};
use arbiter_store::{
    change_kind, Actor, ApiKeyRecord, ChangeEvent, IdentityFilter, Page, PolicySourceRecord, Store,
    StoreError, MAX_PAGE_LIMIT,
};
use serde_json::json;

#[test]
fn story_sqlite_in_memory() {
    store_story(&memory_store());
}

#[test]
fn story_sqlite_on_file() {
    let folder = tempfile::tempdir().unwrap();
    store_story(&file_store(&folder.path().join("arbiter.db")));
}

/// What the change feed must hold once the story is over, built as the story goes.
struct Journal<'a> {
    store: &'a dyn Store,
    expected: Vec<(Actor, String, &'static str, String)>,
}

impl Journal<'_> {
    /// Checks that a mutation succeeded with the next `seq`, and expects its event.
    fn ok(
        &mut self,
        result: Result<u64, StoreError>,
        actor: &Actor,
        kind: &'static str,
        subject: &str,
    ) {
        let seq = result.unwrap_or_else(|error| panic!("{kind} {subject}: {error}"));
        self.expected
            .push((actor.clone(), self.reason(), kind, subject.to_owned()));
        assert_eq!(seq, self.expected.len() as u64, "{kind} {subject}: seq");
        assert_eq!(self.store.latest_seq().unwrap(), seq);
    }

    /// Checks that a mutation failed as `expected` and appended no change event.
    fn fails(&self, result: Result<u64, StoreError>, expected: &StoreError) {
        assert_eq!(result.as_ref().err(), Some(expected), "{result:?}");
        assert_eq!(self.store.latest_seq().unwrap(), self.expected.len() as u64);
    }

    /// The reason the next mutation gives: unique per mutation, so the feed's reasons can be
    /// checked one by one.
    fn reason(&self) -> String {
        format!("step {}", self.expected.len() + 1)
    }
}

fn not_found(what: &'static str, id: &str) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_owned(),
    }
}

fn conflict(what: &'static str, id: &str, reason: &'static str) -> StoreError {
    StoreError::Conflict {
        what,
        id: id.to_owned(),
        reason,
    }
}

fn ids(identities: &[Identity]) -> Vec<String> {
    identities
        .iter()
        .map(|identity| format!("{}/{}", identity.kind.as_str(), identity.id))
        .collect()
}

fn list_ids(store: &dyn Store, filter: &IdentityFilter) -> Vec<String> {
    let page = store
        .list_identities(filter, &Page::first(MAX_PAGE_LIMIT))
        .unwrap();
    assert_eq!(page.next, None);
    ids(&page.items)
}

/// Every backend must pass this, starting from an empty store.
pub(crate) fn store_story(store: &dyn Store) {
    let admin = admin();
    let operator = Actor::new("alice@example.com", "operator");
    let mut journal = Journal {
        store,
        expected: Vec::new(),
    };

    // An empty store.
    assert_eq!(store.latest_seq().unwrap(), 0);
    assert_eq!(store.load_inventory().unwrap(), Default::default());
    assert_eq!(
        store.changes_since(0, 10).unwrap(),
        Vec::<ChangeEvent>::new()
    );
    assert_eq!(store.active_policy_version().unwrap(), None);
    assert!(store.list_policy_versions().unwrap().is_empty());
    assert!(store.list_api_keys().unwrap().is_empty());

    // Identities: create, and a second create conflicts.
    let eng = group_ref("eng");
    let deployer = EntityRef::new("Role", "deployer");
    let build_bot = agent("build-bot", "alice", vec![eng.clone()]);
    let build_bot_ref = build_bot.entity_ref();
    let ci_token = Identity {
        credential: Some(CredentialMeta {
            holder: EntityRef::new("ServiceAccount", "ci"),
            issued_at: Some(1_700_000_000),
            rotated_at: None,
            expires_at: Some(1_900_000_000),
            last_used_at: None,
        }),
        kind: IdentityKind::Credential,
        ..agent("ci-token", "bob", vec![])
    };
    let service_account = Identity {
        kind: IdentityKind::ServiceAccount,
        ..agent("ci", "bob", vec![deployer.clone()])
    };
    let created = [
        human("alice"),
        human("bob"),
        build_bot.clone(),
        agent("build-bot-2", "bob", vec![eng.clone(), deployer.clone()]),
        agent("deploy-bot", "alice", vec![deployer.clone()]),
        service_account,
        ci_token,
    ];
    for identity in &created {
        let subject = identity.entity_ref().to_string();
        let result = store.create_identity(identity, &admin, &journal.reason());
        journal.ok(result, &admin, change_kind::IDENTITY_CREATE, &subject);
    }
    let duplicate = Identity {
        display_name: Some("impostor".to_owned()),
        ..build_bot.clone()
    };
    journal.fails(
        store.create_identity(&duplicate, &admin, "again"),
        &conflict("identity", r#"Agent::"build-bot""#, "already exists"),
    );
    assert_eq!(
        conflict("identity", r#"Agent::"build-bot""#, "already exists").to_string(),
        r#"identity `Agent::"build-bot"` already exists"#
    );
    journal.fails(
        store.create_identity(&agent("", "alice", vec![]), &admin, "no id"),
        &StoreError::Invalid {
            field: "id",
            reason: "the identity id is empty".to_owned(),
        },
    );
    journal.fails(
        store.create_identity(
            &agent("nobody", "alice", vec![]),
            &Actor::new("", "admin"),
            "who?",
        ),
        &StoreError::Invalid {
            field: "actor",
            reason: "the actor id is empty".to_owned(),
        },
    );

    // Get: round trip, unknown id, unknown type.
    for identity in &created {
        assert_eq!(
            &store.get_identity(&identity.entity_ref()).unwrap(),
            identity
        );
    }
    assert_eq!(
        store.get_identity(&EntityRef::new("Agent", "ghost")),
        Err(not_found("identity", r#"Agent::"ghost""#))
    );
    assert_eq!(
        store.get_identity(&EntityRef::new("Robot", "build-bot")),
        Err(not_found("identity", r#"Robot::"build-bot""#))
    );
    assert_eq!(
        store.get_identity(&EntityRef::new("Human", "build-bot")),
        Err(not_found("identity", r#"Human::"build-bot""#))
    );

    // List: key order is kind (as_str) then id; filters combine.
    let everyone = vec![
        "ai_agent/build-bot",
        "ai_agent/build-bot-2",
        "ai_agent/deploy-bot",
        "credential/ci-token",
        "human/alice",
        "human/bob",
        "service_account/ci",
    ];
    assert_eq!(list_ids(store, &IdentityFilter::default()), everyone);
    let by_kind = IdentityFilter {
        kind: Some(IdentityKind::AiAgent),
        ..Default::default()
    };
    assert_eq!(
        list_ids(store, &by_kind),
        [
            "ai_agent/build-bot",
            "ai_agent/build-bot-2",
            "ai_agent/deploy-bot"
        ]
    );
    let by_owner = IdentityFilter {
        owner: Some("alice".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        list_ids(store, &by_owner),
        ["ai_agent/build-bot", "ai_agent/deploy-bot"]
    );
    let in_deployer = IdentityFilter {
        member_of: Some(deployer.clone()),
        ..Default::default()
    };
    assert_eq!(
        list_ids(store, &in_deployer),
        [
            "ai_agent/build-bot-2",
            "ai_agent/deploy-bot",
            "service_account/ci"
        ]
    );
    let by_prefix = IdentityFilter {
        id_prefix: Some("build-bot".to_owned()),
        ..Default::default()
    };
    assert_eq!(
        list_ids(store, &by_prefix),
        ["ai_agent/build-bot", "ai_agent/build-bot-2"]
    );
    let combined = IdentityFilter {
        kind: Some(IdentityKind::AiAgent),
        owner: Some("bob".to_owned()),
        member_of: Some(eng.clone()),
        id_prefix: Some("build".to_owned()),
        lifecycle: Some(Lifecycle::Active),
    };
    assert_eq!(list_ids(store, &combined), ["ai_agent/build-bot-2"]);
    let nothing = IdentityFilter {
        id_prefix: Some("Build".to_owned()),
        ..Default::default()
    };
    assert_eq!(list_ids(store, &nothing), Vec::<String>::new());

    // Pagination: pages of 3 walk the whole listing once; an identity that appears between
    // pages, before the cursor, is neither returned nor shifts what follows.
    let first = store
        .list_identities(&IdentityFilter::default(), &Page::first(3))
        .unwrap();
    assert_eq!(ids(&first.items), everyone[..3]);
    // A page that ends exactly at the end says so.
    let exact = store.list_identities(&by_kind, &Page::first(3)).unwrap();
    assert_eq!((exact.items.len(), exact.next), (3, None));
    let late = agent("a-bot", "alice", vec![]);
    let result = store.create_identity(&late, &operator, &journal.reason());
    journal.ok(
        result,
        &operator,
        change_kind::IDENTITY_CREATE,
        r#"Agent::"a-bot""#,
    );
    let mut walked = ids(&first.items);
    let mut cursor = first.next;
    let mut n_pages = 1;
    while let Some(after) = cursor {
        let page = store
            .list_identities(&IdentityFilter::default(), &Page::after(3, after))
            .unwrap();
        assert!(!page.items.is_empty());
        walked.extend(ids(&page.items));
        cursor = page.next;
        n_pages += 1;
    }
    assert_eq!(n_pages, 3);
    assert_eq!(walked, everyone);
    // Malformed pages.
    for limit in [0, MAX_PAGE_LIMIT + 1] {
        let error = store
            .list_identities(&IdentityFilter::default(), &Page::first(limit))
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Invalid { field: "limit", .. }),
            "{error}"
        );
    }
    let error = store
        .list_identities(&IdentityFilter::default(), &Page::after(3, "not-a-cursor"))
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid { field: "after", .. }),
        "{error}"
    );

    // Put: updates in place (memberships too), or creates.
    let renamed = Identity {
        display_name: Some("Build bot, second edition".to_owned()),
        member_of: vec![deployer.clone()],
        ..agent("build-bot-2", "bob", vec![])
    };
    let result = store.put_identity(&renamed, &operator, &journal.reason());
    journal.ok(
        result,
        &operator,
        change_kind::IDENTITY_PUT,
        r#"Agent::"build-bot-2""#,
    );
    assert_eq!(store.get_identity(&renamed.entity_ref()).unwrap(), renamed);
    let in_eng = IdentityFilter {
        member_of: Some(eng.clone()),
        ..Default::default()
    };
    assert_eq!(list_ids(store, &in_eng), ["ai_agent/build-bot"]);
    let fresh = agent("review-bot", "alice", vec![]);
    let result = store.put_identity(&fresh, &operator, &journal.reason());
    journal.ok(
        result,
        &operator,
        change_kind::IDENTITY_PUT,
        r#"Agent::"review-bot""#,
    );
    assert_eq!(store.get_identity(&fresh.entity_ref()).unwrap(), fresh);

    // Lifecycle.
    let result = store.set_lifecycle(
        &build_bot_ref,
        Lifecycle::Suspended,
        &operator,
        &journal.reason(),
    );
    journal.ok(
        result,
        &operator,
        change_kind::IDENTITY_LIFECYCLE,
        r#"Agent::"build-bot""#,
    );
    let suspended = store.get_identity(&build_bot_ref).unwrap();
    assert_eq!(suspended.lifecycle, Lifecycle::Suspended);
    assert_eq!(
        suspended,
        Identity {
            lifecycle: Lifecycle::Suspended,
            ..build_bot.clone()
        }
    );
    let by_lifecycle = IdentityFilter {
        lifecycle: Some(Lifecycle::Suspended),
        ..Default::default()
    };
    assert_eq!(list_ids(store, &by_lifecycle), ["ai_agent/build-bot"]);
    journal.fails(
        store.set_lifecycle(
            &EntityRef::new("Agent", "ghost"),
            Lifecycle::Revoked,
            &operator,
            "x",
        ),
        &not_found("identity", r#"Agent::"ghost""#),
    );

    // Delete.
    let deploy_bot_ref = EntityRef::new("Agent", "deploy-bot");
    let result = store.delete_identity(&deploy_bot_ref, &admin, &journal.reason());
    journal.ok(
        result,
        &admin,
        change_kind::IDENTITY_DELETE,
        r#"Agent::"deploy-bot""#,
    );
    assert_eq!(
        store.get_identity(&deploy_bot_ref),
        Err(not_found("identity", r#"Agent::"deploy-bot""#))
    );
    journal.fails(
        store.delete_identity(&deploy_bot_ref, &admin, "twice"),
        &not_found("identity", r#"Agent::"deploy-bot""#),
    );
    assert_eq!(
        list_ids(store, &in_deployer),
        ["ai_agent/build-bot-2", "service_account/ci"]
    );

    // Groups.
    let groups = [
        Group {
            group_type: "Group".to_owned(),
            id: "eng".to_owned(),
            parents: vec![group_ref("staff")],
            attributes: serde_json::Map::new(),
        },
        Group {
            group_type: "Group".to_owned(),
            id: "staff".to_owned(),
            parents: Vec::new(),
            attributes: serde_json::Map::new(),
        },
        Group {
            group_type: "Role".to_owned(),
            id: "deployer".to_owned(),
            parents: Vec::new(),
            attributes: serde_json::Map::new(),
        },
    ];
    for group in &groups {
        let subject = EntityRef::new(&group.group_type, &group.id).to_string();
        let result = store.put_group(group, &admin, &journal.reason());
        journal.ok(result, &admin, change_kind::GROUP_PUT, &subject);
    }
    assert_eq!(store.get_group(&eng).unwrap(), groups[0]);
    let first = store.list_groups(&Page::first(2)).unwrap();
    let rest = store
        .list_groups(&Page::after(2, first.next.clone().unwrap()))
        .unwrap();
    assert_eq!(rest.next, None);
    let listed: Vec<Group> = first.items.into_iter().chain(rest.items).collect();
    assert_eq!(
        listed,
        [groups[0].clone(), groups[1].clone(), groups[2].clone()]
    );
    let error = store.list_groups(&Page::after(2, "00")).unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid { field: "after", .. }),
        "{error}"
    );
    let staff_ref = group_ref("staff");
    let result = store.delete_group(&staff_ref, &admin, &journal.reason());
    journal.ok(
        result,
        &admin,
        change_kind::GROUP_DELETE,
        r#"Group::"staff""#,
    );
    assert_eq!(
        store.get_group(&staff_ref),
        Err(not_found("group", r#"Group::"staff""#))
    );
    journal.fails(
        store.delete_group(&staff_ref, &admin, "twice"),
        &not_found("group", r#"Group::"staff""#),
    );

    // Resources.
    let mut shell = Resource {
        resource_type: "Tool".to_owned(),
        id: "shell".to_owned(),
        sensitivity: Sensitivity::Restricted,
        parents: vec![EntityRef::new("McpServer", "local")],
        attributes: serde_json::Map::new(),
    };
    let github = Resource {
        resource_type: "McpServer".to_owned(),
        id: "github".to_owned(),
        sensitivity: Sensitivity::Internal,
        parents: Vec::new(),
        attributes: serde_json::Map::new(),
    };
    for resource in [&shell, &github] {
        let subject = EntityRef::new(&resource.resource_type, &resource.id).to_string();
        let result = store.put_resource(resource, &admin, &journal.reason());
        journal.ok(result, &admin, change_kind::RESOURCE_PUT, &subject);
    }
    shell.sensitivity = Sensitivity::Confidential;
    let result = store.put_resource(&shell, &admin, &journal.reason());
    journal.ok(
        result,
        &admin,
        change_kind::RESOURCE_PUT,
        r#"Tool::"shell""#,
    );
    let shell_ref = EntityRef::new("Tool", "shell");
    assert_eq!(store.get_resource(&shell_ref).unwrap(), shell);
    let resources = store.list_resources(&Page::first(10)).unwrap();
    assert_eq!(
        (resources.items.clone(), resources.next),
        (vec![github.clone(), shell.clone()], None)
    );
    let github_ref = EntityRef::new("McpServer", "github");
    let result = store.delete_resource(&github_ref, &admin, &journal.reason());
    journal.ok(
        result,
        &admin,
        change_kind::RESOURCE_DELETE,
        r#"McpServer::"github""#,
    );
    assert_eq!(
        store.get_resource(&github_ref),
        Err(not_found("resource", r#"McpServer::"github""#))
    );

    // Signals: the same subject and name replaces.
    let siem = Actor::new("siem-connector", "signal_writer");
    let bob_ref = EntityRef::new("Human", "bob");
    let writes = [
        signal(&build_bot_ref, "risk_score", json!(10)),
        signal(&build_bot_ref, "risk_score", json!(72)),
        signal(&build_bot_ref, "anomaly", json!(true)),
        signal(&bob_ref, "risk_score", json!(5)),
    ];
    for write in &writes {
        let result = store.put_signal(write, &siem, &journal.reason());
        journal.ok(
            result,
            &siem,
            change_kind::SIGNAL_PUT,
            &write.subject.to_string(),
        );
    }
    assert_eq!(
        store.list_signals(Some(&build_bot_ref)).unwrap(),
        [writes[2].clone(), writes[1].clone()]
    );
    let all_signals = store.list_signals(None).unwrap();
    assert_eq!(
        all_signals,
        [writes[2].clone(), writes[1].clone(), writes[3].clone()]
    );
    assert!(store
        .list_signals(Some(&EntityRef::new("Agent", "ghost")))
        .unwrap()
        .is_empty());

    // The whole inventory, and the seq it was read at.
    let (inventory, seq) = store.load_inventory_with_seq().unwrap();
    assert_eq!(seq, store.latest_seq().unwrap());
    let mut all_identities = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_identities(
                &IdentityFilter::default(),
                &Page {
                    limit: 2,
                    after: cursor,
                },
            )
            .unwrap();
        all_identities.extend(page.items);
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(inventory.identities, all_identities);
    assert_eq!(inventory.identities.len(), 8);
    assert_eq!(inventory.groups, [groups[0].clone(), groups[2].clone()]);
    assert_eq!(inventory.resources, [shell.clone()]);
    assert_eq!(inventory.signals, all_signals);
    assert_eq!(store.load_inventory().unwrap(), inventory);

    // Policy versions: numbered, immutable, activated and rolled back.
    let sources = |text: &str| {
        vec![
            PolicySourceRecord {
                name: "agents.cedar".to_owned(),
                text: format!("permit(principal, action, resource) when {{ {text} }};"),
            },
            PolicySourceRecord {
                name: "guards.cedar".to_owned(),
                text: "forbid(principal, action, resource) when { false };\n".to_owned(),
            },
        ]
    };
    for (n, text) in ["true", "false", "1 == 1"].into_iter().enumerate() {
        let reason = journal.reason();
        let version = store
            .create_policy_version(&sources(text), &format!("digest-{n}"), &admin, &reason)
            .unwrap();
        assert_eq!(version, n as u64 + 1);
        journal.expected.push((
            admin.clone(),
            reason,
            change_kind::POLICY_CREATE,
            version.to_string(),
        ));
        assert_eq!(store.latest_seq().unwrap(), journal.expected.len() as u64);
    }
    let v2 = store.get_policy_version(2).unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!(v2.sources, sources("false"));
    assert_eq!(v2.digest, "digest-1");
    assert_eq!(v2.created_by, admin.id);
    assert_eq!(v2.reason, format!("step {}", journal.expected.len() - 1));
    let event_at = store
        .changes_since(journal.expected.len() as u64 - 2, 1)
        .unwrap()[0]
        .at;
    assert_eq!(v2.created_at, event_at);
    for missing in [0, 4, u64::MAX] {
        assert_eq!(
            store.get_policy_version(missing),
            Err(not_found("policy version", &missing.to_string()))
        );
    }
    assert_eq!(store.active_policy_version().unwrap(), None);
    let result = store.activate_policy_version(3, &admin, &journal.reason());
    journal.ok(result, &admin, change_kind::POLICY_ACTIVATE, "3");
    assert_eq!(store.active_policy_version().unwrap(), Some(3));
    let result = store.activate_policy_version(1, &operator, &journal.reason());
    journal.ok(result, &operator, change_kind::POLICY_ACTIVATE, "1");
    assert_eq!(store.active_policy_version().unwrap(), Some(1));
    journal.fails(
        store.activate_policy_version(99, &admin, "no such"),
        &not_found("policy version", "99"),
    );
    assert_eq!(store.active_policy_version().unwrap(), Some(1));
    let summaries = store.list_policy_versions().unwrap();
    assert_eq!(
        summaries
            .iter()
            .map(|s| (s.version, s.digest.as_str(), s.active))
            .collect::<Vec<_>>(),
        [
            (1, "digest-0", true),
            (2, "digest-1", false),
            (3, "digest-2", false)
        ]
    );
    assert_eq!(summaries[1].source_names, ["agents.cedar", "guards.cedar"]);
    assert_eq!(summaries[1].created_at, v2.created_at);
    assert_eq!(summaries[1].reason, v2.reason);
    // Rolling back never rewrote the history.
    assert_eq!(store.get_policy_version(2).unwrap(), v2);
    let twice = [sources("true")[0].clone(), sources("false")[0].clone()];
    let error = store
        .create_policy_version(&twice, "digest", &admin, "duplicate names")
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Invalid {
                field: "sources",
                ..
            }
        ),
        "{error}"
    );
    let error = store
        .create_policy_version(&sources("true"), "", &admin, "no digest")
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Invalid {
                field: "digest",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(store.list_policy_versions().unwrap().len(), 3);
    assert_eq!(store.latest_seq().unwrap(), journal.expected.len() as u64);

    // API keys: the store sees hashes only.
    let key = |id: &str, role: &str| ApiKeyRecord {
        id: id.to_owned(),
        name: format!("{id} key"),
        role: role.to_owned(),
        key_hash: format!("sha256:hash-of-{id}"),
        created_at: 1_700_000_123,
        created_by: admin.id.clone(),
        revoked_at: None,
        acts_for: None,
    };
    let (ci_key, ops_key) = (key("k-ci", "signal_writer"), key("k-ops", "operator"));
    for record in [&ops_key, &ci_key] {
        let result = store.create_api_key(record, &admin, &journal.reason());
        journal.ok(result, &admin, change_kind::API_KEY_CREATE, &record.id);
    }
    assert_eq!(
        store.find_api_key_by_hash(&ci_key.key_hash).unwrap(),
        Some(ci_key.clone())
    );
    assert_eq!(store.find_api_key_by_hash("sha256:unknown").unwrap(), None);
    journal.fails(
        store.create_api_key(
            &ApiKeyRecord {
                name: "again".to_owned(),
                ..ci_key.clone()
            },
            &admin,
            "x",
        ),
        &conflict("api key", "k-ci", "already exists"),
    );
    journal.fails(
        store.create_api_key(
            &ApiKeyRecord {
                id: "k-copy".to_owned(),
                ..ci_key.clone()
            },
            &admin,
            "x",
        ),
        &conflict("api key", "k-copy", "has the same hash as another key"),
    );
    let error = store
        .create_api_key(
            &ApiKeyRecord {
                revoked_at: Some(1),
                acts_for: None,
                ..key("k-dead", "admin")
            },
            &admin,
            "x",
        )
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Invalid {
                field: "revoked_at",
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(
        store.list_api_keys().unwrap(),
        [ci_key.clone(), ops_key.clone()]
    );
    let result = store.revoke_api_key("k-ci", &operator, &journal.reason());
    journal.ok(result, &operator, change_kind::API_KEY_REVOKE, "k-ci");
    assert_eq!(store.find_api_key_by_hash(&ci_key.key_hash).unwrap(), None);
    let keys = store.list_api_keys().unwrap();
    let revoke_at = store
        .changes_since(store.latest_seq().unwrap() - 1, 1)
        .unwrap()[0]
        .at;
    assert_eq!(
        keys,
        [
            ApiKeyRecord {
                revoked_at: Some(revoke_at),
                acts_for: None,
                ..ci_key.clone()
            },
            ops_key.clone()
        ]
    );
    journal.fails(
        store.revoke_api_key("k-ci", &operator, "twice"),
        &conflict("api key", "k-ci", "is already revoked"),
    );
    journal.fails(
        store.revoke_api_key("k-ghost", &operator, "none"),
        &not_found("api key", "k-ghost"),
    );

    // The change feed: every successful mutation once, in order, with who and why.
    let latest = store.latest_seq().unwrap();
    assert_eq!(latest, journal.expected.len() as u64);
    let mut feed = Vec::new();
    loop {
        let batch = store.changes_since(feed.len() as u64, 7).unwrap();
        if batch.is_empty() {
            break;
        }
        assert!(batch.len() <= 7);
        feed.extend(batch);
    }
    assert_eq!(feed.len(), journal.expected.len());
    for (n, (event, (actor, reason, kind, subject))) in
        feed.iter().zip(&journal.expected).enumerate()
    {
        assert_eq!(event.seq, n as u64 + 1);
        assert_eq!(
            (
                &event.actor,
                &event.reason,
                event.kind.as_str(),
                &event.subject
            ),
            (actor, reason, *kind, subject),
            "event {}",
            event.seq
        );
    }
    assert!(feed.windows(2).all(|pair| pair[0].at <= pair[1].at));
    assert_eq!(
        store.changes_since(latest, 10).unwrap(),
        Vec::<ChangeEvent>::new()
    );
    assert_eq!(
        store.changes_since(u64::MAX, 10).unwrap(),
        Vec::<ChangeEvent>::new()
    );
    assert_eq!(store.changes_since(3, 2).unwrap(), feed[3..5]);
    let error = store.changes_since(0, 0).unwrap_err();
    assert!(
        matches!(error, StoreError::Invalid { field: "limit", .. }),
        "{error}"
    );

    // Details say what changed.
    let detail_of = |kind: &str, subject: &str| -> serde_json::Value {
        feed.iter()
            .find(|event| event.kind == kind && event.subject == subject)
            .unwrap_or_else(|| panic!("no {kind} event for {subject}"))
            .detail
            .clone()
    };
    assert_eq!(
        detail_of(change_kind::IDENTITY_CREATE, r#"Agent::"build-bot""#),
        json!({ "after": build_bot })
    );
    assert_eq!(
        detail_of(change_kind::IDENTITY_PUT, r#"Agent::"build-bot-2""#),
        json!({ "after": renamed, "before": created[3] })
    );
    assert_eq!(
        detail_of(change_kind::IDENTITY_PUT, r#"Agent::"review-bot""#),
        json!({ "after": fresh, "before": null })
    );
    assert_eq!(
        detail_of(change_kind::IDENTITY_LIFECYCLE, r#"Agent::"build-bot""#),
        json!({ "after": "suspended", "before": "active" })
    );
    assert_eq!(
        detail_of(change_kind::IDENTITY_DELETE, r#"Agent::"deploy-bot""#),
        json!({ "before": created[4] })
    );
    assert_eq!(
        detail_of(change_kind::GROUP_DELETE, r#"Group::"staff""#),
        json!({ "before": groups[1] })
    );
    assert_eq!(
        detail_of(change_kind::POLICY_CREATE, "2"),
        json!({ "version": 2, "digest": "digest-1", "sources": ["agents.cedar", "guards.cedar"] })
    );
    assert_eq!(
        detail_of(change_kind::POLICY_ACTIVATE, "1"),
        json!({ "after": 1, "before": 3 })
    );
    assert_eq!(
        detail_of(change_kind::POLICY_ACTIVATE, "3"),
        json!({ "after": 3, "before": null })
    );
    assert_eq!(
        detail_of(change_kind::API_KEY_REVOKE, "k-ci"),
        json!({ "id": "k-ci", "name": "k-ci key", "role": "signal_writer" })
    );
    let signal_events: Vec<_> = feed
        .iter()
        .filter(|event| event.kind == change_kind::SIGNAL_PUT)
        .map(|event| event.detail.clone())
        .collect();
    assert_eq!(
        signal_events[1],
        json!({ "after": writes[1], "before": writes[0] })
    );
    // No key hash ever reaches the feed.
    let whole_feed = serde_json::to_string(&feed).unwrap();
    assert!(!whole_feed.contains("hash-of-"), "{whole_feed}");
}
