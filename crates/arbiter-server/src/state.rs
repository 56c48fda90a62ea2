//! The server's shared state: the published snapshots, the key table and the store.

use crate::auth::{governance_snapshot, hash_key, key_entity, KeyInfo, Role};
use crate::problem::ApiError;
use arbiter_core::{InventoryDocument, RequestLimits};
use arbiter_engine::{
    EngineConfig, InventoryBuilder, PolicySet, PolicySource, Schema, Snapshot, SnapshotCell,
};
use arbiter_store::{Actor, ApiKeyRecord, PolicySourceRecord, Store};
use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::Arc;

/// How the server behaves; defaults are safe to expose.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Per-request JSON limits for decision requests.
    pub limits: RequestLimits,
    /// Largest accepted HTTP body, in bytes.
    pub max_body_bytes: usize,
    /// Engine bounds.
    pub engine: EngineConfig,
    /// Whether clients reach the server over TLS (for the URLs in the discovery document).
    pub tls: bool,
    /// Longest a request may take, body upload included. A decision request that runs out of
    /// time is answered with a deny (never a 5xx a proxy might fail open on); others with a 503.
    pub request_timeout: std::time::Duration,
    /// Rules that turn a reported signal into a control on its subject.
    pub signal_rules: Vec<crate::signal_rules::SignalRule>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            limits: RequestLimits::default(),
            max_body_bytes: 1024 * 1024,
            engine: EngineConfig::default(),
            tls: false,
            request_timeout: std::time::Duration::from_secs(10),
            signal_rules: Vec::new(),
        }
    }
}

/// What to load into an empty store on first start.
#[derive(Debug, Default)]
pub struct Bootstrap {
    /// Policy sources to become version 1.
    pub policies: Vec<PolicySource>,
    /// Inventory documents to import.
    pub inventory: Vec<InventoryDocument>,
    /// Plain Cedar entities (groups and resources only are persisted; see the store).
    pub cedar_entities: Vec<serde_json::Value>,
    /// Extra keys to create on first start, by role (the demo makes an enforcement point key).
    pub extra_keys: Vec<(String, Role)>,
}

/// Keys minted on first start, shown once and never again.
#[derive(Debug, Default)]
pub struct NewKeys {
    /// `(name, role, key)`.
    pub keys: Vec<(String, Role, String)>,
}

/// Shared by every handler.
pub struct AppState {
    pub(crate) decisions: SnapshotCell,
    pub(crate) governance: SnapshotCell,
    pub(crate) keys: ArcSwap<HashMap<String, KeyInfo>>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) schema: Option<Arc<Schema>>,
    pub(crate) config: ServerConfig,
    pub(crate) metrics: PrometheusHandle,
    /// Serialises administration writes: store first, then publish, one at a time.
    pub(crate) writer: std::sync::Mutex<()>,
    /// The decision log; `None` only when embedding without one (tests of other layers).
    pub(crate) audit: Option<crate::audit::Audit>,
    /// A policy version deciding alongside the active one, never enforced.
    pub(crate) shadow: arc_swap::ArcSwapOption<crate::shadow::Shadow>,
    /// Trust-debt report runs (one at a time) and the last good report.
    pub(crate) debt_runs: crate::debt::Book,
}

