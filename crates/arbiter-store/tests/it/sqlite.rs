//! What only the SQLite backend can show: files, reopening, migrations, atomicity under an
//! injected failure, concurrency.

use crate::{admin, agent, file_store, group_ref, human, memory_store, signal, TestClock, T0};
use arbiter_core::{EntityRef, Lifecycle};
use arbiter_store::{
    ApiKeyRecord, IdentityFilter, Page, PolicySourceRecord, SqliteStore, Store, StoreError,
};
use rusqlite::Connection;
use serde_json::json;
use std::path::Path;
use std::sync::Arc;

fn raw(path: &Path) -> Connection {
    Connection::open(path).unwrap()
}

fn applied_migrations(path: &Path) -> Vec<(u32, String)> {
    let connection = raw(path);
    let mut statement = connection
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .unwrap();
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Writes a little of everything.
fn populate(store: &dyn Store) {
    let admin = admin();
    store
        .create_identity(&human("alice"), &admin, "onboarding")
        .unwrap();
    store
        .create_identity(
            &agent("build-bot", "alice", vec![group_ref("eng")]),
            &admin,
            "new agent",
        )
        .unwrap();
    let sources = [PolicySourceRecord {
        name: "main.cedar".to_owned(),
        text: "permit(principal, action, resource);".to_owned(),
    }];
    let version = store
        .create_policy_version(&sources, "d1", &admin, "first")
        .unwrap();
    store
        .activate_policy_version(version, &admin, "go live")
        .unwrap();
    store
        .put_signal(
            &signal(
                &EntityRef::new("Agent", "build-bot"),
                "risk_score",
                json!(3),
            ),
            &admin,
            "siem",
        )
        .unwrap();
}

#[test]
fn open_creates_the_folder_and_uses_write_ahead_logging() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("nested/deeper/arbiter.db");
    let store = SqliteStore::open(&path).unwrap();
    assert!(path.is_file());
    assert!(format!("{store:?}").contains("arbiter.db"));
    drop(store);
    let connection = raw(&path);
    let mode: String = connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn data_survives_closing_and_reopening() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("arbiter.db");
    let store = file_store(&path);
    populate(&store);
    let (inventory, seq) = store.load_inventory_with_seq().unwrap();
    let feed = store.changes_since(0, 100).unwrap();
    let versions = store.list_policy_versions().unwrap();
    drop(store);

    let store = file_store(&path);
    assert_eq!(store.load_inventory_with_seq().unwrap(), (inventory, seq));
    assert_eq!(store.changes_since(0, 100).unwrap(), feed);
    assert_eq!(store.list_policy_versions().unwrap(), versions);
    assert_eq!(store.active_policy_version().unwrap(), Some(1));
    // The feed continues where it stopped, and so do version numbers.
    let next = store
        .set_lifecycle(
            &EntityRef::new("Agent", "build-bot"),
            Lifecycle::Quarantined,
            &admin(),
            "anomaly",
        )
        .unwrap();
    assert_eq!(next, seq + 1);
    let version = store
        .create_policy_version(&[], "empty", &admin(), "deny all")
        .unwrap();
    assert_eq!(version, 2);
}

#[test]
fn migrations_run_once_and_reopening_is_idempotent() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("arbiter.db");
    let store = file_store(&path);
    populate(&store);
    drop(store);
    let once = applied_migrations(&path);
    assert_eq!(once.len(), SqliteStore::SCHEMA_VERSION as usize);
    assert_eq!(
        once.last().map(|(version, _)| *version),
        Some(SqliteStore::SCHEMA_VERSION)
    );
    for _ in 0..3 {
        let store = file_store(&path);
        assert_eq!(store.latest_seq().unwrap(), 5);
        drop(store);
    }
    assert_eq!(applied_migrations(&path), once);
}

#[test]
fn every_migration_file_is_embedded_in_order() {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names.len(),
        SqliteStore::SCHEMA_VERSION as usize,
        "{names:?}"
    );
    let store_folder = tempfile::tempdir().unwrap();
    let path = store_folder.path().join("arbiter.db");
    drop(file_store(&path));
    for (file, (version, name)) in names.iter().zip(applied_migrations(&path)) {
        assert_eq!(file, &format!("{version:04}_{name}.sql"));
    }
}

#[test]
fn a_database_from_the_future_is_refused_and_left_alone() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("arbiter.db");
    let store = file_store(&path);
    populate(&store);
    drop(store);
    let future = SqliteStore::SCHEMA_VERSION + 1;
    raw(&path)
        .execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, 'from_the_future', 0)",
            [future],
        )
        .unwrap();

    let error = SqliteStore::open(&path).unwrap_err();
    assert_eq!(
        error,
        StoreError::SchemaTooNew {
            found: future,
            supported: SqliteStore::SCHEMA_VERSION
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "database schema version {future} is newer than the {} this build knows: upgrade arbiter",
            SqliteStore::SCHEMA_VERSION
        )
    );
    assert_eq!(applied_migrations(&path).len(), future as usize);
    let events: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM change_events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(events, 5);
}

