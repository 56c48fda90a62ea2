//! Integration tests for the store, through its public API (plus raw SQL where a test must
//! tamper with the database file).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

mod approvals;
mod sqlite;
mod story;

use arbiter_core::{EntityRef, Identity, IdentityKind, Lifecycle, Signal, Timestamp};
use arbiter_store::{Actor, Clock, SqliteStore};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A clock the test sets; it does not move by itself.
#[derive(Debug)]
pub(crate) struct TestClock(AtomicI64);

impl TestClock {
    pub(crate) fn at(now: Timestamp) -> Arc<Self> {
        Arc::new(Self(AtomicI64::new(now)))
    }

    pub(crate) fn set(&self, now: Timestamp) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.0.load(Ordering::SeqCst)
    }
}

pub(crate) const T0: Timestamp = 1_760_000_000;

pub(crate) fn memory_store() -> SqliteStore {
    SqliteStore::open_in_memory()
        .unwrap()
        .with_clock(TestClock::at(T0))
}

pub(crate) fn file_store(path: &Path) -> SqliteStore {
    SqliteStore::open(path)
        .unwrap()
        .with_clock(TestClock::at(T0))
}

pub(crate) fn admin() -> Actor {
    Actor::new("key-admin", "admin")
}

pub(crate) fn human(id: &str) -> Identity {
    Identity {
        id: id.to_owned(),
        kind: IdentityKind::Human,
        display_name: Some(id.to_uppercase()),
        owner: None,
        sponsor: None,
        lifecycle: Lifecycle::Active,
        member_of: Vec::new(),
        credential: None,
        attributes: serde_json::Map::new(),
    }
}

pub(crate) fn agent(id: &str, owner: &str, member_of: Vec<EntityRef>) -> Identity {
    let mut attributes = serde_json::Map::new();
    attributes.insert("model".to_owned(), serde_json::json!("claude"));
    attributes.insert("max_tokens".to_owned(), serde_json::json!(4096));
    Identity {
        id: id.to_owned(),
        kind: IdentityKind::AiAgent,
        display_name: None,
        owner: Some(owner.to_owned()),
        sponsor: Some(EntityRef::new("ServiceAccount", "orchestrator")),
        lifecycle: Lifecycle::Active,
        member_of,
        credential: None,
        attributes,
    }
}

pub(crate) fn signal(subject: &EntityRef, name: &str, value: serde_json::Value) -> Signal {
    Signal {
        subject: subject.clone(),
        name: name.to_owned(),
        value,
        source: "siem".to_owned(),
        observed_at: T0,
        ttl_seconds: 300,
    }
}

pub(crate) fn group_ref(id: &str) -> EntityRef {
    EntityRef::new("Group", id)
}