impl AppState {
    /// Opens the server state over a store: loads the inventory and the active policy version,
    /// bootstraps an empty store, and mints a bootstrap admin key when no admin key exists.
    pub fn open(
        store: Arc<dyn Store>,
        schema: Option<Schema>,
        bootstrap: Bootstrap,
        config: ServerConfig,
        metrics: PrometheusHandle,
        now: i64,
    ) -> Result<(Self, NewKeys), String> {
        let system = Actor::new("bootstrap", "system");
        let mut new_keys = NewKeys::default();
        let first_start = store
            .active_policy_version()
            .map_err(|err| err.to_string())?
            .is_none()
            && store.latest_seq().map_err(|err| err.to_string())? == 0;
        if first_start {
            import(store.as_ref(), &bootstrap, schema.as_ref(), &system)?;
        }
        let policies = match store
            .active_policy_version()
            .map_err(|err| err.to_string())?
        {
            Some(version) => {
                let stored = store
                    .get_policy_version(version)
                    .map_err(|err| err.to_string())?;
                compile(&stored.sources, schema.as_ref(), version).map_err(|err| err.to_string())?
            }
            None => PolicySet::empty(),
        };
        let (document, change_seq) = store
            .load_inventory_with_seq()
            .map_err(|err| err.to_string())?;
        let mut builder = InventoryBuilder::new();
        builder
            .add_document(&document)
            .map_err(|err| err.to_string())?;
        let inventory = builder
            .build(schema.as_ref())
            .map_err(|err| err.to_string())?;

        let mut records = store.list_api_keys().map_err(|err| err.to_string())?;
        let has_admin = records
            .iter()
            .any(|record| record.revoked_at.is_none() && record.role == Role::Admin.as_str());
        let mut wanted: Vec<(String, Role)> = Vec::new();
        if !has_admin {
            wanted.push(("bootstrap-admin".to_owned(), Role::Admin));
        }
        if first_start {
            wanted.extend(bootstrap.extra_keys.iter().cloned());
        }
        for (name, role) in wanted {
            let key = crate::auth::generate_key().map_err(|err| err.to_string())?;
            let record = ApiKeyRecord {
                id: uuid::Uuid::now_v7().to_string(),
                name: name.clone(),
                role: role.as_str().to_owned(),
                key_hash: hash_key(&key),
                created_at: now,
                created_by: system.id.clone(),
                revoked_at: None,
                acts_for: None,
            };
            store
                .create_api_key(&record, &system, "minted on start")
                .map_err(|err| err.to_string())?;
            records.push(record);
            new_keys.keys.push((name, role, key));
        }
        let keys: HashMap<String, KeyInfo> = records
            .into_iter()
            .filter(|record| record.revoked_at.is_none())
            .filter_map(|record| {
                Role::parse(&record.role).map(|role| {
                    (
                        record.key_hash,
                        KeyInfo {
                            id: record.id,
                            role,
                            name: record.name,
                            acts_for: record.acts_for,
                        },
                    )
                })
            })
            .collect();
        let governance = governance_snapshot(&keys)?;
        let schema = schema.map(Arc::new);
        let mut snapshot = Snapshot::new(
            policies,
            inventory,
            schema.as_deref().cloned(),
            config.engine.clone(),
        );
        snapshot.set_change_seq(change_seq);
        Ok((
            Self {
                decisions: SnapshotCell::new(snapshot),
                governance: SnapshotCell::new(governance),
                keys: ArcSwap::from_pointee(keys),
                store,
                schema,
                config,
                metrics,
                writer: std::sync::Mutex::new(()),
                audit: None,
                shadow: arc_swap::ArcSwapOption::empty(),
                debt_runs: Default::default(),
            },
            new_keys,
        ))
    }

    /// Records every decision and governance change in `log` (whose database is at `path`)
    /// from now on, keeping the request fields `redaction` names only as hashes.
    pub fn with_log(
        mut self,
        log: arbiter_log::DecisionLog,
        path: std::path::PathBuf,
        redaction: crate::audit::Redaction,
    ) -> Result<Self, String> {
        self.audit = Some(crate::audit::Audit::new(log, path, redaction)?);
        Ok(self)
    }

    pub(crate) fn audit_or_404(&self) -> Result<&crate::audit::Audit, ApiError> {
        self.audit
            .as_ref()
            .ok_or_else(|| ApiError::not_found("this server keeps no decision log"))
    }

    /// The log's health: `None` when it is writable or there is none; otherwise why not.
    pub(crate) fn log_failure(&self) -> Option<String> {
        self.audit
            .as_ref()
            .and_then(|audit| audit.log.health().failure())
    }

    /// Runs one administration write: `change` stores and returns what to publish; the
    /// snapshot is published only when the store accepted the change.
    pub(crate) fn write<T>(
        &self,
        change: impl FnOnce(&mut Snapshot) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut output = None;
        self.decisions.update(|snapshot| {
            output = Some(change(snapshot)?);
            // Writers are serialised, so the newest change is the one just made; the decision
            // log records this position so that replay can rebuild the inventory as of it.
            snapshot.set_change_seq(self.store.latest_seq()?);
            Ok::<_, ApiError>(())
        })?;
        output.ok_or_else(|| ApiError::internal("write produced no result"))
    }

