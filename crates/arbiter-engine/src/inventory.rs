//! The inventory: every entity Arbiter knows, as Cedar entities with their ancestors already
//! closed, plus the governance facts (kind, lifecycle, owner, credential) and live signals.
//!
//! Stored in persistent (structurally shared) maps, so cloning an inventory is O(1) and changing
//! one identity is O(log n): a writer clones, changes and publishes, and readers holding the old
//! snapshot never notice. This is why Arbiter does not keep a `cedar_policy::Entities`, whose
//! `upsert_entities` walks the whole store.

use crate::schema::Schema;
use arbiter_core::{
    json_type, Control, EntityRef, Group, Identity, IdentityKind, InventoryDocument, Lifecycle,
    Resource, Signal, Timestamp,
};
use cedar_policy_core::ast::{
    Eid, Entity, EntityType, EntityUID, Literal, Name, PartialValue, Value, ValueKind,
};
use cedar_policy_core::entities::{EntityJsonParser, NoEntitiesSchema, TCComputation};
use cedar_policy_core::extensions::Extensions;
use cedar_policy_core::validator::CoreSchema;
use serde_json::{json, Map, Value as Json};
use smol_str::SmolStr;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// Attribute names Arbiter sets on identities and resources; inventory attributes may not use them.
pub const RESERVED_ATTRIBUTES: &[&str] = &[
    "kind",
    "lifecycle",
    "owner",
    "sponsor",
    "holder",
    "issued_at",
    "rotated_at",
    "expires_at",
    "last_used_at",
    "sensitivity",
    "sensitivity_level",
];

/// Governance facts about one identity, read by the built-in guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Governance {
    /// Human, service account, workload, agent or credential.
    pub kind: IdentityKind,
    /// Only `Active` may act.
    pub lifecycle: Lifecycle,
    /// The accountable human.
    pub owner: Option<EntityUID>,
    /// The identity vouching for this one.
    pub sponsor: Option<EntityUID>,
    /// For credentials: who holds it and when it expires.
    pub credential: Option<CredentialGovernance>,
}

/// What the guards need to know about a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialGovernance {
    /// The identity it authenticates as.
    pub holder: EntityUID,
    /// When it stops being valid.
    pub expires_at: Option<Timestamp>,
}

/// One entity of the inventory.
///
/// Identities (entities with governance facts) are the bulk of an inventory, so they are kept
/// compact: their attributes as a sorted slice and their ancestors as shared uids, about a
/// quarter of the memory of Cedar's `Entity` (whose attribute `BTreeMap` alone allocates a node
/// of eleven slots of 152 bytes). A decision builds Cedar's `Entity` for the few identities in
/// its slice. Everything else (humans, groups, resources, actions, plain Cedar entities) is
/// fewer, read by many requests, and kept as Cedar's own `Entity`.
#[derive(Debug)]
pub(crate) struct StoredEntity {
    /// Shared with the ancestor lists of the entities below this one.
    uid: Arc<EntityUID>,
    data: EntityData,
    /// `None` for plain Cedar entities (groups, resources, entities loaded from Cedar JSON).
    pub(crate) governance: Option<Box<Governance>>,
}

#[derive(Debug)]
enum EntityData {
    Cedar(Arc<Entity>),
    Compact(CompactEntity),
}

/// An entity's data without Cedar's containers. INVARIANT: `attrs` and `tags` are sorted by
/// name without duplicates (they come from Cedar's `BTreeMap`s), and `parents` and `indirect`
/// are disjoint, as in Cedar's `Entity`.
#[derive(Debug)]
struct CompactEntity {
    attrs: Box<[(SmolStr, Value)]>,
    tags: Box<[(SmolStr, Value)]>,
    parents: Box<[Arc<EntityUID>]>,
    indirect: Box<[Arc<EntityUID>]>,
}

impl StoredEntity {
    /// Stores `entity`, compactly when it is a governed identity whose values are all known.
    /// `share` returns the shared copy of an ancestor's uid.
    fn new(
        entity: Entity,
        governance: Option<Governance>,
        share: &mut dyn FnMut(&EntityUID) -> Arc<EntityUID>,
    ) -> Self {
        let uid = share(entity.uid());
        let all_known = entity
            .attrs()
            .chain(entity.tags())
            .all(|(_, value)| matches!(value, PartialValue::Value(_)));
        // Humans stay in Cedar's form: they are a small share of identities, and most requests
        // read one through another's attributes (an owner, a manager, a sponsor), so building
        // them per request would cost more than the memory saved.
        let compact = governance
            .as_ref()
            .is_some_and(|governance| governance.kind != IdentityKind::Human);
        let data = if compact && all_known {
            let (_, attrs, indirect, parents, tags) = entity.into_inner();
            // An attribute naming an entity (an owner, a sponsor) holds the shared uid.
            let known = |map: BTreeMap<SmolStr, PartialValue>,
                         share: &mut dyn FnMut(&EntityUID) -> Arc<EntityUID>|
             -> Box<[(SmolStr, Value)]> {
                map.into_iter()
                    .filter_map(|(name, value)| match value {
                        PartialValue::Value(Value {
                            value: ValueKind::Lit(Literal::EntityUID(uid)),
                            loc,
                        }) => Some((
                            name,
                            Value {
                                value: ValueKind::Lit(Literal::EntityUID(share(&uid))),
                                loc,
                            },
                        )),
                        PartialValue::Value(value) => Some((name, value)),
                        PartialValue::Residual(_) => None,
                    })
                    .collect()
            };
            let shared = |set: HashSet<EntityUID>,
                          share: &mut dyn FnMut(&EntityUID) -> Arc<EntityUID>|
             -> Box<[Arc<EntityUID>]> { set.iter().map(share).collect() };
            EntityData::Compact(CompactEntity {
                attrs: known(attrs, share),
                tags: known(tags, share),
                parents: shared(parents, share),
                indirect: shared(indirect, share),
            })
        } else {
            EntityData::Cedar(Arc::new(entity))
        };
        Self {
            uid,
            data,
            governance: governance.map(Box::new),
        }
    }

