//! Arbiter's decision engine: from a request and an immutable [`Snapshot`] (policies, inventory,
//! signals) to an explained [`Decision`](arbiter_core::Decision), in microseconds.
//!
//! What it is: Cedar evaluation (through `cedar-policy-core`'s own evaluator) plus what Cedar
//! lacks around it — a policy index so only candidate policies are evaluated, per-request entity
//! slices so the inventory can change one identity in O(log n), built-in guards (unknown or
//! inactive principals, erroring forbids, missing signals) that fail closed, delegation chains
//! decided as the intersection of every hop, `approval_required` outcomes, and condition-level
//! explanations.
//!
//! What it is not: it does no I/O, reads no clock (time arrives in [`DecideOptions`]) and holds
//! no lock on the decision path. Storage, HTTP and the CLI are layers around it.
//!
//! Key design decision: a decision is a pure function of `(snapshot, request, options)`. Readers
//! hold an `Arc<Snapshot>`; writers publish a new one through [`SnapshotCell`].

mod decide;
mod explain;
mod index;
mod inventory;
mod policies;
mod reach;
mod schema;
mod snapshot;
mod source_error;

pub use decide::{CedarEvaluation, DecideOptions};
pub use inventory::{
    from_uid, to_uid, CredentialGovernance, Governance, Inventory, InventoryBuilder,
    InventoryError, RESERVED_ATTRIBUTES,
};
pub use policies::{
    PolicyError, PolicySet, PolicySource, APPROVAL_ANNOTATION, ID_ANNOTATION, MAX_BRACKET_NESTING,
    MAX_EXPRESSION_DEPTH, OVERLAY_ANNOTATION, REASON_ANNOTATION, REQUIRES_SIGNALS_ANNOTATION,
};
pub use schema::Schema;
pub use snapshot::{EngineConfig, OrphanRule, Snapshot, SnapshotCell, ORPHAN_RULE_CONTROL};
pub use source_error::SourceError;
