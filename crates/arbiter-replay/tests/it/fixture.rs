//! A server in miniature: a real SQLite store, the live snapshot kept the way
//! `arbiter-server` keeps it (built from the store at start, then changed in place by each
//! administration write, stamped with the feed position), and a real decision log written
//! through `DecisionLog`.

use arbiter_core::{
    Decision, DecisionRequest, EntityRef, Group, Identity, InventoryDocument, Lifecycle, Outcome,
    Signal,
};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Schema, Snapshot,
};
use arbiter_log::{ChangeEntry, DecisionEntry, DecisionLog, Entry, LogConfig, LogDb};
use arbiter_store::{Actor, PolicySourceRecord, SqliteStore, Store};
use std::path::PathBuf;
use std::sync::Arc;

/// Entries per `DecisionLog::append` call.
const APPEND: usize = 1000;

/// A decision as the miniature server made it, with the snapshot it was made on, so tests can
/// re-evaluate it directly.
pub(crate) struct Made {
    pub(crate) request: DecisionRequest,
    pub(crate) decision: Decision,
    pub(crate) snapshot: Arc<Snapshot>,
}

pub(crate) struct Server {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: SqliteStore,
    pub(crate) schema: Option<Schema>,
    pub(crate) snapshot: Arc<Snapshot>,
    pub(crate) made: Vec<Made>,
    /// Whether to keep every decision in `made` (the large test does not).
    pub(crate) keep_made: bool,
    runtime: tokio::runtime::Runtime,
    log: Option<(DecisionLog, std::thread::JoinHandle<()>)>,
    pending: Vec<Entry>,
    next_id: u64,
    last_logged_change: u64,
}

fn actor() -> Actor {
    Actor::new("test-admin", "admin")
}

pub(crate) fn sources(name: &str, text: &str) -> Vec<PolicySource> {
    vec![PolicySource {
        name: name.to_owned(),
        text: text.to_owned(),
    }]
}