    pub(crate) fn uid(&self) -> &EntityUID {
        &self.uid
    }

    /// The same entity with these indirect ancestors (while building, after closing the
    /// hierarchy).
    fn with_indirect(self, indirect: Vec<Arc<EntityUID>>) -> Self {
        let data = match self.data {
            EntityData::Compact(compact) => EntityData::Compact(CompactEntity {
                indirect: indirect.into_boxed_slice(),
                ..compact
            }),
            EntityData::Cedar(entity) => {
                let (uid, attrs, _, parents, tags) = Arc::unwrap_or_clone(entity).into_inner();
                let indirect = indirect.iter().map(|uid| uid.as_ref().clone()).collect();
                EntityData::Cedar(Arc::new(Entity::new_with_attr_partial_value(
                    uid, attrs, indirect, parents, tags,
                )))
            }
        };
        Self { data, ..self }
    }

    /// Cedar's `Entity` for this entity: shared when kept in Cedar's form, built otherwise.
    pub(crate) fn cedar(&self) -> Arc<Entity> {
        match &self.data {
            EntityData::Cedar(entity) => Arc::clone(entity),
            EntityData::Compact(compact) => {
                let values = |pairs: &[(SmolStr, Value)]| -> Vec<(SmolStr, PartialValue)> {
                    pairs
                        .iter()
                        .map(|(name, value)| (name.clone(), PartialValue::Value(value.clone())))
                        .collect()
                };
                let uids = |list: &[Arc<EntityUID>]| -> HashSet<EntityUID> {
                    list.iter().map(|uid| uid.as_ref().clone()).collect()
                };
                Arc::new(Entity::new_with_attr_partial_value(
                    self.uid.as_ref().clone(),
                    values(&compact.attrs),
                    uids(&compact.indirect),
                    uids(&compact.parents),
                    values(&compact.tags),
                ))
            }
        }
    }

    /// Appends every ancestor (direct or not).
    pub(crate) fn extend_ancestors<'a>(&'a self, out: &mut Vec<&'a EntityUID>) {
        match &self.data {
            EntityData::Cedar(entity) => out.extend(entity.ancestors()),
            EntityData::Compact(compact) => out.extend(
                compact
                    .parents
                    .iter()
                    .chain(compact.indirect.iter())
                    .map(Arc::as_ref),
            ),
        }
    }

    fn ancestor_count(&self) -> usize {
        match &self.data {
            EntityData::Cedar(entity) => entity.ancestors().count(),
            EntityData::Compact(compact) => compact.parents.len() + compact.indirect.len(),
        }
    }

    pub(crate) fn is_descendant_of(&self, ancestor: &EntityUID) -> bool {
        match &self.data {
            EntityData::Cedar(entity) => entity.is_descendant_of(ancestor),
            EntityData::Compact(compact) => compact
                .parents
                .iter()
                .chain(compact.indirect.iter())
                .any(|uid| uid.as_ref() == ancestor),
        }
    }

    /// The value of one attribute, when known.
    pub(crate) fn attr(&self, name: &str) -> Option<&Value> {
        match &self.data {
            EntityData::Cedar(entity) => known(entity.get(name)),
            EntityData::Compact(compact) => sorted_get(&compact.attrs, name),
        }
    }

    /// The value of one tag, when known.
    pub(crate) fn tag(&self, name: &str) -> Option<&Value> {
        match &self.data {
            EntityData::Cedar(entity) => known(entity.get_tag(name)),
            EntityData::Compact(compact) => sorted_get(&compact.tags, name),
        }
    }

    /// Appends the values of every tag.
    pub(crate) fn extend_tag_values<'a>(&'a self, out: &mut Vec<&'a Value>) {
        match &self.data {
            EntityData::Cedar(entity) => {
                out.extend(entity.tags().filter_map(|(_, value)| known(Some(value))));
            }
            EntityData::Compact(compact) => out.extend(compact.tags.iter().map(|(_, value)| value)),
        }
    }

    /// Appends the entities its attribute and tag values reference (the next ring of a slice).
    pub(crate) fn extend_refs<'a>(&'a self, out: &mut Vec<&'a EntityUID>) {
        match &self.data {
            EntityData::Cedar(entity) => {
                for (_, value) in entity.attrs().chain(entity.tags()) {
                    if let PartialValue::Value(value) = value {
                        borrow_uids(value, out);
                    }
                }
            }
            EntityData::Compact(compact) => {
                for (_, value) in compact.attrs.iter().chain(compact.tags.iter()) {
                    borrow_uids(value, out);
                }
            }
        }
    }
}

/// The inventory's map holds its entities as keys (a value of `()` keeps the map's nodes
/// small: an entry is two words, not a 120-byte uid and a pointer), looked up by uid.
#[derive(Debug, Clone)]
struct EntityKey(Arc<StoredEntity>);

