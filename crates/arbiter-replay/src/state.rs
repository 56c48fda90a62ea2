//! The inventory as of a position in the store's change feed, rebuilt by walking the feed
//! forward from the beginning.
//!
//! Two copies of the state move together. The *document* is what the store held after each
//! change (identities, groups, resources, signals), kept exactly as the feed's `after` and
//! `before` images say; it is the truth. The *live* inventory is the engine's, kept current
//! with the same O(log n) operations the server applies, so that a long walk never rebuilds
//! anything. When an operation cannot be expressed incrementally (removing a group that still
//! has members, an `Action` stored as a group), the live copy is dropped and rebuilt from the
//! document, the way a server starting at that position would build it.
//!
//! INVARIANT: the live inventory, when present, equals what `InventoryBuilder` makes of the
//! document. The one place the engine's incremental operations would drift from that is an
//! entity added after its members named it as a parent (their ancestor sets would miss the new
//! entity's own ancestors), so a newly added entity's members are re-applied; and an identity
//! deleted and then created again gets back the signals the store kept about it.

use arbiter_core::{EntityRef, Group, Identity, InventoryDocument, Lifecycle, Resource, Signal};
use arbiter_engine::{EngineConfig, InventoryBuilder, PolicySet, Schema, Snapshot};
use arbiter_store::{change_kind, ChangeEvent, Store, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How many change events one read of the feed asks for.
const FEED_PAGE: u32 = 1000;

/// Why the state at a position cannot be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The store's feed ends before the position asked for: probably not the store the
    /// decisions were made against.
    #[error("the store's change feed ends at {end}, before change {wanted}")]
    FeedEnds {
        /// The last change in the store.
        end: u64,
        /// The position asked for.
        wanted: u64,
    },
    /// Positions must be asked for in increasing order.
    #[error("change {wanted} is behind the walk, already at {at}")]
    Backwards {
        /// Where the walk is.
        at: u64,
        /// The position asked for.
        wanted: u64,
    },
    /// A change could not be applied; every later state is unknown.
    #[error("change {seq} (`{kind}` of `{subject}`): {message}")]
    Change {
        /// The change.
        seq: u64,
        /// Its kind.
        kind: String,
        /// What it changed.
        subject: String,
        /// Why it could not be applied.
        message: String,
    },
    /// The document at this position does not make an inventory.
    #[error("the inventory as of change {seq} does not load: {message}")]
    Build {
        /// The position.
        seq: u64,
        /// The engine's complaint.
        message: String,
    },
    /// A what-if's inventory change cannot be made on the state at this position.
    #[error("the candidate change cannot be made as of change {seq}: {message}")]
    Candidate {
        /// The position.
        seq: u64,
        /// The engine's complaint.
        message: String,
    },
    /// The store failed.
    #[error("reading the change feed: {0}")]
    Store(#[from] StoreError),
}

/// A change to the inventory a what-if makes on top of each recorded state, as an
/// administrator would make it through the store (an ordinary identity change).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InventoryChange {
    /// Takes `group` out of `identity`'s direct memberships (`member_of`). Where the identity
    /// does not exist yet, or is not a direct member of `group` at that point of the feed, the
    /// state is left as it was: the change removes what is there, it does not invent history.
    RemoveMembership {
        /// The identity, e.g. `Agent::"build-bot"`.
        identity: EntityRef,
        /// The group or role it leaves, e.g. `Role::"admins"`.
        group: EntityRef,
    },
}

impl std::fmt::Display for InventoryChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InventoryChange::RemoveMembership { identity, group } => {
                write!(f, "remove {identity} from {group}")
            }
        }
    }
}

/// A member of a group or resource: whatever names it as a parent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Member {
    Identity(EntityRef),
    Group(EntityRef),
    Resource(EntityRef),
}