impl Server {
    /// Imports a bundle into a new store (version 1 active) and starts the way `serve` does.
    pub(crate) fn bootstrap(
        policies: Vec<PolicySource>,
        document: &InventoryDocument,
        extra_groups: &[Group],
        schema: Option<Schema>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("arbiter.sqlite3")).unwrap();
        let system = Actor::new("bootstrap", "system");
        let compiled = PolicySet::compile(policies.clone(), schema.as_ref(), 1).unwrap();
        let version = store
            .create_policy_version(&records(&policies), compiled.digest(), &system, "bootstrap")
            .unwrap();
        store
            .activate_policy_version(version, &system, "bootstrap")
            .unwrap();
        for group in extra_groups.iter().chain(&document.groups) {
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
        // Start: compile the active version, build the inventory from the store.
        let (loaded, change_seq) = store.load_inventory_with_seq().unwrap();
        let mut builder = InventoryBuilder::new();
        builder.add_document(&loaded).unwrap();
        let inventory = builder.build(schema.as_ref()).unwrap();
        let mut snapshot =
            Snapshot::new(compiled, inventory, schema.clone(), EngineConfig::default());
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
            schema,
            snapshot: Arc::new(snapshot),
            made: Vec::new(),
            keep_made: true,
            runtime,
            log: Some(log),
            pending: Vec::new(),
            next_id: 1,
            last_logged_change: 0,
        };
        server.log_changes();
        server
    }

    pub(crate) fn log_path(&self) -> PathBuf {
        self.dir.path().join("decisions.sqlite3")
    }

    /// An administration write: change the store, then publish the changed snapshot stamped
    /// with the feed position (what `AppState::write` does).
    fn write(&mut self, change: impl FnOnce(&mut Snapshot, &SqliteStore)) {
        let mut next = self.snapshot.as_ref().clone();
        change(&mut next, &self.store);
        next.set_change_seq(self.store.latest_seq().unwrap());
        self.snapshot = Arc::new(next);
        self.log_changes();
    }

    pub(crate) fn set_lifecycle(&mut self, entity: &EntityRef, lifecycle: Lifecycle) {
        self.write(|snapshot, store| {
            snapshot
                .inventory_mut()
                .set_lifecycle(entity, lifecycle)
                .unwrap();
            store
                .set_lifecycle(entity, lifecycle, &actor(), "test")
                .unwrap();
        });
    }

    pub(crate) fn put_identity(&mut self, identity: &Identity) {
        let schema = self.schema.clone();
        self.write(|snapshot, store| {
            snapshot
                .inventory_mut()
                .upsert_identity(identity, schema.as_ref())
                .unwrap();
            store.put_identity(identity, &actor(), "test").unwrap();
        });
    }

    pub(crate) fn put_signal(&mut self, signal: &Signal) {
        self.write(|snapshot, store| {
            snapshot.inventory_mut().set_signal(signal.clone()).unwrap();
            store.put_signal(signal, &actor(), "test").unwrap();
        });
    }

    /// Stores a new policy version without activating it.
    pub(crate) fn upload(&mut self, policies: Vec<PolicySource>) -> u64 {
        let compiled = PolicySet::compile(policies.clone(), self.schema.as_ref(), 0).unwrap();
        let version = self
            .store
            .create_policy_version(&records(&policies), compiled.digest(), &actor(), "test")
            .unwrap();
        self.log_changes();
        version
    }

    pub(crate) fn activate(&mut self, version: u64) {
        let stored = self.store.get_policy_version(version).unwrap();
        let sources = stored
            .sources
            .into_iter()
            .map(|source| PolicySource {
                name: source.name,
                text: source.text,
            })
            .collect();
        let compiled =
            Arc::new(PolicySet::compile(sources, self.schema.as_ref(), version).unwrap());
        self.write(|snapshot, store| {
            store
                .activate_policy_version(version, &actor(), "test")
                .unwrap();
            *snapshot = snapshot.with_policies(compiled);
        });
    }

    /// Decides requests at `now` on the current snapshot (on two threads, as a server would)
    /// and logs them.
    pub(crate) fn decide(&mut self, requests: &[DecisionRequest], now: i64) -> Vec<Outcome> {
        let first_id = self.next_id;
        self.next_id += requests.len() as u64;
        let snapshot = Arc::clone(&self.snapshot);
        let half = requests.len().div_ceil(2).max(1);
        let decisions: Vec<Decision> = std::thread::scope(|scope| {
            let workers: Vec<_> = requests
                .chunks(half)
                .enumerate()
                .map(|(chunk_idx, chunk)| {
                    let snapshot = Arc::clone(&snapshot);
                    scope.spawn(move || {
                        chunk
                            .iter()
                            .enumerate()
                            .map(|(idx, request)| {
                                let options = DecideOptions {
                                    now,
                                    decision_id: format!(
                                        "d-{}",
                                        first_id + (chunk_idx * half + idx) as u64
                                    ),
                                    explain: true,
                                };
                                snapshot.decide(request, &options)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|worker| worker.join().unwrap())
                .collect()
        });
        let outcomes = decisions.iter().map(|decision| decision.outcome).collect();
        for (request, decision) in requests.iter().zip(decisions) {
            if self.keep_made {
                self.made.push(Made {
                    request: request.clone(),
                    decision: decision.clone(),
                    snapshot: Arc::clone(&snapshot),
                });
            }
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
            if self.pending.len() >= APPEND {
                self.flush();
            }
        }
        outcomes
    }

    /// Appends an entry as is (tests that forge one).
    pub(crate) fn append_raw(&mut self, entry: Entry) {
        self.pending.push(entry);
    }

    /// Copies new change events into the log, as the server does.
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

    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let entries = std::mem::take(&mut self.pending);
        let (log, _) = self.log.as_ref().unwrap();
        self.runtime.block_on(log.append(&entries)).unwrap();
    }

    /// Flushes and closes the log, and opens it for reading.
    pub(crate) fn finish(&mut self) -> LogDb {
        self.flush();
        if let Some((log, writer)) = self.log.take() {
            drop(log);
            writer.join().unwrap();
        }
        LogDb::open_read_only(&self.log_path()).unwrap()
    }
}

fn records(policies: &[PolicySource]) -> Vec<PolicySourceRecord> {
    policies
        .iter()
        .map(|source| PolicySourceRecord {
            name: source.name.clone(),
            text: source.text.clone(),
        })
        .collect()
}

/// Plain Cedar entities (actions and their groups) as the store keeps them: as groups.
pub(crate) fn entities_as_groups(json: &serde_json::Value) -> Vec<Group> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let uid: EntityRef = serde_json::from_value(item["uid"].clone()).unwrap();
            let parents: Vec<EntityRef> = match item.get("parents") {
                Some(parents) => serde_json::from_value(parents.clone()).unwrap(),
                None => Vec::new(),
            };
            Group {
                group_type: uid.entity_type,
                id: uid.id,
                parents,
                attributes: serde_json::Map::new(),
            }
        })
        .collect()
}