impl PartialEq for EntityKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.uid() == other.0.uid()
    }
}

impl Eq for EntityKey {}

impl std::hash::Hash for EntityKey {
    // INVARIANT: hashes as the uid does, so that `Borrow<EntityUID>` finds it.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.uid().hash(state);
    }
}

impl std::borrow::Borrow<EntityUID> for EntityKey {
    fn borrow(&self) -> &EntityUID {
        self.0.uid()
    }
}

/// A persistent map keyed by entity uid. foldhash (randomly seeded per process) rather than
/// SipHash: uid hashing was a large share of building each request's entity slice.
type UidMap<V> = imbl::GenericHashMap<
    EntityUID,
    V,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;
type UidSet = imbl::GenericHashSet<
    EntityUID,
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

type EntityMap = imbl::GenericHashMap<
    EntityKey,
    (),
    foldhash::fast::RandomState,
    imbl::shared_ptr::DefaultSharedPtr,
>;

/// The whole inventory. Cheap to clone; every mutation bumps `version`.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    entities: EntityMap,
    /// Entities that are (or were) someone's parent. Changing the parents of one of them means
    /// repairing its descendants' ancestor sets; for any other entity the change is local.
    parents_in_use: UidSet,
    signals: UidMap<Arc<BTreeMap<String, Signal>>>,
    /// Runtime controls by target. Kept for targets that are not (or no longer) in the
    /// inventory too, like signals: a control placed on a departed owner still applies.
    controls: UidMap<Arc<[Control]>>,
    /// How many targets of each entity type carry controls: a decision skips looking up the
    /// many entities (resource ancestors, owners) whose type carries none.
    control_types: BTreeMap<EntityType, usize>,
    version: u64,
}

/// Something in the inventory input is wrong; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InventoryError(pub String);

impl Inventory {
    /// Number of entities.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether it holds no entities.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// Bumped by every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the entity is known.
    pub fn contains(&self, entity: &EntityRef) -> bool {
        to_uid(entity).is_ok_and(|uid| self.entities.contains_key(&uid))
    }

    /// Governance facts, for identities Arbiter manages.
    pub fn governance(&self, entity: &EntityRef) -> Option<&Governance> {
        let uid = to_uid(entity).ok()?;
        self.get(&uid)?.governance.as_deref()
    }

    /// Whether `entity` is `group` or lies under it, directly or through other groups.
    pub fn is_in(&self, entity: &EntityRef, group: &EntityRef) -> bool {
        let (Ok(uid), Ok(group)) = (to_uid(entity), to_uid(group)) else {
            return false;
        };
        uid == group
            || self
                .get(&uid)
                .is_some_and(|stored| stored.is_descendant_of(&group))
    }

    /// The entity in Cedar's entity JSON format, for display.
    pub fn entity_json(&self, entity: &EntityRef) -> Option<Json> {
        let uid = to_uid(entity).ok()?;
        self.get(&uid)?.cedar().to_json_value().ok()
    }

    pub(crate) fn get(&self, uid: &EntityUID) -> Option<&StoredEntity> {
        self.entities
            .get_key_value(uid)
            .map(|(key, ())| key.0.as_ref())
    }

    /// The shared copy of `uid` when the inventory holds that entity, a new one otherwise.
    fn share_uid(&self, uid: &EntityUID) -> Arc<EntityUID> {
        match self.get(uid) {
            Some(stored) => Arc::clone(&stored.uid),
            None => Arc::new(uid.clone()),
        }
    }

    pub(crate) fn signals_of(&self, uid: &EntityUID) -> Option<&Arc<BTreeMap<String, Signal>>> {
        self.signals.get(uid)
    }

    /// Controls placed on `uid` (active or expired; the decision checks expiry).
    pub(crate) fn controls_on(&self, uid: &EntityUID) -> &[Control] {
        self.controls
            .get(uid)
            .map_or(&[], |controls| controls.as_ref())
    }

    /// Whether any control is placed at all: most deployments have none, and then a decision
    /// skips looking.
    pub(crate) fn has_controls(&self) -> bool {
        !self.controls.is_empty()
    }

    /// Every control placed, for listing.
    pub fn controls(&self) -> impl Iterator<Item = &Control> {
        self.controls.values().flat_map(|controls| controls.iter())
    }

    /// Places a control, or replaces the one with the same id. O(log n).
    pub fn set_control(&mut self, control: Control) -> Result<(), InventoryError> {
        if control.id.is_empty() {
            return Err(InventoryError("a control needs an id".to_owned()));
        }
        let uid = to_uid(&control.target)?;
        let mut controls: Vec<Control> = self
            .controls_on(&uid)
            .iter()
            .filter(|existing| existing.id != control.id)
            .cloned()
            .collect();
        controls.push(control);
        if self.controls.insert(uid.clone(), controls.into()).is_none() {
            *self
                .control_types
                .entry(uid.entity_type().clone())
                .or_default() += 1;
        }
        self.version += 1;
        Ok(())
    }

