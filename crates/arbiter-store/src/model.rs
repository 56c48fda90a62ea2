//! The records the store speaks besides arbiter-core's inventory types: who changes things, pages,
//! policy versions, API keys.

use arbiter_core::{EntityRef, IdentityKind, Lifecycle, Timestamp};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Who makes a change: an API key's owner, an operator at the CLI, or the system itself.
///
/// Every mutating [`Store`](crate::Store) method takes one and records it in the change feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// Who: an API key id, a user name, or `system`.
    pub id: String,
    /// In which role they acted, e.g. `admin` or `operator`.
    pub role: String,
}

impl Actor {
    /// Builds an actor from an id and a role.
    pub fn new(id: impl Into<String>, role: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            role: role.into(),
        }
    }
}

/// The largest `limit` a [`Page`] or [`Store::changes_since`](crate::Store::changes_since) accepts.
pub const MAX_PAGE_LIMIT: u32 = 1000;

/// Which page of a listing to return.
///
/// Listings are ordered by key (type or kind, then id, comparing bytes) and paged by key set:
/// `after` is the `next` cursor of the previous page, so a page never repeats or skips an object
/// that existed throughout, however the listing changes between pages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many items, from 1 to [`MAX_PAGE_LIMIT`].
    pub limit: u32,
    /// The [`PageOf::next`] cursor of the previous page; `None` for the first page.
    #[serde(default)]
    pub after: Option<String>,
}

impl Page {
    /// The first page of at most `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { limit, after: None }
    }

    /// The page of at most `limit` items after `cursor`.
    pub fn after(limit: u32, cursor: impl Into<String>) -> Self {
        Self {
            limit,
            after: Some(cursor.into()),
        }
    }
}

impl Default for Page {
    /// The first page of 100 items.
    fn default() -> Self {
        Self::first(100)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageOf<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// An opaque cursor for the next page, or `None` when this page is the last.
    pub next: Option<String>,
}

/// Which identities [`Store::list_identities`](crate::Store::list_identities) returns; every field
/// set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityFilter {
    /// Only identities of this kind.
    #[serde(default)]
    pub kind: Option<IdentityKind>,
    /// Only identities in this lifecycle state.
    #[serde(default)]
    pub lifecycle: Option<Lifecycle>,
    /// Only identities owned by this human (a `Human` id).
    #[serde(default)]
    pub owner: Option<String>,
    /// Only direct members of this group or role (membership is not followed transitively).
    #[serde(default)]
    pub member_of: Option<EntityRef>,
    /// Only identities whose id starts with this, case-sensitively.
    #[serde(default)]
    pub id_prefix: Option<String>,
}

/// One named Cedar source text of a policy version, e.g. `agents.cedar`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySourceRecord {
    /// File name or label, unique within a version.
    pub name: String,
    /// The Cedar text, stored byte for byte.
    pub text: String,
}

/// A stored policy set. Versions are numbered 1, 2, 3… and are never edited or deleted, so
/// rolling back is activating an earlier one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyVersion {
    /// The version number.
    pub version: u64,
    /// The sources, in the order they were given.
    pub sources: Vec<PolicySourceRecord>,
    /// The caller's digest of the sources; the store keeps it and does not recompute it.
    pub digest: String,
    /// When the version was created.
    pub created_at: Timestamp,
    /// The id of the [`Actor`] who created it.
    pub created_by: String,
    /// Why it was created.
    pub reason: String,
}

/// A policy version without its sources, for listings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyVersionSummary {
    /// The version number.
    pub version: u64,
    /// The caller's digest of the sources.
    pub digest: String,
    /// The source names, in order.
    pub source_names: Vec<String>,
    /// When the version was created.
    pub created_at: Timestamp,
    /// The id of the [`Actor`] who created it.
    pub created_by: String,
    /// Why it was created.
    pub reason: String,
    /// Whether this is the active version.
    pub active: bool,
}

/// A stored API key. The store never sees the key itself, only a hash of it.
///
/// Deliberately not `Serialize`, and its `Debug` hides `key_hash`: map it to a view without the
/// hash before showing it to anyone.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id of the key, unique.
    pub id: String,
    /// A label for people, e.g. `ci-pipeline`.
    pub name: String,
    /// The role the key acts in.
    pub role: String,
    /// A hash of the secret key (the caller chooses the hash), unique across keys. Never print it.
    pub key_hash: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// Who created it (an [`Actor`] id).
    pub created_by: String,
    /// When it was revoked; must be `None` when the key is created.
    pub revoked_at: Option<Timestamp>,
    /// The person an approver key approves as (`Human::"alice"`); approvals need one.
    pub acts_for: Option<arbiter_core::EntityRef>,
}

/// A runtime control and, once lifted, who lifted it, when and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ControlRecord {
    /// The control as placed.
    #[serde(flatten)]
    pub control: arbiter_core::Control,
    /// When it was lifted; `None` while in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<i64>,
    /// Who lifted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_by: Option<String>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lift_reason: Option<String>,
}

/// An approval request and, once approved, the grant it became.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApprovalRecord {
    /// Unique id, e.g. `apr_…`.
    pub id: String,
    /// SHA-256 of the canonical request it covers, hex: a grant allows only that request.
    pub digest: String,
    /// `pending`, `approved` or `denied`. A pending request past `expires_at` has lapsed.
    pub state: String,
    /// The subject of the request, `Type::"id"`.
    pub principal: String,
    /// What is asked, why, and who may approve (the server's JSON).
    pub body: serde_json::Value,
    /// When it was requested.
    pub created_at: Timestamp,
    /// When a pending request lapses.
    pub expires_at: Timestamp,
    /// The human who approved or denied it, `Human::"alice"`.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<Timestamp>,
    /// Their reason.
    pub decision_reason: Option<String>,
    /// Uses left of the grant.
    pub uses_left: u32,
    /// When the grant expires.
    pub grant_expires_at: Option<Timestamp>,
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("key_hash", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("created_by", &self.created_by)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// One entry of the change feed: every successful mutation appends exactly one, in the same
/// transaction as the change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeEvent {
    /// Position in the feed: 1, 2, 3… with no gaps.
    pub seq: u64,
    /// When the change was made.
    pub at: Timestamp,
    /// Who made it.
    pub actor: Actor,
    /// Why, in the actor's words.
    pub reason: String,
    /// What happened, one of the [`change_kind`](crate::change_kind) constants.
    pub kind: String,
    /// What it happened to: an entity reference such as `Agent::"build-bot"`, a policy version
    /// number, or an API key id.
    pub subject: String,
    /// The change itself, e.g. the identity as written and as it was; see
    /// [`change_kind`](crate::change_kind). Never contains a key hash.
    pub detail: serde_json::Value,
}
