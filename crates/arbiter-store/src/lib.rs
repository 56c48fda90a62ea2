//! Arbiter's persistence layer: the [`Store`] trait and its SQLite backend, [`SqliteStore`].
//!
//! What it is: durable storage for what `arbiter serve` must remember across restarts — the
//! inventory (identities, groups, resources), live signals, numbered policy versions and which
//! one is active, hashed API keys — and an append-only change feed in which every mutation
//! records who made it, why, and what changed. The server rebuilds its in-memory snapshot from
//! [`Store::load_inventory_with_seq`] and follows [`Store::changes_since`] from there.
//!
//! What it is not: not on the decision path (decisions read an in-memory snapshot, never the
//! database), not a validator of the inventory's meaning (the engine is: build a snapshot before
//! writing), and not a keeper of secrets (it sees key hashes, never keys). It is the only crate
//! that speaks SQL; row mapping stays inside it and no domain type derives a row trait.
//!
//! Key design decisions:
//! - The trait is synchronous and object-safe (`&dyn Store`): the server calls it from
//!   `spawn_blocking`, and a PostgreSQL backend can sit behind it without changing callers.
//!   Backend-independent behaviour (argument checks, cursors, change details) lives in shared
//!   modules, and one conformance story in `tests/it` runs against every backend.
//! - Every mutation and its [`ChangeEvent`] commit in one transaction, or neither does: the feed
//!   is a complete, gap-free history, and a failed call changes nothing.
//! - Domain objects are stored as JSON, with the fields that filters use copied into indexed
//!   columns, so adding an attribute to an identity needs no migration.
//! - Time comes from an injected [`Clock`], read once per mutation.

#![warn(missing_docs)]

mod change;
mod clock;
mod cursor;
mod error;
mod model;
mod sqlite;
mod validate;

pub use change::change_kind;
pub use clock::{Clock, SystemClock};
pub use error::StoreError;
pub use model::{
    Actor, ApiKeyRecord, ApprovalRecord, ChangeEvent, ControlRecord, IdentityFilter, Page, PageOf,
    PolicySourceRecord, PolicyVersion, PolicyVersionSummary, MAX_PAGE_LIMIT,
};
pub use sqlite::SqliteStore;

use arbiter_core::{
    Control, EntityRef, Group, Identity, InventoryDocument, Lifecycle, Resource, Signal,
};

/// What every method returns.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Arbiter's durable state, behind one interface for every database.
///
/// Objects are addressed by their Cedar entity reference: an identity by its kind's Cedar type and
/// its id (`Agent::"build-bot"`), a group or resource by its type and id.
///
/// Every mutating method takes the [`Actor`] making the change and their `reason`, records one
/// [`ChangeEvent`] in the same transaction, and returns that event's `seq` (except
/// [`create_policy_version`](Store::create_policy_version), which returns the new version). A
/// call that returns an error has changed nothing and recorded nothing.
///
/// INVARIANT: the change feed is gap-free and visible in order — once an event with `seq` n can be
/// read, so can every event before it — so a follower that has seen up to n never misses one.
/// A backend whose sequence can commit out of order (e.g. PostgreSQL sequences) must serialise
/// writers to keep this.
///
/// The trait is synchronous; async callers run it on a blocking thread.
pub trait Store: Send + Sync {
    // Identities.

    /// Stores a new identity; [`StoreError::Conflict`] if one with the same kind and id exists.
    fn create_identity(&self, identity: &Identity, actor: &Actor, reason: &str) -> Result<u64>;

    /// Stores an identity, replacing any with the same kind and id.
    fn put_identity(&self, identity: &Identity, actor: &Actor, reason: &str) -> Result<u64>;

    /// Stores several identities in one transaction (one commit, one fsync), replacing any with
    /// the same kind and id: one change each, in order, all or none. Returns their `seq`s.
    fn put_identities(
        &self,
        identities: &[Identity],
        actor: &Actor,
        reason: &str,
    ) -> Result<Vec<u64>>;

    /// The identity `entity` refers to, or [`StoreError::NotFound`].
    fn get_identity(&self, entity: &EntityRef) -> Result<Identity>;

    /// One page of the identities matching `filter`, ordered by kind (as in
    /// [`IdentityKind::as_str`](arbiter_core::IdentityKind::as_str)) then id.
    fn list_identities(&self, filter: &IdentityFilter, page: &Page) -> Result<PageOf<Identity>>;