    /// Lifts a control; returns it, or `None` if no control has that id.
    pub fn lift_control(&mut self, id: &str) -> Option<Control> {
        let (uid, lifted) = self.controls.iter().find_map(|(uid, controls)| {
            controls
                .iter()
                .find(|control| control.id == id)
                .map(|control| (uid.clone(), control.clone()))
        })?;
        let rest: Vec<Control> = self
            .controls_on(&uid)
            .iter()
            .filter(|control| control.id != id)
            .cloned()
            .collect();
        if rest.is_empty() {
            self.controls.remove(&uid);
            if let Some(count) = self.control_types.get_mut(uid.entity_type()) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    self.control_types.remove(uid.entity_type());
                }
            }
        } else {
            self.controls.insert(uid, rest.into());
        }
        self.version += 1;
        Some(lifted)
    }

    /// Changes an identity's lifecycle. O(log n): only that identity's entry is replaced.
    pub fn set_lifecycle(
        &mut self,
        entity: &EntityRef,
        lifecycle: Lifecycle,
    ) -> Result<(), InventoryError> {
        let uid = to_uid(entity)?;
        let stored = self
            .get(&uid)
            .ok_or_else(|| InventoryError(format!("unknown identity `{entity}`")))?;
        let Some(governance) = &stored.governance else {
            return Err(InventoryError(format!(
                "`{entity}` is not a governed identity and has no lifecycle"
            )));
        };
        let governance = Governance {
            lifecycle,
            ..governance.as_ref().clone()
        };
        let (uid, mut attrs, indirect, parents, tags) =
            Arc::unwrap_or_clone(stored.cedar()).into_inner();
        attrs.insert(
            "lifecycle".into(),
            PartialValue::Value(Value::from(lifecycle.as_str())),
        );
        let entity = Entity::new_with_attr_partial_value(uid, attrs, indirect, parents, tags);
        self.insert(entity, Some(governance));
        self.version += 1;
        Ok(())
    }

    /// Adds or replaces one identity.
    pub fn upsert_identity(
        &mut self,
        identity: &Identity,
        schema: Option<&Schema>,
    ) -> Result<(), InventoryError> {
        let json = identity_json(identity)?;
        let governance = governance_of(identity)?;
        self.upsert_json(json, Some(governance), schema)
    }

    /// Adds or replaces one resource.
    pub fn upsert_resource(
        &mut self,
        resource: &Resource,
        schema: Option<&Schema>,
    ) -> Result<(), InventoryError> {
        self.upsert_json(resource_json(resource)?, None, schema)
    }

    /// Adds or replaces one group or role.
    pub fn upsert_group(
        &mut self,
        group: &Group,
        schema: Option<&Schema>,
    ) -> Result<(), InventoryError> {
        self.upsert_json(group_json(group), None, schema)
    }

    /// Removes an entity. Refused for an entity that is another's parent: remove or re-parent
    /// its members first, so no ancestor set is left pointing at it silently.
    pub fn remove(&mut self, entity: &EntityRef) -> Result<(), InventoryError> {
        let uid = to_uid(entity)?;
        if self.get(&uid).is_none() {
            return Err(InventoryError(format!("unknown entity `{entity}`")));
        }
        if self.parents_in_use.contains(&uid)
            && self.entities.keys().any(|key| key.0.is_descendant_of(&uid))
        {
            return Err(InventoryError(format!(
                "`{entity}` still has members; remove or re-parent them first"
            )));
        }
        self.entities.remove(&uid);
        self.parents_in_use.remove(&uid);
        // Signals about it are kept, as the store keeps them: an identity deleted and created
        // again sees the same live signals now as after a restart.
        self.version += 1;
        Ok(())
    }

    /// The distinct entity types present (and `Action`). O(n).
    pub(crate) fn entity_types(&self) -> impl Iterator<Item = EntityType> {
        let mut types: HashSet<EntityType> = self
            .entities
            .keys()
            .map(|key| key.0.uid().entity_type().clone())
            .collect();
        if let Ok(action) = Name::from_str("Action") {
            types.insert(EntityType::from(action));
        }
        types.into_iter()
    }

    /// Every entity of a Cedar type, in no particular order. O(n): for search, not for decisions.
    pub fn entities_of_type<'a>(
        &'a self,
        entity_type: &'a str,
    ) -> impl Iterator<Item = EntityRef> + 'a {
        self.entities
            .keys()
            .map(|key| key.0.uid())
            .filter(move |uid| uid.entity_type().to_string() == entity_type)
            .map(from_uid)
    }

    /// Records a live signal, replacing the previous value of the same name for the same subject.
    pub fn set_signal(&mut self, signal: Signal) -> Result<(), InventoryError> {
        check_signal(&signal)?;
        let uid = to_uid(&signal.subject)?;
        let mut signals = self
            .signals
            .get(&uid)
            .map(|existing| existing.as_ref().clone())
            .unwrap_or_default();
        signals.insert(signal.name.clone(), signal);
        self.signals.insert(uid, Arc::new(signals));
        self.version += 1;
        Ok(())
    }

    /// Adds or replaces one entity given in Cedar's entity JSON format (`{uid, attrs, parents}`).
    pub fn upsert_cedar_entity(
        &mut self,
        json: Json,
        schema: Option<&Schema>,
    ) -> Result<(), InventoryError> {
        self.upsert_json(json, None, schema)
    }

    fn upsert_json(
        &mut self,
        json: Json,
        governance: Option<Governance>,
        schema: Option<&Schema>,
    ) -> Result<(), InventoryError> {
        let parsed = parse_entities(
            Json::Array(vec![json]),
            schema,
            TCComputation::AssumeAlreadyComputed,
        )?;
        let Some(entity) = parsed
            .iter()
            .find(|entity| !entity.uid().entity_type().is_action())
        else {
            return Err(InventoryError("no entity parsed".to_owned()));
        };
        let (uid, attrs, _, parents, tags) = entity.clone().into_inner();
        let mut memo = HashMap::new();
        let ancestors = self.closure_of(&uid, &parents, &mut memo)?;
        let old_ancestors: Option<HashSet<EntityUID>> = self.get(&uid).map(|old| {
            let mut ancestors = Vec::new();
            old.extend_ancestors(&mut ancestors);
            ancestors.into_iter().cloned().collect()
        });
        let indirect = ancestors.difference(&parents).cloned().collect();
        for parent in &parents {
            self.parents_in_use.insert(parent.clone());
        }
        let entity =
            Entity::new_with_attr_partial_value(uid.clone(), attrs, indirect, parents, tags);
        self.insert(entity, governance);
        // A new entity that members already name as a parent changes their closures too: they
        // gain its ancestors.
        let hierarchy_changed = old_ancestors.map_or(!ancestors.is_empty(), |old| old != ancestors);
        if hierarchy_changed && self.parents_in_use.contains(&uid) {
            self.repair_descendants_of(&uid)?;
        }
        self.version += 1;
        Ok(())
    }

    /// Ancestors of an entity with the given direct parents, from the parents' stored closures.
    fn closure_of(
        &self,
        uid: &EntityUID,
        parents: &HashSet<EntityUID>,
        memo: &mut HashMap<EntityUID, HashSet<EntityUID>>,
    ) -> Result<HashSet<EntityUID>, InventoryError> {
        let mut ancestors = HashSet::new();
        for parent in parents {
            ancestors.insert(parent.clone());
            let parent_ancestors = match memo.get(parent) {
                Some(known) => known.clone(),
                None => self
                    .get(parent)
                    .map(|stored| {
                        let mut ancestors = Vec::new();
                        stored.extend_ancestors(&mut ancestors);
                        ancestors.into_iter().cloned().collect()
                    })
                    .unwrap_or_default(),
            };
            ancestors.extend(parent_ancestors);
        }
        if ancestors.contains(uid) {
            return Err(InventoryError(format!(
                "`{uid}` would be its own ancestor: the hierarchy must not have cycles"
            )));
        }
        Ok(ancestors)
    }

    /// Rebuilds the ancestor sets of everything below `root`. O(n): a rare, administrative change
    /// (re-parenting a group), never a per-identity one.
    fn repair_descendants_of(&mut self, root: &EntityUID) -> Result<(), InventoryError> {
        let descendants: Vec<Arc<StoredEntity>> = self
            .entities
            .keys()
            .filter(|key| key.0.is_descendant_of(root))
            .map(|key| Arc::clone(&key.0))
            .collect();
        // Parents before children: an entity with fewer ancestors cannot be below one with more.
        let mut ordered = descendants;
        ordered.sort_by_key(|stored| stored.ancestor_count());
        let mut memo = HashMap::new();
        for stored in ordered {
            let (uid, attrs, _, parents, tags) = Arc::unwrap_or_clone(stored.cedar()).into_inner();
            let ancestors = self.closure_of(&uid, &parents, &mut memo)?;
            memo.insert(uid.clone(), ancestors.clone());
            let indirect = ancestors.difference(&parents).cloned().collect();
            let entity = Entity::new_with_attr_partial_value(uid, attrs, indirect, parents, tags);
            self.insert(entity, stored.governance.as_deref().cloned());
        }
        Ok(())
    }

    fn insert(&mut self, entity: Entity, governance: Option<Governance>) {
        let stored = StoredEntity::new(entity, governance, &mut |uid| self.share_uid(uid));
        self.insert_stored(stored);
    }

    fn insert_stored(&mut self, stored: StoredEntity) {
        // Remove first: an insert over an equal key must not keep the old entity.
        self.entities.remove(stored.uid());
        self.entities.insert(EntityKey(Arc::new(stored)), ());
    }
}

