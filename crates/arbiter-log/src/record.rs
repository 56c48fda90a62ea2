//! What the log holds: entries (decisions, governance changes, the log's own notices), the
//! columns copied out of them for search, and how both are hashed into a leaf.

use arbiter_core::{Decision, EntityRef, Outcome};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::merkle::{leaf_hash, Hash};

/// One log entry. Serialised once, when it is appended; the stored bytes are what is hashed and
/// what verification checks, so nothing ever re-serialises an entry to verify it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Entry {
    /// A decision, with everything needed to explain and replay it.
    Decision(Box<DecisionEntry>),
    /// A governance change (identity, lifecycle, policy, signal, key), copied from the store's
    /// change feed.
    Change(ChangeEntry),
    /// Something the log itself records: a write failure that turned decisions into denials,
    /// a retention run.
    Notice(NoticeEntry),
}

/// Who asked for a decision: the enforcement point's API key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerInfo {
    /// The key's id.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// The key's role.
    pub role: String,
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionEntry {
    /// Where it was asked: `evaluation`, `evaluations`, `search/subject`, `gateway`…
    pub endpoint: String,
    /// The enforcement point that asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<CallerInfo>,
    /// The request as decided, as AuthZEN JSON (delegation under `context.delegation`), after
    /// redaction of the fields the deployment marks sensitive.
    pub request: Value,
    /// The principal's accountable owner when it was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<EntityRef>,
    /// The decision: outcome, determining policies, reasons, every hop's explanation, the
    /// enriched context, and the policy version, digest and inventory position it was made on.
    pub decision: Decision,
    /// How long deciding took, in microseconds.
    pub latency_us: u64,
    /// JSON pointers into `request` whose values were replaced by keyed hashes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redacted: Vec<String>,
    /// How a human approval bore on it. `decision` is always the engine's own answer; with a
    /// grant `used`, the answer given was `allow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalNote>,
}

/// An approval a decision asked for or used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalNote {
    /// The approval request's id.
    pub id: String,
    /// `requested`: the answer was `approval_required` and this request waits for a human.
    /// `used`: a grant of this approval turned `approval_required` into `allow`.
    pub status: String,
    /// Who approved (for `used`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// Uses of the grant left after this one (for `used`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
}

impl DecisionEntry {
    /// The outcome the caller was given: the engine's, or `allow` when a grant was used.
    pub fn answered(&self) -> Outcome {
        match &self.approval {
            Some(note) if note.status == "used" => Outcome::Allow,
            _ => self.decision.outcome,
        }
    }
}

/// A governance change, as the store's change feed has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEntry {
    /// Its position in the store's change feed.
    pub change_seq: u64,
    /// When (seconds since the Unix epoch).
    pub at: i64,
    /// `identity.lifecycle`, `policy.activate`, … (see `arbiter_store::change_kind`).
    pub kind: String,
    /// What it changed, e.g. `Agent::"build-bot"` or `policy:3`.
    pub subject: String,
    /// Who changed it.
    pub actor: String,
    /// Their role.
    pub actor_role: String,
    /// Why.
    pub reason: String,
    /// What changed (before and after).
    pub detail: Value,
}

/// An event of the log's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoticeEntry {
    /// `write_failed`, `retention`, …
    pub kind: String,
    /// When (seconds since the Unix epoch).
    pub at: i64,
    /// For a person.
    pub message: String,
    /// The particulars.
    #[serde(default)]
    pub detail: Value,
}

/// The fields copied out of an entry into indexed columns so that searches need not parse
/// bodies. They are part of the leaf hash, so editing one is as detectable as editing the body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    /// `decision`, `change` or `notice`.
    pub kind: String,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// The decision id; empty for other entries.
    pub decision_id: String,
    /// The principal (`Type::"id"`), or the change's subject.
    pub principal: String,
    /// The principal's owner, if any.
    pub owner: String,
    /// `allow`, `deny`, `approval_required`; the change kind for changes.
    pub outcome: String,
    /// The action name.
    pub action: String,
    /// The resource (`Type::"id"`).
    pub resource: String,
    /// The active policy version.
    pub policy_version: u64,
    /// Every principal of the decision: delegation hops then the subject.
    pub entities: Vec<String>,
    /// Determining policies.
    pub policies: Vec<String>,
}

impl Entry {
    /// The columns to index this entry by.
    pub fn columns(&self) -> Columns {
        match self {
            Entry::Decision(entry) => {
                let decision = &entry.decision;
                let entities: Vec<String> = decision
                    .hops
                    .iter()
                    .map(|hop| hop.principal.to_string())
                    .collect();
                Columns {
                    kind: "decision".into(),
                    at: decision.decided_at,
                    decision_id: decision.id.clone(),
                    principal: entities.last().cloned().unwrap_or_default(),
                    owner: entry
                        .owner
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                    outcome: entry.answered().as_str().into(),
                    action: request_str(&entry.request, "action", "name"),
                    resource: request_entity(&entry.request, "resource"),
                    policy_version: decision.snapshot.policy_version,
                    entities,
                    policies: decision
                        .determining
                        .iter()
                        .map(|policy| policy.id.clone())
                        .collect(),
                }
            }
            Entry::Change(change) => Columns {
                kind: "change".into(),
                at: change.at,
                principal: change.subject.clone(),
                outcome: change.kind.clone(),
                entities: vec![change.subject.clone()],
                ..Columns::default()
            },
            Entry::Notice(notice) => Columns {
                kind: "notice".into(),
                at: notice.at,
                outcome: notice.kind.clone(),
                ..Columns::default()
            },
        }
    }
}

fn request_str(request: &Value, object: &str, field: &str) -> String {
    request
        .get(object)
        .and_then(|value| value.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn request_entity(request: &Value, object: &str) -> String {
    let entity_type = request_str(request, object, "type");
    let id = request_str(request, object, "id");
    EntityRef::new(entity_type, id).to_string()
}

/// The leaf hash of the entry at `seq`: `HASH(0x00 || seq || columns || body)`, every variable
/// field length-prefixed so that no two different rows hash alike. Binding the position means a
/// row moved elsewhere no longer matches; binding the columns means a search index edited to
/// hide a record is caught like an edited body.
pub fn leaf_of(seq: u64, columns: &Columns, body: &[u8]) -> Hash {
    let mut encoded = Vec::with_capacity(128);
    encoded.extend_from_slice(&seq.to_be_bytes());
    let texts = [
        &columns.kind,
        &columns.decision_id,
        &columns.principal,
        &columns.owner,
        &columns.outcome,
        &columns.action,
        &columns.resource,
    ];
    for text in texts {
        put_bytes(&mut encoded, text.as_bytes());
    }
    encoded.extend_from_slice(&columns.at.to_be_bytes());
    encoded.extend_from_slice(&columns.policy_version.to_be_bytes());
    for list in [&columns.entities, &columns.policies] {
        encoded.extend_from_slice(&(list.len() as u64).to_be_bytes());
        for item in list {
            put_bytes(&mut encoded, item.as_bytes());
        }
    }
    encoded.extend_from_slice(&(body.len() as u64).to_be_bytes());
    leaf_hash(&[&encoded, body])
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}
