//! Approvals in the store: one pending request per digest, decided once, never revived, and a
//! grant spent exactly once however many callers race for it.

use crate::{admin, TestClock, T0};
use arbiter_store::{ApprovalRecord, SqliteStore, Store, StoreError};
use serde_json::json;
use std::sync::Arc;

fn request(id: &str, digest: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: id.into(),
        digest: digest.into(),
        state: "pending".into(),
        principal: r#"Agent::"build-bot""#.into(),
        body: json!({"asked": "delete"}),
        created_at: T0,
        expires_at: T0 + 600,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        uses_left: 0,
        grant_expires_at: None,
    }
}

#[test]
fn one_pending_request_per_digest_decided_once_and_never_revived() {
    let clock = TestClock::at(T0);
    let store = SqliteStore::open_in_memory()
        .unwrap()
        .with_clock(clock.clone());
    let (first, created) = store
        .request_approval(&request("apr-1", "d1"), &admin(), "asked")
        .unwrap();
    assert!(created);
    let (again, created) = store
        .request_approval(&request("apr-2", "d1"), &admin(), "asked")
        .unwrap();
    assert!(!created, "the same request waits on the same approval");
    assert_eq!(again.id, first.id);

    let approved = store
        .decide_approval(
            "apr-1",
            true,
            r#"Human::"alice""#,
            1,
            T0 + 300,
            &admin(),
            "ok",
        )
        .unwrap();
    assert_eq!(approved.state, "approved");
    assert_eq!(approved.uses_left, 1);
    let revived = store.decide_approval("apr-1", false, r#"Human::"bob""#, 0, 0, &admin(), "no");
    assert!(
        matches!(revived, Err(StoreError::Conflict { .. })),
        "{revived:?}"
    );

    // A request past its deadline cannot be approved.
    store
        .request_approval(&request("apr-3", "d3"), &admin(), "asked")
        .unwrap();
    clock.set(T0 + 601);
    let late = store.decide_approval(
        "apr-3",
        true,
        r#"Human::"alice""#,
        1,
        T0 + 900,
        &admin(),
        "late",
    );
    assert!(matches!(late, Err(StoreError::Conflict { .. })), "{late:?}");

    // The grant has expired too by now.
    assert!(store.use_grant("d1", T0 + 601, &admin()).unwrap().is_none());
    assert_eq!(store.list_approvals(Some("pending"), 10).unwrap().len(), 1);
    assert_eq!(store.list_approvals(None, 10).unwrap().len(), 2);
}

#[test]
fn a_one_use_grant_is_spent_exactly_once_under_100_concurrent_callers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(dir.path().join("store.sqlite3"))
            .unwrap()
            .with_clock(TestClock::at(T0)),
    );
    store
        .request_approval(&request("apr-1", "digest"), &admin(), "asked")
        .unwrap();
    store
        .decide_approval(
            "apr-1",
            true,
            r#"Human::"alice""#,
            1,
            T0 + 300,
            &admin(),
            "ok",
        )
        .unwrap();
    let callers: Vec<_> = (0..100)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.use_grant("digest", T0 + 1, &admin()).unwrap())
        })
        .collect();
    let granted = callers
        .into_iter()
        .map(|caller| caller.join().unwrap())
        .filter(Option::is_some)
        .count();
    assert_eq!(granted, 1);
    // Another digest was never covered.
    assert!(store
        .use_grant("other", T0 + 1, &admin())
        .unwrap()
        .is_none());
}
