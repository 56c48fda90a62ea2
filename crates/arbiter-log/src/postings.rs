//! The search index: for each block of consecutive entries, which entries mention each term.
//!
//! A B-tree index keyed by (identity, seq) takes one insert at a random place per entry and
//! term, so every commit rewrites a page per term: with 16 KB pages that was ~30 KB written per
//! 2 KB entry, and the main cost of a durable decision. Here the writer gathers the current
//! block's postings in memory and writes them only when the block fills, as rows keyed by
//! (block, term): always at the end of the table, once per block. Entries past the last full
//! block (the tail) are not indexed yet; a search reads them from `entries` directly, so a
//! search never depends on the index being current, and the index only narrows what is read.

use crate::db::list_column;
use crate::record::Columns;
use crate::LogError;
use rusqlite::{params, Connection, OptionalExtension, Statement};
use std::collections::HashMap;

/// Entries per block for a new log. A block's offsets must fit in `u16`.
pub const DEFAULT_BLOCK: u32 = 8192;

/// The terms an entry is found by: every entity it names (delegation hops, then the subject),
/// its owner, action and resource, and its determining policies.
pub(crate) fn terms(columns: &Columns) -> impl Iterator<Item = String> + '_ {
    let single = [
        ("o", &columns.owner),
        ("a", &columns.action),
        ("r", &columns.resource),
    ];
    columns
        .entities
        .iter()
        .map(|entity| term("e", entity))
        .chain(
            single
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(prefix, value)| term(prefix, value)),
        )
        .chain(columns.policies.iter().map(|policy| term("p", policy)))
}

/// A term: a one-letter field prefix, then the value (`e:Agent::"x"`, `a:read`).
pub(crate) fn term(prefix: &str, value: &str) -> String {
    format!("{prefix}:{value}")
}

/// How the index is laid out and how far it reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexState {
    /// Entries per block.
    pub(crate) block: u64,
    /// Entries `1..=sealed_through` are indexed; every later one is in the tail.
    pub(crate) sealed_through: u64,
}

