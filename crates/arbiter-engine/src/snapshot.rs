//! Snapshots: the immutable state a decision reads, and the cell writers publish new ones to.

use crate::inventory::Inventory;
use crate::policies::{PolicySet, SharedPolicySet};
use crate::schema::Schema;
use arc_swap::ArcSwap;
use cedar_policy_core::ast::EntityType;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Bounds and switches for the decision path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Most principals in a decision, counting the subject and every delegation hop.
    pub max_delegation_hops: usize,
    /// Most entities one decision may load (the request's own, and everything their attributes
    /// reference, transitively). Past this it denies with that reason rather than evaluate over
    /// a partial slice: within the bound, decisions equal Cedar's; beyond it, they fail closed.
    pub max_slice_entities: usize,
    /// How many nearest-miss permits a deny explains.
    pub nearest_misses: usize,
    /// Whether containing an identity also contains the identities it sponsors.
    pub contain_sponsored: bool,
    /// What happens to a non-human identity whose owner is not an active human.
    pub orphans: OrphanRule,
}

/// What to do with an orphaned non-human identity: one whose accountable owner is missing,
/// offboarded, contained, or not a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrphanRule {
    /// Deny every decision it asks for until it has an owner again (fail closed).
    Deny,
    /// Let it act; it is reported as orphaned trust debt.
    Allow,
    /// Let it act under a restricted overlay (`@overlay("…")` forbid policies) until it has an
    /// owner again, as if a `downgrade` control were placed on it.
    Downgrade {
        /// The overlay's name.
        overlay: String,
    },
}

/// The id under which the orphan rule's downgrade shows in decisions.
pub const ORPHAN_RULE_CONTROL: &str = "orphan-rule";

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_delegation_hops: 4,
            max_slice_entities: 4096,
            nearest_misses: 3,
            contain_sponsored: true,
            orphans: OrphanRule::Deny,
        }
    }
}

/// Everything one decision reads. Immutable: a change makes a new snapshot, and a decision in
/// flight keeps the one it started with.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) policies: SharedPolicySet,
    pub(crate) inventory: Inventory,
    pub(crate) schema: Option<Arc<Schema>>,
    pub(crate) config: EngineConfig,
    /// Parsed entity type names, so a request does not run Cedar's parser on a known type.
    /// Built when the snapshot is made; a type added later is parsed on each use (still correct).
    pub(crate) entity_types: Arc<HashMap<String, EntityType>>,
    /// The store's change-feed position this snapshot reflects; set by whoever loads it.
    pub(crate) change_seq: u64,
    /// `OrphanRule::Downgrade` as a control, built once.
    pub(crate) orphan_control: Option<Arc<arbiter_core::Control>>,
}

impl Snapshot {
    /// A snapshot of the given parts.
    pub fn new(
        policies: PolicySet,
        inventory: Inventory,
        schema: Option<Schema>,
        config: EngineConfig,
    ) -> Self {
        let mut entity_types = HashMap::new();
        for entity_type in inventory.entity_types() {
            entity_types.insert(entity_type.to_string(), entity_type);
        }
        let orphan_control = match &config.orphans {
            OrphanRule::Downgrade { overlay } => Some(Arc::new(arbiter_core::Control {
                id: ORPHAN_RULE_CONTROL.to_owned(),
                target: arbiter_core::EntityRef::new("Arbiter::Rule", ORPHAN_RULE_CONTROL),
                level: arbiter_core::ControlLevel::Downgrade,
                overlay: Some(overlay.clone()),
                safe_actions: Vec::new(),
                reason:
                    "its owner is not an active human: downgraded until a new owner is assigned"
                        .to_owned(),
                placed_by: "engine configuration".to_owned(),
                placed_at: 0,
                expires_at: None,
            })),
            OrphanRule::Deny | OrphanRule::Allow => None,
        };
        Self {
            policies: Arc::new(policies),
            inventory,
            schema: schema.map(Arc::new),
            config,
            entity_types: Arc::new(entity_types),
            change_seq: 0,
            orphan_control,
        }
    }

    /// The policies.
    pub fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The inventory.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The schema, if any.
    pub fn schema(&self) -> Option<&Schema> {
        self.schema.as_deref()
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store's change-feed position this snapshot reflects (0 when not loaded from a store).
    pub fn change_seq(&self) -> u64 {
        self.change_seq
    }

    /// Records that this snapshot now reflects the store up to change `seq`.
    pub fn set_change_seq(&mut self, seq: u64) {
        self.change_seq = seq;
    }

    /// A copy whose inventory the caller may change (O(1): the maps are shared until written).
    pub fn inventory_mut(&mut self) -> &mut Inventory {
        &mut self.inventory
    }

    /// A copy with another policy set (activation and rollback).
    pub fn with_policies(&self, policies: Arc<PolicySet>) -> Self {
        Self {
            policies,
            ..self.clone()
        }
    }
}

/// The current snapshot. Readers load it without locking; a writer builds a new snapshot and
/// stores it, and every decision that starts afterwards sees the change.
#[derive(Debug)]
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    /// Serialises writers only; readers never take it.
    writer: Mutex<()>,
}

impl SnapshotCell {
    /// A cell holding `snapshot`.
    pub fn new(snapshot: Snapshot) -> Self {
        Self {
            current: ArcSwap::from_pointee(snapshot),
            writer: Mutex::new(()),
        }
    }

    /// The snapshot to decide against now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Applies a change to the current snapshot and publishes the result; when `change` fails,
    /// nothing is published. When this returns, every decision that starts sees the change.
    pub fn update<E>(&self, change: impl FnOnce(&mut Snapshot) -> Result<(), E>) -> Result<(), E> {
        // A poisoned lock only means another writer panicked; the published snapshot is intact.
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = self.current.load().as_ref().clone();
        change(&mut next)?;
        self.current.store(Arc::new(next));
        Ok(())
    }
}