    /// Adds a key to the live table and the governance plane.
    pub(crate) fn add_key(&self, hash: String, info: KeyInfo) -> Result<(), ApiError> {
        let entity = key_entity(&info);
        self.governance
            .update(|snapshot| snapshot.inventory_mut().upsert_cedar_entity(entity, None))?;
        let mut keys = self.keys.load().as_ref().clone();
        keys.insert(hash, info);
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Removes a key: from the next request on, it authenticates nothing.
    pub(crate) fn remove_key(&self, key_id: &str) {
        let mut keys = self.keys.load().as_ref().clone();
        keys.retain(|_, info| info.id != key_id);
        self.keys.store(Arc::new(keys));
        let _ = self.governance.update(|snapshot| {
            snapshot
                .inventory_mut()
                .remove(&arbiter_core::EntityRef::new("ApiKey", key_id))
        });
    }
}

pub(crate) fn compile(
    sources: &[PolicySourceRecord],
    schema: Option<&Schema>,
    version: u64,
) -> Result<PolicySet, arbiter_engine::PolicyError> {
    let sources = sources
        .iter()
        .map(|source| PolicySource {
            name: source.name.clone(),
            text: source.text.clone(),
        })
        .collect();
    PolicySet::compile(sources, schema, version)
}

fn import(
    store: &dyn Store,
    bootstrap: &Bootstrap,
    schema: Option<&Schema>,
    actor: &Actor,
) -> Result<(), String> {
    // Validate everything before storing anything, so a bad bundle leaves the store empty.
    let mut builder = InventoryBuilder::new();
    for document in &bootstrap.inventory {
        builder
            .add_document(document)
            .map_err(|err| err.to_string())?;
    }
    for entities in &bootstrap.cedar_entities {
        builder
            .add_cedar_entities(entities.clone())
            .map_err(|err| err.to_string())?;
    }
    builder.build(schema).map_err(|err| err.to_string())?;
    let plain_entities = bootstrap
        .cedar_entities
        .iter()
        .map(plain_entities_as_groups)
        .collect::<Result<Vec<_>, _>>()?;
    if !bootstrap.policies.is_empty() {
        let compiled = PolicySet::compile(bootstrap.policies.clone(), schema, 1)
            .map_err(|err| err.to_string())?;
        let records: Vec<PolicySourceRecord> = bootstrap
            .policies
            .iter()
            .map(|source| PolicySourceRecord {
                name: source.name.clone(),
                text: source.text.clone(),
            })
            .collect();
        let version = store
            .create_policy_version(&records, compiled.digest(), actor, "bootstrap")
            .map_err(|err| err.to_string())?;
        store
            .activate_policy_version(version, actor, "bootstrap")
            .map_err(|err| err.to_string())?;
    }
    let reason = "bootstrap";
    for group in plain_entities.iter().flatten() {
        store
            .put_group(group, actor, reason)
            .map_err(|err| err.to_string())?;
    }
    for document in &bootstrap.inventory {
        for group in &document.groups {
            store
                .put_group(group, actor, reason)
                .map_err(|err| err.to_string())?;
        }
        for resource in &document.resources {
            store
                .put_resource(resource, actor, reason)
                .map_err(|err| err.to_string())?;
        }
        for identity in &document.identities {
            store
                .put_identity(identity, actor, reason)
                .map_err(|err| err.to_string())?;
        }
        for signal in &document.signals {
            store
                .put_signal(signal, actor, reason)
                .map_err(|err| err.to_string())?;
        }
    }
    Ok(())
}

/// Plain Cedar entities carry no governance facts, which is exactly what a `Group` record is:
/// a typed entity with parents and attributes. They are persisted as such.
fn plain_entities_as_groups(json: &serde_json::Value) -> Result<Vec<arbiter_core::Group>, String> {
    let items = json
        .as_array()
        .ok_or_else(|| "Cedar entities JSON must be an array".to_owned())?;
    items
        .iter()
        .map(|item| {
            let field = |name: &str| item.get(name).cloned().unwrap_or(serde_json::Value::Null);
            if field("tags")
                .as_object()
                .is_some_and(|tags| !tags.is_empty())
            {
                return Err("entity tags cannot be persisted yet".to_owned());
            }
            let uid: arbiter_core::EntityRef = serde_json::from_value(field("uid"))
                .map_err(|err| format!("entity `uid`: {err}"))?;
            let parents: Vec<arbiter_core::EntityRef> = match field("parents") {
                serde_json::Value::Null => Vec::new(),
                parents => serde_json::from_value(parents)
                    .map_err(|err| format!("`{uid}` parents: {err}"))?,
            };
            let attributes = match field("attrs") {
                serde_json::Value::Object(attrs) => attrs,
                _ => serde_json::Map::new(),
            };
            Ok(arbiter_core::Group {
                group_type: uid.entity_type,
                id: uid.id,
                parents,
                attributes,
            })
        })
        .collect()
}
