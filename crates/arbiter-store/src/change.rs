//! The change feed's vocabulary, shared by every backend so that each records the same events.

use serde::Serialize;

/// The values of [`ChangeEvent::kind`](crate::ChangeEvent::kind), one per kind of mutation, and
/// the shape of the event's `detail` for each.
///
/// `after` is the object as written, `before` as it was (`null` when it did not exist). Followers
/// can apply an event from its detail alone, except `policy.create`, whose sources they read with
/// [`Store::get_policy_version`](crate::Store::get_policy_version).
pub mod change_kind {
    /// [`create_identity`](crate::Store::create_identity); detail `{"after": identity}`.
    pub const IDENTITY_CREATE: &str = "identity.create";
    /// [`put_identity`](crate::Store::put_identity); detail `{"after": identity, "before": identity | null}`.
    pub const IDENTITY_PUT: &str = "identity.put";
    /// [`set_lifecycle`](crate::Store::set_lifecycle); detail `{"after": "suspended", "before": "active"}`.
    pub const IDENTITY_LIFECYCLE: &str = "identity.lifecycle";
    /// [`delete_identity`](crate::Store::delete_identity); detail `{"before": identity}`.
    pub const IDENTITY_DELETE: &str = "identity.delete";
    /// [`put_group`](crate::Store::put_group); detail `{"after": group, "before": group | null}`.
    pub const GROUP_PUT: &str = "group.put";
    /// [`delete_group`](crate::Store::delete_group); detail `{"before": group}`.
    pub const GROUP_DELETE: &str = "group.delete";
    /// [`put_resource`](crate::Store::put_resource); detail `{"after": resource, "before": resource | null}`.
    pub const RESOURCE_PUT: &str = "resource.put";
    /// [`delete_resource`](crate::Store::delete_resource); detail `{"before": resource}`.
    pub const RESOURCE_DELETE: &str = "resource.delete";
    /// [`put_signal`](crate::Store::put_signal); detail `{"after": signal, "before": signal | null}`.
    pub const SIGNAL_PUT: &str = "signal.put";
    /// [`create_policy_version`](crate::Store::create_policy_version); detail
    /// `{"version": 3, "digest": "…", "sources": ["agents.cedar"]}` (names only).
    pub const POLICY_CREATE: &str = "policy.create";
    /// [`activate_policy_version`](crate::Store::activate_policy_version); detail
    /// `{"after": 3, "before": 2 | null}`.
    pub const POLICY_ACTIVATE: &str = "policy.activate";
    /// [`create_api_key`](crate::Store::create_api_key); detail `{"id", "name", "role"}`, never the hash.
    pub const API_KEY_CREATE: &str = "api_key.create";
    /// [`revoke_api_key`](crate::Store::revoke_api_key); detail `{"id", "name", "role"}`.
    pub const API_KEY_REVOKE: &str = "api_key.revoke";
    /// [`request_approval`](crate::Store::request_approval) created a request; detail
    /// `{"after": approval}`.
    pub const APPROVAL_REQUEST: &str = "approval.request";
    /// [`decide_approval`](crate::Store::decide_approval); detail `{"after": approval}`.
    pub const APPROVAL_DECIDE: &str = "approval.decide";
    /// [`use_grant`](crate::Store::use_grant) spent one use of a grant; detail
    /// `{"after": approval}`.
    pub const APPROVAL_USE: &str = "approval.use";
    /// [`place_control`](crate::Store::place_control); detail `{"after": control}`.
    pub const CONTROL_PLACE: &str = "control.place";
    /// [`lift_control`](crate::Store::lift_control); detail `{"id", "before": control}`.
    pub const CONTROL_LIFT: &str = "control.lift";
}

/// Detail of a write: the value as written and as it was.
#[derive(Serialize)]
pub(crate) struct WriteDetail<'a, T> {
    pub(crate) after: &'a T,
    pub(crate) before: Option<&'a T>,
}

/// Detail of a deletion: the value as it was.
#[derive(Serialize)]
pub(crate) struct DeleteDetail<'a, T> {
    pub(crate) before: &'a T,
}

/// Detail of a creation: the value as written.
#[derive(Serialize)]
pub(crate) struct CreateDetail<'a, T> {
    pub(crate) after: &'a T,
}

/// Detail of `policy.create`.
#[derive(Serialize)]
pub(crate) struct PolicyCreateDetail<'a> {
    pub(crate) version: u64,
    pub(crate) digest: &'a str,
    pub(crate) sources: Vec<&'a str>,
}

/// Detail of `api_key.create` and `api_key.revoke`: never the hash.
#[derive(Serialize)]
pub(crate) struct ApiKeyDetail<'a> {
    pub(crate) id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) role: &'a str,
}