/// Collects inventory input (Arbiter documents and plain Cedar entities JSON) and builds an
/// [`Inventory`] with Cedar's own parser, so attribute values mean exactly what Cedar says.
///
/// Input is kept as JSON text (a `serde_json::Value` tree is several times larger) and parsed
/// a chunk at a time, so that loading 100k identities never holds them all in two forms.
#[derive(Debug, Default)]
pub struct InventoryBuilder {
    entity_json: Vec<String>,
    governance: HashMap<EntityRef, Governance>,
    signals: Vec<Signal>,
    controls: Vec<Control>,
}

/// Entities parsed by Cedar at once while building: large enough that Cedar's per-call costs do
/// not matter, small enough that a chunk's parsed form is a small part of the inventory.
const BUILD_CHUNK: usize = 4096;

/// An entity parsed while building, before its ancestors are closed.
struct Staged {
    stored: StoredEntity,
    parents: Vec<Arc<EntityUID>>,
    /// Ancestors the parser already knew (a schema's action entities come with them).
    known_ancestors: Vec<Arc<EntityUID>>,
}

impl InventoryBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    fn push_json(&mut self, json: &Json) -> Result<(), InventoryError> {
        let text = serde_json::to_string(json)
            .map_err(|err| InventoryError(format!("entity JSON: {err}")))?;
        self.entity_json.push(text);
        Ok(())
    }

    /// Adds plain Cedar entities JSON (an array of `{uid, attrs, parents}`), the standard format.
    pub fn add_cedar_entities(&mut self, json: Json) -> Result<&mut Self, InventoryError> {
        match json {
            Json::Array(items) => {
                for item in &items {
                    self.push_json(item)?;
                }
            }
            other => {
                return Err(InventoryError(format!(
                    "Cedar entities JSON must be an array, found {}",
                    json_type(&other)
                )))
            }
        }
        Ok(self)
    }

    /// Adds an Arbiter inventory document.
    pub fn add_document(
        &mut self,
        document: &InventoryDocument,
    ) -> Result<&mut Self, InventoryError> {
        for identity in &document.identities {
            self.push_json(&identity_json(identity)?)?;
            self.governance
                .insert(identity.entity_ref(), governance_of(identity)?);
        }
        for group in &document.groups {
            self.push_json(&group_json(group))?;
        }
        for resource in &document.resources {
            self.push_json(&resource_json(resource)?)?;
        }
        for signal in &document.signals {
            check_signal(signal)?;
            self.signals.push(signal.clone());
        }
        self.controls.extend(document.controls.iter().cloned());
        Ok(self)
    }

    /// Parses everything, closes the hierarchy and builds the inventory.
    pub fn build(self, schema: Option<&Schema>) -> Result<Inventory, InventoryError> {
        let mut governance = self.governance;
        // Every uid is shared: an ancestor list holds pointers to its ancestors' own uids. The
        // shared uids also share their type (each parsed uid has its own copy of the type's
        // namespace path, which hashing and comparing a uid read): a decision hashes and
        // compares many uids, and one copy of each type stays in cache.
        let mut interned: HashSet<Arc<EntityUID>> = HashSet::new();
        let mut types: HashMap<EntityType, EntityType> = HashMap::new();
        let mut share = |uid: &EntityUID| -> Arc<EntityUID> {
            if let Some(shared) = interned.get(uid) {
                return Arc::clone(shared);
            }
            let entity_type = types
                .entry(uid.entity_type().clone())
                .or_insert_with_key(|entity_type| entity_type.clone())
                .clone();
            let shared = Arc::new(EntityUID::from_components(
                entity_type,
                uid.eid().clone(),
                None,
            ));
            interned.insert(Arc::clone(&shared));
            shared
        };
        let mut staged: Vec<Staged> = Vec::new();
        let mut position: HashMap<*const EntityUID, usize> = HashMap::new();
        let mut parents_in_use: Vec<Arc<EntityUID>> = Vec::new();
        let mut chunks: Vec<&[String]> = self.entity_json.chunks(BUILD_CHUNK).collect();
        if chunks.is_empty() {
            // A schema's action entities are added even when no entity is given.
            chunks.push(&[]);
        }
        for chunk in chunks {
            let mut text =
                String::with_capacity(chunk.iter().map(|item| item.len() + 1).sum::<usize>() + 2);
            text.push('[');
            for (idx, item) in chunk.iter().enumerate() {
                if idx > 0 {
                    text.push(',');
                }
                text.push_str(item);
            }
            text.push(']');
            // The hierarchy is closed below, over every chunk.
            let parsed = parse_entities_text(&text, schema, TCComputation::AssumeAlreadyComputed)?;
            drop(text);
            for entity in parsed {
                let (uid, attrs, indirect, parents, tags) = entity.into_inner();
                let uid_shared = share(&uid);
                let parents_shared: Vec<Arc<EntityUID>> = parents.iter().map(&mut share).collect();
                let known_ancestors: Vec<Arc<EntityUID>> =
                    indirect.iter().map(&mut share).collect();
                parents_in_use.extend(parents_shared.iter().cloned());
                let key = from_uid(&uid);
                let entity =
                    Entity::new_with_attr_partial_value(uid, attrs, HashSet::new(), parents, tags);
                let stored = StoredEntity::new(entity, governance.remove(&key), &mut share);
                let item = Staged {
                    stored,
                    parents: parents_shared,
                    known_ancestors,
                };
                match position.get(&Arc::as_ptr(&uid_shared)) {
                    // With a schema, every chunk comes back with the schema's action entities.
                    Some(&existing) if schema.is_some() && uid_shared.entity_type().is_action() => {
                        if let Some(slot) = staged.get_mut(existing) {
                            *slot = item;
                        }
                    }
                    Some(_) => {
                        return Err(InventoryError(format!(
                            "duplicate entity entry `{uid_shared}`"
                        )))
                    }
                    None => {
                        position.insert(Arc::as_ptr(&uid_shared), staged.len());
                        staged.push(item);
                    }
                }
            }
        }
        drop(self.entity_json);
        let closures = close_hierarchy(&staged, &position)?;
        let mut inventory = Inventory::default();
        for parent in parents_in_use {
            inventory.parents_in_use.insert(parent.as_ref().clone());
        }
        for (item, ancestors) in staged.into_iter().zip(closures) {
            let indirect: Vec<Arc<EntityUID>> = ancestors
                .into_iter()
                .filter(|ancestor| {
                    !item
                        .parents
                        .iter()
                        .any(|parent| Arc::ptr_eq(parent, ancestor))
                })
                .collect();
            inventory.insert_stored(item.stored.with_indirect(indirect));
        }
        for signal in self.signals {
            inventory.set_signal(signal)?;
        }
        for control in self.controls {
            inventory.set_control(control)?;
        }
        inventory.version = 1;
        Ok(inventory)
    }
}

