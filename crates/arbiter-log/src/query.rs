//! Searching the log: by identity (as subject or as any hop of a delegation chain), owner,
//! outcome, action, resource, determining policy, time and decision id.

use crate::db::{row_from_sql, LogDb, ROW_COLUMNS};
use crate::LogError;
use rusqlite::types::Value as SqlValue;
use serde::{Deserialize, Serialize};

/// Most entries one search returns.
pub const MAX_LIMIT: u32 = 1000;

/// A search. Every set field must match; unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// `decision`, `change` or `notice`.
    pub kind: Option<String>,
    /// A decision id.
    pub decision_id: Option<String>,
    /// An entity (`Type::"id"`) that was the subject or any hop of the delegation chain, or the
    /// subject of a change.
    pub entity: Option<String>,
    /// The principal's owner (`Human::"alice"`).
    pub owner: Option<String>,
    /// `allow`, `deny`, `approval_required` (or a change kind).
    pub outcome: Option<String>,
    /// The action name.
    pub action: Option<String>,
    /// The resource (`Type::"id"`).
    pub resource: Option<String>,
    /// A determining policy id.
    pub policy: Option<String>,
    /// From this time on (seconds since the Unix epoch, inclusive).
    pub since: Option<i64>,
    /// Before this time (exclusive).
    pub until: Option<i64>,
    /// Only entries after this seq (a cursor: pass the last seq seen).
    pub after: Option<u64>,
    /// Only entries before this seq (the cursor when paging newest first).
    pub before: Option<u64>,
    /// Newest first (the default is oldest first).
    #[serde(default)]
    pub newest_first: bool,
    /// Most entries to return (1 to 1000, default 100).
    pub limit: Option<u32>,
}

/// An entry as stored, with its position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntry {
    /// Position in the log.
    pub seq: u64,
    /// The entry.
    pub entry: serde_json::Value,
}

impl LogDb {
    /// The entries matching `query`.
    pub fn search(&self, query: &EntryQuery) -> Result<Vec<StoredEntry>, LogError> {
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(LogError::InvalidQuery {
                field: "limit".into(),
                message: format!("must be 1 to {MAX_LIMIT}, found {limit}"),
            });
        }
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<SqlValue> = Vec::new();
        let mut text = |column: &str, value: &Option<String>| {
            if let Some(value) = value {
                params.push(SqlValue::Text(value.clone()));
                conditions.push(format!("{column} = ?{}", params.len()));
            }
        };
        text("kind", &query.kind);
        text("decision_id", &query.decision_id);
        text("owner", &query.owner);
        text("outcome", &query.outcome);
        text("action", &query.action);
        text("resource", &query.resource);
        if let Some(entity) = &query.entity {
            params.push(SqlValue::Text(entity.clone()));
            conditions.push(format!(
                "seq IN (SELECT seq FROM entry_entities WHERE entity = ?{})",
                params.len()
            ));
        }
        if let Some(policy) = &query.policy {
            params.push(SqlValue::Text(policy.clone()));
            conditions.push(format!(
                "seq IN (SELECT seq FROM entry_policies WHERE policy = ?{})",
                params.len()
            ));
        }
        let mut integer = |condition: &str, value: Option<i64>| {
            if let Some(value) = value {
                params.push(SqlValue::Integer(value));
                conditions.push(format!("{condition} ?{}", params.len()));
            }
        };
        integer("at >=", query.since);
        integer("at <", query.until);
        integer("seq >", query.after.map(|seq| seq as i64));
        integer("seq <", query.before.map(|seq| seq as i64));
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if query.newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM entries {filter} ORDER BY seq {order} LIMIT {limit}"
        );
        let mut statement = self.conn().prepare(&sql)?;
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            let row = row_from_sql(row)?;
            let entry = if row.body.is_empty() {
                // Retention dropped the body; what the columns hold is all there is.
                serde_json::json!({
                    "type": "pruned",
                    "kind": row.columns.kind,
                    "at": row.columns.at,
                    "decision_id": row.columns.decision_id,
                    "principal": row.columns.principal,
                    "outcome": row.columns.outcome,
                    "action": row.columns.action,
                    "resource": row.columns.resource,
                })
            } else {
                serde_json::from_slice(&row.body)?
            };
            found.push(StoredEntry {
                seq: row.seq,
                entry,
            });
        }
        Ok(found)
    }
}
