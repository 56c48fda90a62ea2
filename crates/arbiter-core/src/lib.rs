//! Arbiter's vocabulary: the identities it governs, the resources they act on, the live signals
//! about them, and the shape of a decision request and of a decision.
//!
//! This crate is pure data: no I/O, no clock, no Cedar. Every other crate speaks these types, so
//! they are kept small and serde-friendly; the engine maps them to Cedar entities.

mod control;
mod decision;
mod identity;
mod request;
mod signal;
mod strict_json;

pub use control::{AppliedControl, Control, ControlLevel};
pub use decision::{
    ConditionOutcome, ConditionTrace, Decision, DecisionError, DeterminingPolicy, Effect,
    Explanation, GuardViolation, HopTrace, Outcome, PolicyTrace, PolicyTraceRole, SeenValue,
    SnapshotInfo,
};
pub use identity::{
    CredentialMeta, EntityRef, Group, Identity, IdentityKind, InventoryDocument, Lifecycle,
    Resource, Sensitivity, Timestamp,
};
pub use request::{
    json_type, parse_request, request_from_value, ActionRef, DecisionRequest, EntityInput,
    RequestError, RequestLimits, DELEGATION_KEY,
};
pub use signal::Signal;
pub use strict_json::parse_strict_json;
