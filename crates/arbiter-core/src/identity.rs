//! The governed inventory: identities (human and non-human), groups and resources.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Seconds since the Unix epoch. Time is data here: the core never reads a clock.
pub type Timestamp = i64;

/// A typed reference to an entity, the way Cedar and AuthZEN name things: `Agent::"build-bot"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// Cedar entity type, e.g. `Agent` or `Acme::Dataset`.
    #[serde(rename = "type")]
    pub entity_type: String,
    /// Entity id within its type.
    pub id: String,
}

impl EntityRef {
    /// Builds a reference from a type and an id.
    pub fn new(entity_type: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            entity_type: entity_type.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.entity_type, self.id)
    }
}

/// What kind of actor an identity is. Each maps to a Cedar entity type of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A person. Only humans own identities and approve requests.
    Human,
    /// A long-lived non-human account used by software.
    ServiceAccount,
    /// A running workload (pod, VM, function) with its own identity.
    Workload,
    /// An AI agent.
    AiAgent,
    /// A credential or token that acts on behalf of the identity that holds it.
    Credential,
}

impl IdentityKind {
    /// The Cedar entity type for this kind.
    pub fn cedar_type(self) -> &'static str {
        match self {
            IdentityKind::Human => "Human",
            IdentityKind::ServiceAccount => "ServiceAccount",
            IdentityKind::Workload => "Workload",
            IdentityKind::AiAgent => "Agent",
            IdentityKind::Credential => "Credential",
        }
    }

    /// The kind whose Cedar type is `cedar_type`, if any.
    pub fn from_cedar_type(cedar_type: &str) -> Option<Self> {
        [
            IdentityKind::Human,
            IdentityKind::ServiceAccount,
            IdentityKind::Workload,
            IdentityKind::AiAgent,
            IdentityKind::Credential,
        ]
        .into_iter()
        .find(|kind| kind.cedar_type() == cedar_type)
    }

    /// Everything but a human must have an accountable human owner.
    pub fn is_non_human(self) -> bool {
        self != IdentityKind::Human
    }

    /// The name used in JSON and in Cedar's `kind` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityKind::Human => "human",
            IdentityKind::ServiceAccount => "service_account",
            IdentityKind::Workload => "workload",
            IdentityKind::AiAgent => "ai_agent",
            IdentityKind::Credential => "credential",
        }
    }
}

/// Where an identity is in its life. Only `Active` identities can be allowed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// May act, subject to policy.
    #[default]
    Active,
    /// Temporarily stopped by an operator.
    Suspended,
    /// Contained after suspicious behaviour.
    Quarantined,
    /// Permanently disabled.
    Revoked,
    /// Past its end of life.
    Expired,
}

impl Lifecycle {
    /// The name used in JSON and in Cedar's `lifecycle` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Suspended => "suspended",
            Lifecycle::Quarantined => "quarantined",
            Lifecycle::Revoked => "revoked",
            Lifecycle::Expired => "expired",
        }
    }
}

/// Metadata about a credential. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialMeta {
    /// The identity this credential authenticates as; it can do nothing that identity cannot.
    pub holder: EntityRef,
    /// When it was issued.
    pub issued_at: Option<Timestamp>,
    /// When it was last rotated.
    pub rotated_at: Option<Timestamp>,
    /// When it stops being valid; past this the credential is denied everything.
    pub expires_at: Option<Timestamp>,
    /// When it was last seen in use.
    pub last_used_at: Option<Timestamp>,
}

/// One governed identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Unique within its kind.
    pub id: String,
    /// Human, service account, workload, AI agent or credential.
    pub kind: IdentityKind,
    /// A name for people.
    #[serde(default)]
    pub display_name: Option<String>,
    /// The accountable human (`Human` id). Required for every non-human identity.
    #[serde(default)]
    pub owner: Option<String>,
    /// Another identity that vouches for this one (e.g. the service that spawned an agent).
    #[serde(default)]
    pub sponsor: Option<EntityRef>,
    /// Lifecycle state; anything but `active` is denied by a guard no policy can override.
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Groups and roles, as Cedar parents.
    #[serde(default)]
    pub member_of: Vec<EntityRef>,
    /// Present when `kind` is `credential`.
    #[serde(default)]
    pub credential: Option<CredentialMeta>,
    /// Further attributes, in Cedar's entity JSON attribute format.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// The Cedar entity this identity becomes.
    pub fn entity_ref(&self) -> EntityRef {
        EntityRef::new(self.kind.cedar_type(), &self.id)
    }
}

/// How much harm misuse of a resource can do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Anyone may see it.
    Public,
    /// Inside the organisation.
    #[default]
    Internal,
    /// A need-to-know basis.
    Confidential,
    /// The crown jewels.
    Restricted,
}

impl Sensitivity {
    /// The name used in JSON and Cedar's `sensitivity` attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Restricted => "restricted",
        }
    }

    /// An ordered level (0 = public … 3 = restricted) so policies can compare with `<`.
    pub fn level(self) -> i64 {
        match self {
            Sensitivity::Public => 0,
            Sensitivity::Internal => 1,
            Sensitivity::Confidential => 2,
            Sensitivity::Restricted => 3,
        }
    }
}

/// Something identities act on: a tool, an API, a dataset, an MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Cedar entity type, e.g. `Tool`, `Dataset`, `McpServer`.
    #[serde(rename = "type")]
    pub resource_type: String,
    /// Id within the type.
    pub id: String,
    /// Sensitivity label.
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Containing resources (a tool's MCP server, a table's database) as Cedar parents.
    #[serde(default)]
    pub parents: Vec<EntityRef>,
    /// Further attributes, in Cedar's entity JSON attribute format.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

/// A group or role: a Cedar parent that identities are members of.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Cedar entity type, usually `Group` or `Role`.
    #[serde(rename = "type", default = "default_group_type")]
    pub group_type: String,
    /// Id within the type.
    pub id: String,
    /// Enclosing groups.
    #[serde(default)]
    pub parents: Vec<EntityRef>,
    /// Further attributes, in Cedar's entity JSON attribute format.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

fn default_group_type() -> String {
    "Group".to_owned()
}

/// Arbiter's inventory file format: everything `arbiter check` or `serve` can be bootstrapped from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryDocument {
    /// Humans and non-human identities.
    #[serde(default)]
    pub identities: Vec<Identity>,
    /// Groups and roles.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Tools, APIs, datasets, MCP servers.
    #[serde(default)]
    pub resources: Vec<Resource>,
    /// Live signals, keyed by the identity they describe.
    #[serde(default)]
    pub signals: Vec<crate::Signal>,
    /// Runtime controls in force (graduated containment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<crate::Control>,
}