/// What the store held: its three tables of entities and its signals.
#[derive(Debug, Default)]
struct Document {
    identities: BTreeMap<EntityRef, Identity>,
    /// Identity change events name their subject as `Type::"id"`.
    identity_by_subject: HashMap<String, EntityRef>,
    groups: BTreeMap<EntityRef, Group>,
    resources: BTreeMap<EntityRef, Resource>,
    signals: BTreeMap<(EntityRef, String), Signal>,
    /// Runtime controls in force, by id.
    controls: BTreeMap<String, arbiter_core::Control>,
    /// Direct parent to the entities naming it.
    members: HashMap<EntityRef, BTreeSet<Member>>,
}

impl Document {
    fn link(&mut self, member: &Member, parents: &[EntityRef]) {
        for parent in parents {
            self.members
                .entry(parent.clone())
                .or_default()
                .insert(member.clone());
        }
    }

    fn unlink(&mut self, member: &Member, parents: &[EntityRef]) {
        for parent in parents {
            if let Some(members) = self.members.get_mut(parent) {
                members.remove(member);
                if members.is_empty() {
                    self.members.remove(parent);
                }
            }
        }
    }

    fn to_document(&self) -> InventoryDocument {
        InventoryDocument {
            identities: self.identities.values().cloned().collect(),
            groups: self.groups.values().cloned().collect(),
            resources: self.resources.values().cloned().collect(),
            signals: self.signals.values().cloned().collect(),
            controls: self.controls.values().cloned().collect(),
        }
    }
}

/// Walks the store's change feed forward and gives the state as of any later position.
///
/// Ask for positions in increasing order: each change is read and applied once, so replaying
/// any number of decisions costs one pass over the feed.
pub struct StateWalker<'a> {
    store: &'a dyn Store,
    schema: Option<Schema>,
    config: EngineConfig,
    /// The last change applied.
    position: u64,
    /// Changes read but not applied yet.
    pending: VecDeque<ChangeEvent>,
    /// The position up to which the feed has been read.
    read_to: u64,
    /// Set once a read of the feed came back empty at `read_to`.
    feed_end: Option<u64>,
    document: Document,
    /// The engine's copy, `None` until first asked for and after a change it cannot apply.
    live: Option<Snapshot>,
    /// A change that could not be applied: every later state is unknown.
    broken: Option<StateError>,
}