    /// Removes an identity, or [`StoreError::NotFound`]. Signals about it are kept.
    fn delete_identity(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64>;

    /// Moves an identity to `lifecycle` (suspend, quarantine, revoke, reinstate), or
    /// [`StoreError::NotFound`]. Setting the current state again is recorded too.
    fn set_lifecycle(
        &self,
        entity: &EntityRef,
        lifecycle: Lifecycle,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64>;

    // Groups.

    /// Stores a group or role, replacing any with the same type and id.
    fn put_group(&self, group: &Group, actor: &Actor, reason: &str) -> Result<u64>;

    /// The group `entity` refers to, or [`StoreError::NotFound`].
    fn get_group(&self, entity: &EntityRef) -> Result<Group>;

    /// One page of groups, ordered by type then id.
    fn list_groups(&self, page: &Page) -> Result<PageOf<Group>>;

    /// Removes a group, or [`StoreError::NotFound`]. Memberships that name it are left as they are.
    fn delete_group(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64>;

    // Resources.

    /// Stores a resource, replacing any with the same type and id.
    fn put_resource(&self, resource: &Resource, actor: &Actor, reason: &str) -> Result<u64>;

    /// The resource `entity` refers to, or [`StoreError::NotFound`].
    fn get_resource(&self, entity: &EntityRef) -> Result<Resource>;

    /// One page of resources, ordered by type then id.
    fn list_resources(&self, page: &Page) -> Result<PageOf<Resource>>;

    /// Removes a resource, or [`StoreError::NotFound`].
    fn delete_resource(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64>;

    // Signals.

    /// Stores a signal, replacing the one with the same subject and name.
    fn put_signal(&self, signal: &Signal, actor: &Actor, reason: &str) -> Result<u64>;

    /// The signals about `subject`, or all signals; ordered by subject then name. Stale signals
    /// are returned too: staleness depends on the time of the decision.
    fn list_signals(&self, subject: Option<&EntityRef>) -> Result<Vec<Signal>>;

    // The whole inventory.

    /// Everything in the inventory, each list in key order, together with the `seq` of the last
    /// change it includes, read in one transaction: follow [`changes_since`](Store::changes_since)
    /// that `seq` to stay current.
    fn load_inventory_with_seq(&self) -> Result<(InventoryDocument, u64)>;

    /// Everything in the inventory, each list in key order.
    fn load_inventory(&self) -> Result<InventoryDocument> {
        self.load_inventory_with_seq()
            .map(|(inventory, _)| inventory)
    }

    // Policy versions.

    /// Stores a new policy version numbered one above the newest and returns its number. It is
    /// not active until [`activate_policy_version`](Store::activate_policy_version). The store
    /// keeps `digest` as given; computing it, and validating the sources, is the caller's job.
    fn create_policy_version(
        &self,
        sources: &[PolicySourceRecord],
        digest: &str,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64>;

    /// A policy version with its sources, or [`StoreError::NotFound`].
    fn get_policy_version(&self, version: u64) -> Result<PolicyVersion>;

    /// Every policy version, oldest first, without sources.
    fn list_policy_versions(&self) -> Result<Vec<PolicyVersionSummary>>;

    /// Makes `version` the active one, or [`StoreError::NotFound`]. Activating an earlier version
    /// is how to roll back.
    fn activate_policy_version(&self, version: u64, actor: &Actor, reason: &str) -> Result<u64>;

    /// The active version, or `None` before any was activated.
    fn active_policy_version(&self) -> Result<Option<u64>>;

    // API keys.

    /// Stores a new API key; [`StoreError::Conflict`] if its id or its hash is taken. The record
    /// is stored as given (`created_at` and `created_by` included) and must not be revoked.
    fn create_api_key(&self, key: &ApiKeyRecord, actor: &Actor, reason: &str) -> Result<u64>;

    /// The key with this hash, if there is one and it is not revoked.
    fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>>;

    /// Every key, revoked ones included, ordered by id. The records carry their hashes: map them
    /// to a view without `key_hash` before printing or returning them.
    fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>>;

    /// Revokes a key from now on: [`StoreError::NotFound`] if it does not exist,
    /// [`StoreError::Conflict`] if it is already revoked.
    fn revoke_api_key(&self, id: &str, actor: &Actor, reason: &str) -> Result<u64>;

    // Approvals.

    /// Places a runtime control (its id, time and actor set by the caller). Recorded in the
    /// change feed as `control.place`.
    fn place_control(&self, control: &Control, actor: &Actor, reason: &str) -> Result<u64>;

    /// Lifts a control in force; returns it. `Conflict` if it was already lifted. Recorded as
    /// `control.lift`.
    fn lift_control(&self, id: &str, actor: &Actor, reason: &str) -> Result<(Control, u64)>;

    /// Controls in force (not lifted; expired ones included, marked by their `expires_at`), or
    /// every control ever placed with `include_lifted`.
    fn list_controls(&self, include_lifted: bool) -> Result<Vec<ControlRecord>>;

    /// Stores a new approval request, unless a pending, unexpired one with the same digest
    /// exists: then that one is returned and nothing is written. Returns the request and whether
    /// it was created.
    fn request_approval(
        &self,
        approval: &ApprovalRecord,
        actor: &Actor,
        reason: &str,
    ) -> Result<(ApprovalRecord, bool)>;

    /// The approval `id`, or [`StoreError::NotFound`].
    fn get_approval(&self, id: &str) -> Result<ApprovalRecord>;

    /// Approvals in `state` (all when `None`), newest first, at most `limit`.
    fn list_approvals(&self, state: Option<&str>, limit: u32) -> Result<Vec<ApprovalRecord>>;

    /// Approves (with `uses` uses until `grant_expires_at`) or denies a pending request, in the
    /// name of `approver`. [`StoreError::Conflict`] if it is not pending or has lapsed (at `now`):
    /// a decided or expired request cannot be revived.
    #[allow(
        clippy::too_many_arguments,
        reason = "one call states the whole decision"
    )]
    fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        uses: u32,
        grant_expires_at: i64,
        actor: &Actor,
        reason: &str,
    ) -> Result<ApprovalRecord>;

    /// Spends one use of a live grant for `digest` at `now`, atomically: of many concurrent
    /// callers for a one-use grant exactly one gets it. `None` when there is no live grant.
    fn use_grant(&self, digest: &str, now: i64, actor: &Actor) -> Result<Option<ApprovalRecord>>;

    // The change feed.

    /// Up to `limit` (1 to [`MAX_PAGE_LIMIT`]) events with a `seq` above `after`, in order. Start
    /// from 0 for the whole history.
    fn changes_since(&self, after: u64, limit: u32) -> Result<Vec<ChangeEvent>>;

    /// The `seq` of the newest event, or 0 when nothing has changed yet.
    fn latest_seq(&self) -> Result<u64>;
}