#[test]
fn a_refused_mutation_changes_nothing() {
    let store = memory_store();
    populate(&store);
    let before = (
        store.load_inventory_with_seq().unwrap(),
        store.list_policy_versions().unwrap(),
        store.changes_since(0, 100).unwrap(),
    );
    let impostor = agent("build-bot", "mallory", vec![]);
    assert!(matches!(
        store.create_identity(&impostor, &admin(), "take over"),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.activate_policy_version(7, &admin(), "nope"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_lifecycle(
            &EntityRef::new("Agent", "ghost"),
            Lifecycle::Revoked,
            &admin(),
            "x"
        ),
        Err(StoreError::NotFound { .. })
    ));
    let sources = [
        PolicySourceRecord {
            name: "a".to_owned(),
            text: String::new(),
        },
        PolicySourceRecord {
            name: "a".to_owned(),
            text: String::new(),
        },
    ];
    assert!(matches!(
        store.create_policy_version(&sources, "d", &admin(), "x"),
        Err(StoreError::Invalid { .. })
    ));
    let after = (
        store.load_inventory_with_seq().unwrap(),
        store.list_policy_versions().unwrap(),
        store.changes_since(0, 100).unwrap(),
    );
    assert_eq!(before, after);
}

#[test]
fn a_failure_after_the_change_is_written_rolls_the_change_back() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("arbiter.db");
    let store = file_store(&path);
    let original = agent("build-bot", "alice", vec![group_ref("eng")]);
    store.create_identity(&original, &admin(), "new").unwrap();
    drop(store);
    // Make the change feed refuse the next event about build-bot: the identity row and its
    // memberships are written before the event, so all of it must roll back.
    raw(&path)
        .execute_batch(
            r#"CREATE TRIGGER refuse_build_bot BEFORE INSERT ON change_events
               WHEN NEW.subject = 'Agent::"build-bot"'
               BEGIN SELECT RAISE(ABORT, 'injected failure'); END;"#,
        )
        .unwrap();

    let store = file_store(&path);
    let changed = agent("build-bot", "bob", vec![group_ref("ops")]);
    let error = store
        .put_identity(&changed, &admin(), "reassign")
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Backend(message) if message.contains("injected failure")),
        "{error}"
    );
    let error = store
        .set_lifecycle(&original.entity_ref(), Lifecycle::Revoked, &admin(), "x")
        .unwrap_err();
    assert!(matches!(error, StoreError::Backend(_)), "{error}");
    assert_eq!(
        store.get_identity(&original.entity_ref()).unwrap(),
        original
    );
    let in_ops = IdentityFilter {
        member_of: Some(group_ref("ops")),
        ..Default::default()
    };
    assert!(store
        .list_identities(&in_ops, &Page::default())
        .unwrap()
        .items
        .is_empty());
    assert_eq!(store.latest_seq().unwrap(), 1);
    // The store is still usable afterwards.
    assert_eq!(
        store
            .create_identity(&human("alice"), &admin(), "new")
            .unwrap(),
        2
    );
}