impl std::fmt::Debug for StateWalker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateWalker")
            .field("position", &self.position)
            .field("identities", &self.document.identities.len())
            .field("live", &self.live.is_some())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<'a> StateWalker<'a> {
    /// A walk over `store`'s feed, at position 0 (the empty inventory). Inventories are built
    /// and checked against `schema`, the way the server does.
    pub fn new(store: &'a dyn Store, schema: Option<Schema>, config: EngineConfig) -> Self {
        Self {
            store,
            schema,
            config,
            position: 0,
            pending: VecDeque::new(),
            read_to: 0,
            feed_end: None,
            document: Document::default(),
            live: None,
            broken: None,
        }
    }

    /// The last change applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// What the store held as of the current position, each list in key order (as
    /// [`Store::load_inventory`] gives it).
    pub fn document(&self) -> InventoryDocument {
        self.document.to_document()
    }

    /// Applies every change up to and including `seq`.
    pub fn advance_to(&mut self, seq: u64) -> Result<(), StateError> {
        if seq < self.position {
            return Err(StateError::Backwards {
                at: self.position,
                wanted: seq,
            });
        }
        if let Some(end) = self.feed_end.filter(|end| seq > *end) {
            return Err(StateError::FeedEnds { end, wanted: seq });
        }
        while self.position < seq {
            let Some(event) = self.next_event()? else {
                let end = self.read_to;
                self.feed_end = Some(end);
                return Err(StateError::FeedEnds { end, wanted: seq });
            };
            let event_seq = event.seq;
            if self.broken.is_none() {
                if event_seq != self.position + 1 {
                    self.broken = Some(StateError::Change {
                        seq: event_seq,
                        kind: event.kind.clone(),
                        subject: event.subject.clone(),
                        message: format!("the feed skips from {} to {event_seq}", self.position),
                    });
                } else if let Err(message) = self.apply(&event) {
                    self.broken = Some(StateError::Change {
                        seq: event_seq,
                        kind: event.kind,
                        subject: event.subject,
                        message,
                    });
                }
            }
            self.position = event_seq;
        }
        Ok(())
    }

    /// The state as of the current position: its inventory, the schema and the engine
    /// configuration, with an empty policy set to be replaced (`Snapshot::with_policies`).
    /// O(1) unless the engine's copy has to be rebuilt.
    pub fn snapshot(&mut self) -> Result<Snapshot, StateError> {
        if let Some(broken) = &self.broken {
            return Err(broken.clone());
        }
        let live = match self.live.take() {
            Some(live) => live,
            None => self.build()?,
        };
        let mut snapshot = live.clone();
        snapshot.set_change_seq(self.position);
        self.live = Some(live);
        Ok(snapshot)
    }

    /// The state as of the current position with `changes` made on top of it, for a what-if.
    /// Each change is one O(log n) update of a copy of the engine's inventory, never a rebuild;
    /// the walk's own state is left untouched, so later positions are unaffected.
    pub fn snapshot_with(&mut self, changes: &[InventoryChange]) -> Result<Snapshot, StateError> {
        let mut snapshot = self.snapshot()?;
        for change in changes {
            match change {
                InventoryChange::RemoveMembership { identity, group } => {
                    let Some(current) = self.document.identities.get(identity) else {
                        continue;
                    };
                    if !current.member_of.contains(group) {
                        continue;
                    }
                    let mut changed = current.clone();
                    changed.member_of.retain(|parent| parent != group);
                    snapshot
                        .inventory_mut()
                        .upsert_identity(&changed, self.schema.as_ref())
                        .map_err(|err| StateError::Candidate {
                            seq: self.position,
                            message: format!("{change}: {err}"),
                        })?;
                }
            }
        }
        Ok(snapshot)
    }

    fn build(&self) -> Result<Snapshot, StateError> {
        let failed = |message: String| StateError::Build {
            seq: self.position,
            message,
        };
        let mut builder = InventoryBuilder::new();
        builder
            .add_document(&self.document.to_document())
            .map_err(|err| failed(err.to_string()))?;
        let inventory = builder
            .build(self.schema.as_ref())
            .map_err(|err| failed(err.to_string()))?;
        Ok(Snapshot::new(
            PolicySet::empty(),
            inventory,
            self.schema.clone(),
            self.config.clone(),
        ))
    }

    fn next_event(&mut self) -> Result<Option<ChangeEvent>, StateError> {
        if self.pending.is_empty() {
            let page = self.store.changes_since(self.read_to, FEED_PAGE)?;
            if let Some(last) = page.last() {
                self.read_to = last.seq;
            }
            self.pending.extend(page);
        }
        Ok(self.pending.pop_front())
    }

    /// Applies one change to the document, and to the engine's copy when there is one.
    fn apply(&mut self, event: &ChangeEvent) -> Result<(), String> {
        match event.kind.as_str() {
            change_kind::IDENTITY_CREATE | change_kind::IDENTITY_PUT => {
                let identity: Identity = image(event, "after")?;
                self.put_identity(identity);
            }
            change_kind::IDENTITY_LIFECYCLE => {
                let lifecycle: Lifecycle = image(event, "after")?;
                self.set_lifecycle(&event.subject, lifecycle)?;
            }
            change_kind::IDENTITY_DELETE => {
                let identity: Identity = image(event, "before")?;
                self.delete_identity(&identity.entity_ref());
            }
            change_kind::GROUP_PUT => {
                let group: Group = image(event, "after")?;
                self.put_group(group);
            }
            change_kind::GROUP_DELETE => {
                let group: Group = image(event, "before")?;
                self.delete_group(&EntityRef::new(&group.group_type, &group.id));
            }
            change_kind::RESOURCE_PUT => {
                let resource: Resource = image(event, "after")?;
                self.put_resource(resource);
            }
            change_kind::RESOURCE_DELETE => {
                let resource: Resource = image(event, "before")?;
                self.delete_resource(&EntityRef::new(&resource.resource_type, &resource.id));
            }
            change_kind::SIGNAL_PUT => {
                let signal: Signal = image(event, "after")?;
                self.put_signal(signal);
            }
            change_kind::CONTROL_PLACE => {
                let control: arbiter_core::Control = image(event, "after")?;
                self.live_change(|inventory| inventory.set_control(control.clone()));
                self.document.controls.insert(control.id.clone(), control);
            }
            change_kind::CONTROL_LIFT => {
                let control: arbiter_core::Control = image(event, "before")?;
                self.live_change(|inventory| {
                    inventory.lift_control(&control.id);
                    Ok(())
                });
                self.document.controls.remove(&control.id);
            }
            // Policy versions are looked up by number; keys and approvals do not touch the
            // inventory (a decision that used a grant records the engine's own answer).
            change_kind::POLICY_CREATE
            | change_kind::POLICY_ACTIVATE
            | change_kind::API_KEY_CREATE
            | change_kind::API_KEY_REVOKE
            | change_kind::APPROVAL_REQUEST
            | change_kind::APPROVAL_DECIDE
            | change_kind::APPROVAL_USE => {}
            other => {
                // A kind this build does not know may change the inventory; guessing would
                // make every later replay quietly wrong.
                return Err(format!("unknown change kind `{other}`"));
            }
        }
        Ok(())
    }

    fn put_identity(&mut self, identity: Identity) {
        let entity = identity.entity_ref();
        let member = Member::Identity(entity.clone());
        if let Some(old) = self.document.identities.get(&entity) {
            let old_parents = old.member_of.clone();
            self.document.unlink(&member, &old_parents);
        }
        self.document.link(&member, &identity.member_of);
        self.document
            .identity_by_subject
            .insert(entity.to_string(), entity.clone());
        self.live_upsert(&entity, |inventory, schema| {
            inventory.upsert_identity(&identity, schema)
        });
        self.document.identities.insert(entity, identity);
    }

    fn set_lifecycle(&mut self, subject: &str, lifecycle: Lifecycle) -> Result<(), String> {
        let entity = self
            .document
            .identity_by_subject
            .get(subject)
            .cloned()
            .ok_or_else(|| "no such identity at this point of the feed".to_owned())?;
        let identity = self
            .document
            .identities
            .get_mut(&entity)
            .ok_or_else(|| "no such identity at this point of the feed".to_owned())?;
        identity.lifecycle = lifecycle;
        self.live_change(|inventory| inventory.set_lifecycle(&entity, lifecycle));
        Ok(())
    }

    fn delete_identity(&mut self, entity: &EntityRef) {
        if let Some(old) = self.document.identities.remove(entity) {
            self.document
                .unlink(&Member::Identity(entity.clone()), &old.member_of);
        }
        self.document
            .identity_by_subject
            .remove(&entity.to_string());
        self.live_change(|inventory| inventory.remove(entity));
    }

    fn put_group(&mut self, group: Group) {
        let entity = EntityRef::new(&group.group_type, &group.id);
        let member = Member::Group(entity.clone());
        if let Some(old) = self.document.groups.get(&entity) {
            let old_parents = old.parents.clone();
            self.document.unlink(&member, &old_parents);
        }
        self.document.link(&member, &group.parents);
        self.live_upsert(&entity, |inventory, schema| {
            inventory.upsert_group(&group, schema)
        });
        self.document.groups.insert(entity, group);
    }

    fn delete_group(&mut self, entity: &EntityRef) {
        if let Some(old) = self.document.groups.remove(entity) {
            self.document
                .unlink(&Member::Group(entity.clone()), &old.parents);
        }
        self.live_change(|inventory| inventory.remove(entity));
    }

    fn put_resource(&mut self, resource: Resource) {
        let entity = EntityRef::new(&resource.resource_type, &resource.id);
        let member = Member::Resource(entity.clone());
        if let Some(old) = self.document.resources.get(&entity) {
            let old_parents = old.parents.clone();
            self.document.unlink(&member, &old_parents);
        }
        self.document.link(&member, &resource.parents);
        self.live_upsert(&entity, |inventory, schema| {
            inventory.upsert_resource(&resource, schema)
        });
        self.document.resources.insert(entity, resource);
    }

    fn delete_resource(&mut self, entity: &EntityRef) {
        if let Some(old) = self.document.resources.remove(entity) {
            self.document
                .unlink(&Member::Resource(entity.clone()), &old.parents);
        }
        self.live_change(|inventory| inventory.remove(entity));
    }

    fn put_signal(&mut self, signal: Signal) {
        let key = (signal.subject.clone(), signal.name.clone());
        self.live_change(|inventory| inventory.set_signal(signal.clone()));
        self.document.signals.insert(key, signal);
    }

    /// Runs `change` on the engine's copy; if it refuses, the copy is dropped, to be rebuilt
    /// from the document when next needed.
    fn live_change(
        &mut self,
        change: impl FnOnce(
            &mut arbiter_engine::Inventory,
        ) -> Result<(), arbiter_engine::InventoryError>,
    ) {
        if let Some(live) = self.live.as_mut() {
            if change(live.inventory_mut()).is_err() {
                self.live = None;
            }
        }
    }

    /// Adds or replaces `entity` in the engine's copy. When it is new there, the entities that
    /// already name it as a parent are applied again so that their ancestor sets take in its
    /// own ancestors (see the invariant above), and the signals about it come back.
    fn live_upsert(
        &mut self,
        entity: &EntityRef,
        upsert: impl FnOnce(
            &mut arbiter_engine::Inventory,
            Option<&Schema>,
        ) -> Result<(), arbiter_engine::InventoryError>,
    ) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        let is_new = !live.inventory().contains(entity);
        if upsert(live.inventory_mut(), self.schema.as_ref()).is_err() {
            self.live = None;
            return;
        }
        if is_new && self.repair_new(entity).is_err() {
            self.live = None;
        }
    }

    fn repair_new(&mut self, entity: &EntityRef) -> Result<(), arbiter_engine::InventoryError> {
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        let inventory = live.inventory_mut();
        let schema = self.schema.as_ref();
        let signals = self
            .document
            .signals
            .range((entity.clone(), String::new())..)
            .take_while(|((subject, _), _)| subject == entity);
        for (_, signal) in signals {
            inventory.set_signal(signal.clone())?;
        }
        let Some(members) = self.document.members.get(entity) else {
            return Ok(());
        };
        for member in members {
            match member {
                Member::Identity(member) => {
                    if let Some(identity) = self.document.identities.get(member) {
                        inventory.upsert_identity(identity, schema)?;
                    }
                }
                Member::Group(member) => {
                    if let Some(group) = self.document.groups.get(member) {
                        inventory.upsert_group(group, schema)?;
                    }
                }
                Member::Resource(member) => {
                    if let Some(resource) = self.document.resources.get(member) {
                        inventory.upsert_resource(resource, schema)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `after` or `before` image of a change event.
fn image<T: DeserializeOwned>(event: &ChangeEvent, which: &str) -> Result<T, String> {
    let value = event
        .detail
        .get(which)
        .cloned()
        .ok_or_else(|| format!("its detail has no `{which}`"))?;
    serde_json::from_value(value).map_err(|err| format!("its `{which}` does not parse: {err}"))
}
