//! A server in miniature: a real SQLite store, the snapshot built from it the way
//! `arbiter serve` builds it, and decisions made on it at chosen times and written through the
//! real `DecisionLog`. The same pattern as arbiter-replay's tests.

use arbiter_core::{
    ActionRef, DecisionRequest, EntityInput, EntityRef, InventoryDocument, Outcome,
};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};
use arbiter_log::{ChangeEntry, DecisionEntry, DecisionLog, Entry, LogConfig, LogDb};
use arbiter_store::{Actor, PolicySourceRecord, SqliteStore, Store};
use std::sync::Arc;

pub(crate) struct Server {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: SqliteStore,
    pub(crate) snapshot: Arc<Snapshot>,
    runtime: tokio::runtime::Runtime,
    log: Option<(DecisionLog, std::thread::JoinHandle<()>)>,
    pending: Vec<Entry>,
    next_id: u64,
    last_logged_change: u64,
}

pub(crate) fn actor() -> Actor {
    Actor::new("test-admin", "admin")
}

pub(crate) fn sources(name: &str, text: &str) -> Vec<PolicySource> {
    vec![PolicySource {
        name: name.to_owned(),
        text: text.to_owned(),
    }]
}

pub(crate) fn records(policies: &[PolicySource]) -> Vec<PolicySourceRecord> {
    policies
        .iter()
        .map(|source| PolicySourceRecord {
            name: source.name.clone(),
            text: source.text.clone(),
        })
        .collect()
}

/// `subject` asks to `action` on `resource`, for `delegation` (origin first).
pub(crate) fn request(
    subject: &EntityRef,
    action: &str,
    resource: &EntityRef,
    delegation: &[EntityRef],
) -> DecisionRequest {
    DecisionRequest {
        subject: EntityInput {
            entity: subject.clone(),
            properties: serde_json::Map::new(),
        },
        action: ActionRef {
            name: action.to_owned(),
            properties: serde_json::Map::new(),
        },
        resource: EntityInput {
            entity: resource.clone(),
            properties: serde_json::Map::new(),
        },
        context: serde_json::Map::new(),
        delegation: delegation.to_vec(),
    }
}

impl Server {
    /// Imports the inventory and policies (version 1, active) into a new store.
    pub(crate) fn bootstrap(policies: Vec<PolicySource>, document: &InventoryDocument) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("arbiter.sqlite3")).unwrap();
        let system = Actor::new("bootstrap", "system");
        let compiled = PolicySet::compile(policies.clone(), None, 1).unwrap();
        let version = store
            .create_policy_version(&records(&policies), compiled.digest(), &system, "bootstrap")
            .unwrap();
        store
            .activate_policy_version(version, &system, "bootstrap")
            .unwrap();
        for group in &document.groups {
            store.put_group(group, &system, "bootstrap").unwrap();
        }
        for resource in &document.resources {
            store.put_resource(resource, &system, "bootstrap").unwrap();
        }
        for identity in &document.identities {
            store.put_identity(identity, &system, "bootstrap").unwrap();
        }
        for signal in &document.signals {
            store.put_signal(signal, &system, "bootstrap").unwrap();
        }
        let (loaded, change_seq) = store.load_inventory_with_seq().unwrap();
        let mut builder = InventoryBuilder::new();
        builder.add_document(&loaded).unwrap();
        let mut snapshot = Snapshot::new(
            compiled,
            builder.build(None).unwrap(),
            None,
            EngineConfig::default(),
        );
        snapshot.set_change_seq(change_seq);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let config = LogConfig::new(
            dir.path().join("decisions.sqlite3"),
            dir.path().join("keys/log.key"),
        );
        let log = DecisionLog::open(config).unwrap();
        let mut server = Self {
            dir,
            store,
            snapshot: Arc::new(snapshot),
            runtime,
            log: Some(log),
            pending: Vec::new(),
            next_id: 1,
            last_logged_change: 0,
        };
        server.log_changes();
        server
    }

    /// Decides `request` at `now` on the current snapshot and logs it.
    pub(crate) fn decide(&mut self, request: &DecisionRequest, now: i64) -> Outcome {
        let options = DecideOptions {
            now,
            decision_id: format!("d-{}", self.next_id),
            explain: true,
        };
        self.next_id += 1;
        let decision = self.snapshot.decide(request, &options);
        let outcome = decision.outcome;
        self.pending.push(Entry::Decision(Box::new(DecisionEntry {
            endpoint: "evaluation".into(),
            caller: None,
            request: request.to_value(),
            owner: None,
            decision,
            latency_us: 0,
            redacted: Vec::new(),
            approval: None,
        })));
        outcome
    }

    fn log_changes(&mut self) {
        let changes = self
            .store
            .changes_since(self.last_logged_change, 1000)
            .unwrap();
        for change in changes {
            self.last_logged_change = change.seq;
            self.pending.push(Entry::Change(ChangeEntry {
                change_seq: change.seq,
                at: change.at,
                kind: change.kind,
                subject: change.subject,
                actor: change.actor.id,
                actor_role: change.actor.role,
                reason: change.reason,
                detail: change.detail,
            }));
        }
    }

    /// Flushes and closes the log, and opens it for reading.
    pub(crate) fn finish(&mut self) -> LogDb {
        let entries = std::mem::take(&mut self.pending);
        if let Some((log, writer)) = self.log.take() {
            for chunk in entries.chunks(1000) {
                self.runtime.block_on(log.append(chunk)).unwrap();
            }
            drop(log);
            writer.join().unwrap();
        }
        LogDb::open_read_only(&self.dir.path().join("decisions.sqlite3")).unwrap()
    }
}