#[test]
fn history_cannot_be_rewritten_even_with_raw_sql() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("arbiter.db");
    populate(&file_store(&path));
    let connection = raw(&path);
    for statement in [
        "UPDATE change_events SET reason = 'nothing happened'",
        "DELETE FROM change_events",
        "UPDATE policy_versions SET digest = 'forged'",
        "DELETE FROM policy_versions",
        "UPDATE policy_sources SET text = 'permit(principal, action, resource);'",
        "DELETE FROM policy_sources",
    ] {
        let error = connection.execute(statement, []).unwrap_err();
        assert!(
            error.to_string().contains("never") || error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
}

#[test]
fn timestamps_come_from_the_clock() {
    let clock = TestClock::at(T0);
    let store = SqliteStore::open_in_memory()
        .unwrap()
        .with_clock(clock.clone());
    store
        .create_identity(&human("alice"), &admin(), "a")
        .unwrap();
    clock.set(T0 + 60);
    let version = store
        .create_policy_version(&[], "d", &admin(), "b")
        .unwrap();
    clock.set(T0 + 120);
    let key = ApiKeyRecord {
        id: "k1".to_owned(),
        name: "ci".to_owned(),
        role: "admin".to_owned(),
        key_hash: "h1".to_owned(),
        created_at: 42,
        created_by: "bootstrap".to_owned(),
        revoked_at: None,
        acts_for: None,
    };
    store.create_api_key(&key, &admin(), "c").unwrap();
    clock.set(T0 + 180);
    store.revoke_api_key("k1", &admin(), "d").unwrap();

    let times: Vec<i64> = store
        .changes_since(0, 10)
        .unwrap()
        .iter()
        .map(|event| event.at)
        .collect();
    assert_eq!(times, [T0, T0 + 60, T0 + 120, T0 + 180]);
    assert_eq!(
        store.get_policy_version(version).unwrap().created_at,
        T0 + 60
    );
    // A key's own creation time and creator are the caller's; its revocation time is the clock's.
    let stored = store.list_api_keys().unwrap();
    assert_eq!(
        stored,
        [ApiKeyRecord {
            revoked_at: Some(T0 + 180),
            acts_for: None,
            ..key
        }]
    );
}

#[test]
fn concurrent_writers_get_a_gap_free_feed() {
    let folder = tempfile::tempdir().unwrap();
    let store = Arc::new(file_store(&folder.path().join("arbiter.db")));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let subject = EntityRef::new("Agent", format!("bot-{writer}"));
                for n in 0..25 {
                    store
                        .put_signal(
                            &signal(&subject, &format!("s{n}"), json!(n)),
                            &admin(),
                            "load",
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(store.latest_seq().unwrap(), 100);
    let seqs: Vec<u64> = store
        .changes_since(0, 1000)
        .unwrap()
        .iter()
        .map(|event| event.seq)
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    assert_eq!(store.list_signals(None).unwrap().len(), 100);
}

#[test]
fn errors_read_as_sentences() {
    let store = memory_store();
    let cases = [
        (
            store
                .get_identity(&EntityRef::new("Agent", "svc-build"))
                .unwrap_err(),
            r#"unknown identity `Agent::"svc-build"`"#,
        ),
        (
            store.get_policy_version(9).unwrap_err(),
            "unknown policy version `9`",
        ),
        (
            store.revoke_api_key("k9", &admin(), "x").unwrap_err(),
            "unknown api key `k9`",
        ),
        (
            store.changes_since(0, 0).unwrap_err(),
            "invalid limit: `0` is not between 1 and 1000",
        ),
        (
            store.list_groups(&Page::after(10, "zz")).unwrap_err(),
            "invalid after: `zz` is not a cursor of this listing",
        ),
    ];
    for (error, message) in cases {
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn api_key_debug_hides_the_hash() {
    let key = ApiKeyRecord {
        id: "k1".to_owned(),
        name: "ci".to_owned(),
        role: "admin".to_owned(),
        key_hash: "sha256:secret-looking".to_owned(),
        created_at: 0,
        created_by: "bootstrap".to_owned(),
        revoked_at: None,
        acts_for: None,
    };
    let debug = format!("{key:?}");
    assert!(!debug.contains("secret-looking"), "{debug}");
    assert!(debug.contains("k1"), "{debug}");
}

#[test]
fn a_batch_of_identities_is_stored_in_one_transaction_or_not_at_all() {
    let store = memory_store();
    populate(&store);
    let first = store.latest_seq().unwrap();
    let batch = vec![
        agent("batch-1", "alice", vec![]),
        agent("batch-2", "alice", vec![]),
        agent("batch-3", "alice", vec![]),
    ];
    let seqs = store
        .put_identities(&batch, &admin(), "debt figures")
        .unwrap();
    assert_eq!(seqs, vec![first + 1, first + 2, first + 3]);
    let changes = store.changes_since(first, 10).unwrap();
    let subjects: Vec<&str> = changes
        .iter()
        .map(|change| change.subject.as_str())
        .collect();
    assert_eq!(
        subjects,
        [
            "Agent::\"batch-1\"",
            "Agent::\"batch-2\"",
            "Agent::\"batch-3\""
        ]
    );
    assert!(changes.iter().all(|change| change.reason == "debt figures"));

    // One invalid identity refuses the whole batch: nothing stored, no change recorded.
    let before = (
        store.load_inventory_with_seq().unwrap(),
        store.changes_since(0, 1000).unwrap(),
    );
    let mut invalid = agent("batch-5", "alice", vec![]);
    invalid.id = String::new();
    let refused =
        store.put_identities(&[agent("batch-4", "alice", vec![]), invalid], &admin(), "x");
    assert!(
        matches!(refused, Err(StoreError::Invalid { .. })),
        "{refused:?}"
    );
    let after = (
        store.load_inventory_with_seq().unwrap(),
        store.changes_since(0, 1000).unwrap(),
    );
    assert_eq!(before, after);
}
