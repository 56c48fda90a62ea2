//! Searching the log: by identity (as subject or as any hop of a delegation chain), owner,
//! outcome, action, resource, determining policy, time and decision id.

use crate::db::{row_from_sql, LogDb, ROW_COLUMNS, ROW_SOURCE};
use crate::postings::{self, IndexState};
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
    ///
    /// Searches by entity, owner, action, resource or policy read the candidates of each full
    /// block from the postings, then the tail (entries past the last full block) directly.
    /// Every candidate is checked against every condition, so the index only narrows the
    /// reading: it can make a search faster, never wrong.
    pub fn search(&self, query: &EntryQuery) -> Result<Vec<StoredEntry>, LogError> {
        let limit = query.limit.unwrap_or(100);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(LogError::InvalidQuery {
                field: "limit".into(),
                message: format!("must be 1 to {MAX_LIMIT}, found {limit}"),
            });
        }
        let filter = Filter::of(query);
        let terms = index_terms(query);
        let state = IndexState::read(self.conn())?;
        let (Some(state), false, None) = (state, terms.is_empty(), &query.decision_id) else {
            // Nothing the postings know, a lookup by decision id (its own index), or a log
            // never opened for writing: the conditions alone choose the plan.
            return self.select(&filter, None, query.newest_first, limit as usize);
        };
        let low = query
            .after
            .map_or(1, |after| after.saturating_add(1))
            .max(1);
        let high = query
            .before
            .map_or(u64::MAX, |before| before.saturating_sub(1));
        let mut found = Vec::new();
        let tail_low = low.max(state.sealed_through + 1);
        let search_tail = |found: &mut Vec<StoredEntry>| -> Result<(), LogError> {
            if tail_low <= high && found.len() < limit as usize {
                let wanted = limit as usize - found.len();
                found.extend(self.select(
                    &filter,
                    Some(Seqs::From(tail_low)),
                    query.newest_first,
                    wanted,
                )?);
            }
            Ok(())
        };
        if query.newest_first {
            search_tail(&mut found)?;
        }
        let sealed_high = high.min(state.sealed_through);
        if low <= sealed_high {
            let (first, last) = ((low - 1) / state.block, (sealed_high - 1) / state.block);
            let blocks: Box<dyn Iterator<Item = u64>> = if query.newest_first {
                Box::new((first..=last).rev())
            } else {
                Box::new(first..=last)
            };
            let mut lookup = postings::Lookup::new(self.conn())?;
            for block in blocks {
                if found.len() >= limit as usize {
                    break;
                }
                let mut lists = Vec::with_capacity(terms.len());
                for term in &terms {
                    lists.push(lookup.offsets(block, term)?);
                }
                let start = block * state.block + 1;
                let seqs: Vec<u64> = postings::intersect(lists)
                    .into_iter()
                    .map(|offset| start + u64::from(offset))
                    .filter(|seq| (low..=high).contains(seq))
                    .collect();
                if !seqs.is_empty() {
                    let wanted = limit as usize - found.len();
                    found.extend(self.select(
                        &filter,
                        Some(Seqs::Among(&seqs)),
                        query.newest_first,
                        wanted,
                    )?);
                }
            }
        }
        if !query.newest_first {
            search_tail(&mut found)?;
        }
        Ok(found)
    }

    /// The entries that meet `filter` (among `seqs`, if given), in seq order, at most `limit`.
    fn select(
        &self,
        filter: &Filter,
        seqs: Option<Seqs<'_>>,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<StoredEntry>, LogError> {
        let mut conditions = filter.conditions.clone();
        let mut params = filter.params.clone();
        match seqs {
            None => {}
            Some(Seqs::From(low)) => {
                params.push(SqlValue::Integer(low as i64));
                conditions.push(format!("e.seq >= ?{}", params.len()));
            }
            Some(Seqs::Among(seqs)) => {
                params.push(SqlValue::Text(serde_json::to_string(seqs)?));
                conditions.push(format!(
                    "e.seq IN (SELECT value FROM json_each(?{}))",
                    params.len()
                ));
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if newest_first { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {ROW_COLUMNS} FROM {ROW_SOURCE} {filter} ORDER BY e.seq {order} LIMIT {limit}"
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

/// Which seqs a [`LogDb::select`] may return, besides the filter.
enum Seqs<'a> {
    /// This seq and later ones.
    From(u64),
    /// These (a block's candidates).
    Among(&'a [u64]),
}

/// Every condition of a query, as SQL over `entries e`.
struct Filter {
    conditions: Vec<String>,
    params: Vec<SqlValue>,
}

impl Filter {
    fn of(query: &EntryQuery) -> Self {
        let mut conditions: Vec<String> = Vec::new();
        let mut params: Vec<SqlValue> = Vec::new();
        let mut text = |condition: &str, value: &Option<String>| {
            if let Some(value) = value {
                params.push(SqlValue::Text(value.clone()));
                conditions.push(condition.replace('?', &format!("?{}", params.len())));
            }
        };
        text("e.kind = ?", &query.kind);
        // `<> ''` lets SQLite use the partial index on decision ids.
        text(
            "e.decision_id = ? AND e.decision_id <> ''",
            &query.decision_id,
        );
        text("e.owner = ?", &query.owner);
        text("e.outcome = ?", &query.outcome);
        text("e.action = ?", &query.action);
        text("e.resource = ?", &query.resource);
        text(
            "EXISTS (SELECT 1 FROM json_each(e.entities) WHERE value = ?)",
            &query.entity,
        );
        text(
            "EXISTS (SELECT 1 FROM json_each(e.policies) WHERE value = ?)",
            &query.policy,
        );
        let mut integer = |condition: &str, value: Option<i64>| {
            if let Some(value) = value {
                params.push(SqlValue::Integer(value));
                conditions.push(format!("{condition} ?{}", params.len()));
            }
        };
        integer("e.at >=", query.since);
        integer("e.at <", query.until);
        integer("e.seq >", query.after.map(|seq| seq as i64));
        integer("e.seq <", query.before.map(|seq| seq as i64));
        Self { conditions, params }
    }
}

/// The query's conditions the postings can answer.
fn index_terms(query: &EntryQuery) -> Vec<String> {
    [
        ("e", &query.entity),
        ("o", &query.owner),
        ("a", &query.action),
        ("r", &query.resource),
        ("p", &query.policy),
    ]
    .into_iter()
    .filter_map(|(prefix, value)| {
        value
            .as_deref()
            .filter(|value| !value.is_empty())
            .map(|value| postings::term(prefix, value))
    })
    .collect()
}