impl IndexState {
    /// Reads the state; `None` for a log that has never been opened for writing.
    pub(crate) fn read(conn: &Connection) -> Result<Option<Self>, LogError> {
        Ok(conn
            .query_row(
                "SELECT block, sealed_through FROM posting_state WHERE singleton = 1",
                [],
                |row| {
                    Ok(Self {
                        block: row.get::<_, i64>(0)? as u64,
                        sealed_through: row.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?)
    }
}

/// Looks up postings: [`Lookup::offsets`] for one term in one block.
pub(crate) struct Lookup<'conn>(Statement<'conn>);

impl<'conn> Lookup<'conn> {
    pub(crate) fn new(conn: &'conn Connection) -> Result<Self, LogError> {
        Ok(Self(conn.prepare(
            "SELECT offsets FROM postings WHERE block = ?1 AND term = ?2",
        )?))
    }

    /// The offsets (seq − 1 − the block's first seq) at which `term` occurs in `block`.
    pub(crate) fn offsets(&mut self, block: u64, term: &str) -> Result<Vec<u16>, LogError> {
        let blob: Option<Vec<u8>> = self
            .0
            .query_row(params![block as i64, term], |row| row.get(0))
            .optional()?;
        Ok(blob.as_deref().map(decode).unwrap_or_default())
    }
}

/// Sorted offsets in common to every list.
pub(crate) fn intersect(mut lists: Vec<Vec<u16>>) -> Vec<u16> {
    lists.sort_by_key(Vec::len);
    let mut lists = lists.into_iter();
    let Some(mut common) = lists.next() else {
        return Vec::new();
    };
    for list in lists {
        common.retain(|offset| list.binary_search(offset).is_ok());
    }
    common
}

// Offsets are stored as little-endian u16s: a block holds at most 65,536 entries, and fixed
// width keeps decoding trivial. A varint delta code would be smaller and is not worth its code.
fn encode(offsets: &[u16]) -> Vec<u8> {
    offsets
        .iter()
        .flat_map(|offset| offset.to_le_bytes())
        .collect()
}

fn decode(blob: &[u8]) -> Vec<u16> {
    blob.chunks_exact(2)
        .filter_map(|pair| pair.try_into().ok().map(u16::from_le_bytes))
        .collect()
}

/// One block's postings being gathered, entry by entry in seq order: by the writer, and by
/// verification to compare with what is stored.
#[derive(Debug)]
pub(crate) struct BlockTerms {
    block: u64,
    terms: HashMap<String, Vec<u16>>,
}

impl BlockTerms {
    pub(crate) fn new(block: u64) -> Self {
        Self {
            block,
            terms: HashMap::new(),
        }
    }

    /// Notes entry `seq`'s terms; returns the block's number once `seq` fills it.
    pub(crate) fn add(&mut self, seq: u64, columns: &Columns) -> Option<u64> {
        let offset = ((seq - 1) % self.block) as u16;
        for term in terms(columns) {
            let list = self.terms.entry(term).or_default();
            // An entity may be both a hop and the subject; list each entry once.
            if list.last() != Some(&offset) {
                list.push(offset);
            }
        }
        seq.is_multiple_of(self.block)
            .then(|| (seq - 1) / self.block)
    }

    /// The gathered postings, in term order, leaving none.
    pub(crate) fn take(&mut self) -> Vec<(String, Vec<u16>)> {
        let mut terms: Vec<(String, Vec<u16>)> = self.terms.drain().collect();
        terms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        terms
    }
}

/// Block `block`'s stored postings, in term order.
pub(crate) fn stored(conn: &Connection, block: u64) -> Result<Vec<(String, Vec<u16>)>, LogError> {
    let mut statement =
        conn.prepare("SELECT term, offsets FROM postings WHERE block = ?1 ORDER BY term")?;
    let rows = statement.query_map([block as i64], |row| {
        Ok((row.get::<_, String>(0)?, decode(&row.get::<_, Vec<u8>>(1)?)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The writer's postings for the block being filled.
#[derive(Debug)]
pub(crate) struct Pending {
    state: IndexState,
    terms: BlockTerms,
}

impl Pending {
    /// The state of a log being opened for writing: created with `block` entries per block if
    /// new, then caught up, so that every full block is indexed and the tail is in memory.
    pub(crate) fn load(conn: &Connection, block: u32) -> Result<Self, LogError> {
        let block = block.clamp(1, 65_536);
        conn.execute(
            "INSERT OR IGNORE INTO posting_state (singleton, block, sealed_through) VALUES (1, ?1, 0)",
            [i64::from(block)],
        )?;
        let state = IndexState::read(conn)?
            .ok_or_else(|| LogError::Corrupt("the search index has no state row".into()))?;
        let mut pending = Self {
            state,
            terms: BlockTerms::new(state.block),
        };
        // The tail, and after an upgrade from a log without this index, every entry.
        let mut statement = conn.prepare(
            "SELECT seq, owner, action, resource, entities, policies FROM entries WHERE seq > ?1 ORDER BY seq",
        )?;
        let mut rows = statement.query([state.sealed_through as i64])?;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let columns = Columns {
                owner: row.get(1)?,
                action: row.get(2)?,
                resource: row.get(3)?,
                entities: list_column(row, seq, 4)?,
                policies: list_column(row, seq, 5)?,
                ..Columns::default()
            };
            pending.add(conn, seq, &columns)?;
        }
        Ok(pending)
    }

    /// Notes entry `seq`'s terms, writing the block's postings (on `conn`, inside the caller's
    /// transaction) once `seq` fills it. Entries must come in seq order.
    pub(crate) fn add(
        &mut self,
        conn: &Connection,
        seq: u64,
        columns: &Columns,
    ) -> Result<(), LogError> {
        let Some(block) = self.terms.add(seq, columns) else {
            return Ok(());
        };
        // In term order, so the inserts walk the B-tree's last pages in one direction.
        let terms = self.terms.take();
        let mut insert =
            conn.prepare("INSERT INTO postings (block, term, offsets) VALUES (?1, ?2, ?3)")?;
        for (term, offsets) in &terms {
            insert.execute(params![block as i64, term, encode(offsets)])?;
        }
        conn.execute(
            "UPDATE posting_state SET sealed_through = ?1 WHERE singleton = 1",
            [seq as i64],
        )?;
        self.state.sealed_through = seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_and_intersect() {
        let offsets = vec![0, 1, 300, 8191, 65_535];
        assert_eq!(decode(&encode(&offsets)), offsets);
        assert_eq!(
            intersect(vec![vec![1, 5, 9, 12], vec![0, 5, 12, 40], vec![5, 6, 12]]),
            vec![5, 12]
        );
        assert!(intersect(vec![vec![1], vec![]]).is_empty());
    }

    #[test]
    fn an_entry_is_found_by_every_entity_owner_action_resource_and_policy() {
        let columns = Columns {
            owner: "Human::\"ann\"".into(),
            action: "read".into(),
            resource: String::new(),
            entities: vec!["User::\"u\"".into(), "Agent::\"a\"".into()],
            policies: vec!["p1".into()],
            ..Columns::default()
        };
        let found: Vec<String> = terms(&columns).collect();
        assert_eq!(
            found,
            [
                "e:User::\"u\"",
                "e:Agent::\"a\"",
                "o:Human::\"ann\"",
                "a:read",
                "p:p1"
            ]
        );
    }
}