/// Every staged entity's ancestors (parents included), by walking parents depth first with an
/// explicit stack, so a deep hierarchy cannot overflow the call stack. Uids are compared by
/// pointer: the builder shares one `Arc` per uid.
fn close_hierarchy(
    staged: &[Staged],
    position: &HashMap<*const EntityUID, usize>,
) -> Result<Vec<Vec<Arc<EntityUID>>>, InventoryError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Open,
        Done,
    }
    let mut state = vec![State::New; staged.len()];
    let mut closures: Vec<Vec<Arc<EntityUID>>> = vec![Vec::new(); staged.len()];
    for root in 0..staged.len() {
        if state.get(root) != Some(&State::New) {
            continue;
        }
        let mut stack = vec![root];
        while let Some(&current) = stack.last() {
            let Some(item) = staged.get(current) else {
                stack.pop();
                continue;
            };
            if state.get(current) == Some(&State::New) {
                if let Some(slot) = state.get_mut(current) {
                    *slot = State::Open;
                }
                for parent in &item.parents {
                    if let Some(&parent_idx) = position.get(&Arc::as_ptr(parent)) {
                        match state.get(parent_idx) {
                            Some(State::New) => stack.push(parent_idx),
                            Some(State::Open) => {
                                return Err(InventoryError(format!(
                                    "`{parent}` would be its own ancestor: the hierarchy must not have cycles"
                                )))
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            stack.pop();
            if state.get(current) == Some(&State::Done) {
                continue;
            }
            let mut ancestors: Vec<Arc<EntityUID>> = item.known_ancestors.clone();
            for parent in &item.parents {
                ancestors.push(Arc::clone(parent));
                if let Some(&parent_idx) = position.get(&Arc::as_ptr(parent)) {
                    if let Some(above) = closures.get(parent_idx) {
                        ancestors.extend(above.iter().cloned());
                    }
                }
            }
            ancestors.sort_by_key(Arc::as_ptr);
            ancestors.dedup_by(|left, right| Arc::ptr_eq(left, right));
            if ancestors
                .iter()
                .any(|ancestor| Arc::ptr_eq(ancestor, &item.stored.uid))
            {
                return Err(InventoryError(format!(
                    "`{}` would be its own ancestor: the hierarchy must not have cycles",
                    item.stored.uid
                )));
            }
            if let Some(slot) = closures.get_mut(current) {
                *slot = ancestors;
            }
            if let Some(slot) = state.get_mut(current) {
                *slot = State::Done;
            }
        }
    }
    Ok(closures)
}

fn parse_entities(
    json: Json,
    schema: Option<&Schema>,
    tc: TCComputation,
) -> Result<cedar_policy_core::entities::Entities, InventoryError> {
    let extensions = Extensions::all_available();
    let result = match schema {
        Some(schema) => {
            let core_schema = CoreSchema::new(schema.validator_schema());
            EntityJsonParser::new(Some(&core_schema), extensions, tc).from_json_value(json)
        }
        None => {
            EntityJsonParser::new(None::<&NoEntitiesSchema>, extensions, tc).from_json_value(json)
        }
    };
    result.map_err(|err| InventoryError(diagnostic_text(&err)))
}

fn parse_entities_text(
    text: &str,
    schema: Option<&Schema>,
    tc: TCComputation,
) -> Result<cedar_policy_core::entities::Entities, InventoryError> {
    let extensions = Extensions::all_available();
    let result = match schema {
        Some(schema) => {
            let core_schema = CoreSchema::new(schema.validator_schema());
            EntityJsonParser::new(Some(&core_schema), extensions, tc).from_json_str(text)
        }
        None => {
            EntityJsonParser::new(None::<&NoEntitiesSchema>, extensions, tc).from_json_str(text)
        }
    };
    result.map_err(|err| InventoryError(diagnostic_text(&err)))
}

/// A diagnostic's message with its help text, which often names the fix.
pub(crate) fn diagnostic_text(err: &dyn miette::Diagnostic) -> String {
    match err.help() {
        Some(help) => format!("{err} (help: {help})"),
        None => err.to_string(),
    }
}

/// Converts an Arbiter entity reference to a Cedar one, checking the type name's syntax.
pub fn to_uid(entity: &EntityRef) -> Result<EntityUID, InventoryError> {
    let name = Name::from_str(&entity.entity_type).map_err(|_| {
        InventoryError(format!(
            "`{}` is not a valid Cedar entity type name",
            entity.entity_type
        ))
    })?;
    Ok(EntityUID::from_components(
        EntityType::from(name),
        Eid::new(entity.id.as_str()),
        None,
    ))
}

/// Converts a Cedar entity uid back to Arbiter's reference.
pub fn from_uid(uid: &EntityUID) -> EntityRef {
    let id: &str = uid.eid().as_ref();
    EntityRef::new(uid.entity_type().to_string(), id)
}

fn entity_json_ref(entity: &EntityRef) -> Json {
    json!({"__entity": {"type": entity.entity_type, "id": entity.id}})
}

fn with_reserved(
    attributes: &Map<String, Json>,
    owner_label: &str,
    extra: Vec<(&str, Json)>,
) -> Result<Map<String, Json>, InventoryError> {
    let mut attrs = attributes.clone();
    for (name, value) in extra {
        if attrs.contains_key(name) {
            return Err(InventoryError(format!(
                "`{owner_label}`: attribute `{name}` is reserved: Arbiter sets it"
            )));
        }
        attrs.insert(name.to_owned(), value);
    }
    Ok(attrs)
}

fn identity_json(identity: &Identity) -> Result<Json, InventoryError> {
    let entity = identity.entity_ref();
    let mut extra = vec![
        ("kind", json!(identity.kind.as_str())),
        ("lifecycle", json!(identity.lifecycle.as_str())),
    ];
    if let Some(owner) = &identity.owner {
        extra.push(("owner", entity_json_ref(&EntityRef::new("Human", owner))));
    }
    if let Some(sponsor) = &identity.sponsor {
        extra.push(("sponsor", entity_json_ref(sponsor)));
    }
    match (&identity.credential, identity.kind) {
        (Some(credential), IdentityKind::Credential) => {
            extra.push(("holder", entity_json_ref(&credential.holder)));
            for (name, value) in [
                ("issued_at", credential.issued_at),
                ("rotated_at", credential.rotated_at),
                ("expires_at", credential.expires_at),
                ("last_used_at", credential.last_used_at),
            ] {
                if let Some(value) = value {
                    extra.push((name, json!(value)));
                }
            }
        }
        (None, IdentityKind::Credential) => {
            return Err(InventoryError(format!(
                "`{entity}`: a credential needs `credential` metadata (at least its `holder`)"
            )))
        }
        (Some(_), _) => {
            return Err(InventoryError(format!(
                "`{entity}`: only identities of kind `credential` carry `credential` metadata"
            )))
        }
        (None, _) => {}
    }
    let attrs = with_reserved(&identity.attributes, &entity.to_string(), extra)?;
    let parents: Vec<Json> = identity
        .member_of
        .iter()
        .map(|parent| json!({"type": parent.entity_type, "id": parent.id}))
        .collect();
    Ok(
        json!({"uid": {"type": entity.entity_type, "id": entity.id}, "attrs": attrs, "parents": parents}),
    )
}

fn governance_of(identity: &Identity) -> Result<Governance, InventoryError> {
    let owner = identity
        .owner
        .as_ref()
        .map(|owner| to_uid(&EntityRef::new("Human", owner)))
        .transpose()?;
    let sponsor = identity.sponsor.as_ref().map(to_uid).transpose()?;
    let credential = identity
        .credential
        .as_ref()
        .map(|credential| {
            Ok::<_, InventoryError>(CredentialGovernance {
                holder: to_uid(&credential.holder)?,
                expires_at: credential.expires_at,
            })
        })
        .transpose()?;
    Ok(Governance {
        kind: identity.kind,
        lifecycle: identity.lifecycle,
        owner,
        sponsor,
        credential,
    })
}

fn resource_json(resource: &Resource) -> Result<Json, InventoryError> {
    let label = format!("{}::{:?}", resource.resource_type, resource.id);
    let attrs = with_reserved(
        &resource.attributes,
        &label,
        vec![
            ("sensitivity", json!(resource.sensitivity.as_str())),
            ("sensitivity_level", json!(resource.sensitivity.level())),
        ],
    )?;
    let parents: Vec<Json> = resource
        .parents
        .iter()
        .map(|parent| json!({"type": parent.entity_type, "id": parent.id}))
        .collect();
    Ok(
        json!({"uid": {"type": resource.resource_type, "id": resource.id}, "attrs": attrs, "parents": parents}),
    )
}

fn group_json(group: &Group) -> Json {
    let parents: Vec<Json> = group
        .parents
        .iter()
        .map(|parent| json!({"type": parent.entity_type, "id": parent.id}))
        .collect();
    json!({"uid": {"type": group.group_type, "id": group.id}, "attrs": group.attributes, "parents": parents})
}

fn check_signal(signal: &Signal) -> Result<(), InventoryError> {
    let ok = match &signal.value {
        Json::Bool(_) | Json::String(_) => true,
        Json::Number(number) => number.is_i64(),
        _ => false,
    };
    if !ok {
        return Err(InventoryError(format!(
            "signal `{}` of `{}`: value must be a boolean, an integer or a string \
             (Cedar has no floating point: scale it, e.g. 0.83 -> 83)",
            signal.name, signal.subject
        )));
    }
    if signal.ttl_seconds <= 0 {
        return Err(InventoryError(format!(
            "signal `{}` of `{}`: `ttl_seconds` must be positive",
            signal.name, signal.subject
        )));
    }
    Ok(())
}

/// A known value (an unknown one is never followed: it holds no entity yet).
pub(crate) fn known(value: Option<&PartialValue>) -> Option<&Value> {
    match value? {
        PartialValue::Value(value) => Some(value),
        PartialValue::Residual(_) => None,
    }
}

/// Binary search in a slice sorted by name (see `CompactEntity`).
fn sorted_get<'a>(pairs: &'a [(SmolStr, Value)], name: &str) -> Option<&'a Value> {
    pairs
        .binary_search_by(|(key, _)| key.as_str().cmp(name))
        .ok()
        .and_then(|position| pairs.get(position))
        .map(|(_, value)| value)
}

/// Entity uids inside a Cedar value (sets and records are walked), borrowed.
pub(crate) fn borrow_uids<'a>(value: &'a Value, found: &mut Vec<&'a EntityUID>) {
    match &value.value {
        ValueKind::Lit(Literal::EntityUID(uid)) => found.push(uid.as_ref()),
        ValueKind::Lit(_) | ValueKind::ExtensionValue(_) => {}
        ValueKind::Set(set) => {
            for item in set.iter() {
                borrow_uids(item, found);
            }
        }
        ValueKind::Record(record) => {
            for item in record.values() {
                borrow_uids(item, found);
            }
        }
    }
}
