//! The log's SQLite file: entries, their search columns, and signed checkpoints.
//!
//! The log lives in its own database file, beside the governance store's: it is written at
//! decision rate with its own group commit, and a verifier can open it without the store.

use crate::checkpoint::Checkpoint;
use crate::merkle::{Frontier, Hash};
use crate::postings::{Pending, DEFAULT_BLOCK};
use crate::record::{leaf_of, Columns};
use crate::LogError;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

/// The layout this code writes. Format 1 kept bodies in `entries` and indexed every search
/// column with its own B-tree; [`LogDb::open`] upgrades it in place (leaves are unchanged).
const FORMAT: i64 = 2;

const SCHEMA: &str = r#"
-- One row per entry: its search columns and leaf hash. Small rows, so that a scan of the
-- columns (usage analysis, verification of the tree) does not read bodies.
CREATE TABLE IF NOT EXISTS entries (
    seq            INTEGER PRIMARY KEY, -- 1, 2, 3…, assigned by the writer, never reused
    kind           TEXT    NOT NULL,    -- decision | change | notice
    at             INTEGER NOT NULL,
    decision_id    TEXT    NOT NULL,
    principal      TEXT    NOT NULL,
    owner          TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    resource       TEXT    NOT NULL,
    policy_version INTEGER NOT NULL,
    entities       TEXT    NOT NULL,    -- JSON array: delegation hops, then the subject
    policies       TEXT    NOT NULL,    -- JSON array: determining policies
    leaf           BLOB    NOT NULL     -- record::leaf_of(seq, columns, body)
) STRICT;
-- The entry's JSON, exactly as hashed; emptied by retention for old decisions.
CREATE TABLE IF NOT EXISTS bodies (
    seq  INTEGER PRIMARY KEY,
    body BLOB    NOT NULL
) STRICT;
-- Decision ids are UUIDv7 and times grow with seq: both indexes are appended to at the end.
CREATE INDEX IF NOT EXISTS entries_by_decision ON entries (decision_id) WHERE decision_id <> '';
CREATE INDEX IF NOT EXISTS entries_by_at ON entries (at);
-- The search index over entities, owners, actions, resources and policies (see postings.rs).
CREATE TABLE IF NOT EXISTS postings (
    block   INTEGER NOT NULL,
    term    TEXT    NOT NULL,
    offsets BLOB    NOT NULL,           -- little-endian u16 offsets into the block, ascending
    PRIMARY KEY (block, term)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS posting_state (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 1),
    block          INTEGER NOT NULL,    -- entries per block
    sealed_through INTEGER NOT NULL     -- entries up to here are in `postings`
) STRICT;
-- Signed tree heads: one about every second, kept for good.
CREATE TABLE IF NOT EXISTS checkpoints (
    size      INTEGER PRIMARY KEY,
    root      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
) STRICT;
-- The newest signed tree head, rewritten with every commit so that it always covers every entry.
CREATE TABLE IF NOT EXISTS latest_checkpoint (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    size      INTEGER NOT NULL,
    root      TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    key_id    TEXT    NOT NULL,
    signature TEXT    NOT NULL
) STRICT;
-- Retention: decisions up to `through` may have their bodies dropped. Their leaves and columns stay,
-- so the tree still verifies; a `retention` notice in the log itself records each run.
CREATE TABLE IF NOT EXISTS retention (
    through INTEGER NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
-- Entries are history. The triggers stop mistakes; verification catches everything else. The
-- one update allowed is retention's: emptying the body of a decision it covers.
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS bodies_no_update BEFORE UPDATE ON bodies
WHEN NOT (NEW.body = X'' AND NEW.seq = OLD.seq
      AND (SELECT kind FROM entries WHERE seq = OLD.seq) = 'decision'
      AND OLD.seq <= (SELECT COALESCE(MAX(through), 0) FROM retention))
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS bodies_no_delete BEFORE DELETE ON bodies
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
"#;

/// Format 1 → 2: bodies move to their own table; the per-column B-tree indexes and the two
/// search tables give way to `postings`, which the writer builds on open. Leaves, checkpoints
/// and retention are untouched, so the log verifies exactly as before.
const UPGRADE_FROM_1: &str = r#"
DROP TRIGGER IF EXISTS entries_no_update;
DROP TRIGGER IF EXISTS entries_no_delete;
CREATE TABLE bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL) STRICT;
INSERT INTO bodies (seq, body) SELECT seq, body FROM entries ORDER BY seq;
ALTER TABLE entries DROP COLUMN body;
DROP INDEX IF EXISTS entries_by_principal;
DROP INDEX IF EXISTS entries_by_owner;
DROP INDEX IF EXISTS entries_by_action;
DROP INDEX IF EXISTS entries_by_resource;
DROP TABLE IF EXISTS entry_entities;
DROP TABLE IF EXISTS entry_policies;
"#;

/// One stored row.
#[derive(Debug, Clone)]
pub struct Row {
    /// Position, from 1.
    pub seq: u64,
    /// Search columns.
    pub columns: Columns,
    /// The entry's JSON.
    pub body: Vec<u8>,
    /// The leaf hash as stored.
    pub leaf: Vec<u8>,
}

impl Row {
    /// The leaf hash recomputed from the row's content.
    pub fn computed_leaf(&self) -> Hash {
        leaf_of(self.seq, &self.columns, &self.body)
    }
}

/// An entry ready to be written: its search columns and its serialised JSON.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Search columns.
    pub columns: Columns,
    /// The entry's JSON.
    pub body: Vec<u8>,
}

/// An open log database.
#[derive(Debug)]
pub struct LogDb {
    conn: Connection,
    /// The writer's postings for the block being filled; `None` when opened read-only, and
    /// after a failed append (reloaded from disk by the next one).
    pending: Option<Pending>,
    block: u32,
}

/// The columns of a stored row, in [`row_from_sql`]'s order, and where they are read from.
pub(crate) const ROW_COLUMNS: &str = "e.seq, e.kind, e.at, e.decision_id, e.principal, e.owner, e.outcome, e.action, e.resource, e.policy_version, e.entities, e.policies, b.body, e.leaf";
pub(crate) const ROW_SOURCE: &str = "entries e LEFT JOIN bodies b ON b.seq = e.seq";

impl LogDb {
    /// Opens (creating if needed, upgrading an older format) the log for writing. Every commit
    /// is fsynced (`synchronous = FULL`): an entry is on disk when its transaction returns.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        Self::open_with_block(path, DEFAULT_BLOCK)
    }

    /// Like [`open`](Self::open); a new log indexes its entries in blocks of `block` (tests
    /// use small blocks to cross block boundaries; an existing log keeps its own).
    pub fn open_with_block(path: &Path, block: u32) -> Result<Self, LogError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut conn = Connection::open(path)?;
        // Set before the first table exists (a no-op afterwards): larger pages hold several
        // entries, so a commit writes fewer, fuller pages.
        conn.pragma_update(None, "page_size", 16_384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A commit group of a few thousand entries dirties a few thousand pages; with SQLite's
        // default 2 MB cache it spills them to the WAL mid-transaction and reads them back.
        conn.pragma_update(None, "cache_size", -65_536)?; // KiB: 64 MB
                                                          // Checkpoint (copy the WAL into the database, fsync it) every 4096 pages (64 MB).
        conn.pragma_update(None, "wal_autocheckpoint", 4_096)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        upgrade(&mut conn)?;
        let tx = conn.transaction()?;
        let pending = Pending::load(&tx, block)?;
        tx.commit()?;
        Ok(Self {
            conn,
            pending: Some(pending),
            block,
        })
    }

    /// Opens an existing log read-only (verification, search, replay).
    pub fn open_read_only(path: &Path) -> Result<Self, LogError> {
        if !path.exists() {
            return Err(LogError::Missing(path.display().to_string()));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let format: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
        if format != FORMAT && has_table(&conn, "entries")? {
            return Err(LogError::Corrupt(format!(
                "{} is in log format {format}; this version reads format {FORMAT}. Start `arbiter serve` on it once to upgrade it in place",
                path.display()
            )));
        }
        Ok(Self {
            conn,
            pending: None,
            block: DEFAULT_BLOCK,
        })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Entries stored.
    pub fn len(&self) -> Result<u64, LogError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT MAX(seq) FROM entries", [], |row| row.get(0))?;
        Ok(max.unwrap_or(0) as u64)
    }

    /// Whether the log holds no entry.
    pub fn is_empty(&self) -> Result<bool, LogError> {
        Ok(self.len()? == 0)
    }

    /// The tree over every stored leaf, as stored (verification recomputes them; the writer
    /// trusts them, having checked the latest checkpoint).
    pub fn frontier(&self) -> Result<Frontier, LogError> {
        let mut frontier = Frontier::new();
        let mut statement = self
            .conn
            .prepare("SELECT seq, leaf FROM entries ORDER BY seq")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let leaf: Vec<u8> = row.get(1)?;
            let leaf: Hash = leaf
                .try_into()
                .map_err(|_| LogError::Corrupt(format!("entry {seq}: leaf is not 32 bytes")))?;
            if seq as u64 != frontier.size() + 1 {
                return Err(LogError::Corrupt(format!(
                    "entry {} is missing (next stored is {seq})",
                    frontier.size() + 1
                )));
            }
            frontier.push(leaf);
        }
        Ok(frontier)
    }

    /// Every stored leaf hash, in order.
    pub fn leaves(&self, up_to: u64) -> Result<Vec<Hash>, LogError> {
        let mut statement = self
            .conn
            .prepare("SELECT leaf FROM entries WHERE seq <= ?1 ORDER BY seq")?;
        let rows = statement.query_map([up_to as i64], |row| row.get::<_, Vec<u8>>(0))?;
        let mut leaves = Vec::new();
        for leaf in rows {
            let leaf: Hash = leaf?
                .try_into()
                .map_err(|_| LogError::Corrupt("a leaf is not 32 bytes".into()))?;
            leaves.push(leaf);
        }
        Ok(leaves)
    }

    /// Appends entries from `first_seq` on, with the checkpoint that covers them, in one
    /// transaction: both are on disk when this returns, or neither is.
    pub fn append(
        &mut self,
        first_seq: u64,
        entries: &[(Prepared, Hash)],
        latest: &Checkpoint,
        keep: bool,
    ) -> Result<(), LogError> {
        // Taken for the transaction: if it fails, the next append reloads the block from disk.
        let pending = self.pending.take();
        let tx = self.conn.transaction()?;
        let mut pending = match pending {
            Some(pending) => pending,
            None => Pending::load(&tx, self.block)?,
        };
        {
            let mut insert = tx.prepare(
                "INSERT INTO entries (seq, kind, at, decision_id, principal, owner, outcome, action, resource, policy_version, entities, policies, leaf)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut body = tx.prepare("INSERT INTO bodies (seq, body) VALUES (?1, ?2)")?;
            for (offset, (prepared, leaf)) in entries.iter().enumerate() {
                let seq = first_seq + offset as u64;
                let columns = &prepared.columns;
                insert.execute(params![
                    seq as i64,
                    columns.kind,
                    columns.at,
                    columns.decision_id,
                    columns.principal,
                    columns.owner,
                    columns.outcome,
                    columns.action,
                    columns.resource,
                    columns.policy_version as i64,
                    serde_json::to_string(&columns.entities)?,
                    serde_json::to_string(&columns.policies)?,
                    &leaf[..],
                ])?;
                body.execute(params![seq as i64, prepared.body])?;
                pending.add(&tx, seq, columns)?;
            }
            tx.execute(
                "INSERT INTO latest_checkpoint (singleton, size, root, at, key_id, signature)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (singleton) DO UPDATE SET size = excluded.size, root = excluded.root,
                   at = excluded.at, key_id = excluded.key_id, signature = excluded.signature",
                params![
                    latest.size as i64,
                    latest.root,
                    latest.at,
                    latest.key_id,
                    latest.signature
                ],
            )?;
            if keep {
                tx.execute(
                    "INSERT OR REPLACE INTO checkpoints (size, root, at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        latest.size as i64,
                        latest.root,
                        latest.at,
                        latest.key_id,
                        latest.signature
                    ],
                )?;
            }
        }
        tx.commit()?;
        self.pending = Some(pending);
        Ok(())
    }

    /// Drops the bodies of the decisions among entries `from..=through` (retention), keeping
    /// their leaves and columns, in one transaction. Governance changes and the log's notices
    /// stay whole: they are few, they are the record of who changed what, and the server reads
    /// the last copied change's position back from its body. The caller has already logged the
    /// `retention` notice.
    pub fn prune(&mut self, from: u64, through: u64, at: i64) -> Result<u64, LogError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO retention (through, at) VALUES (?1, ?2)",
            params![through as i64, at],
        )?;
        let pruned = tx.execute(
            "UPDATE bodies SET body = X''
             WHERE seq BETWEEN ?1 AND ?2 AND body <> X''
               AND seq IN (SELECT seq FROM entries WHERE seq BETWEEN ?1 AND ?2 AND kind = 'decision')",
            params![from as i64, through as i64],
        )?;
        tx.commit()?;
        Ok(pruned as u64)
    }

    /// The highest seq a `retention` notice in the log allows to be pruned (0 if none). Read
    /// from the notices themselves, which the tree covers, not from the `retention` table.
    pub fn pruned_through(&self) -> Result<u64, LogError> {
        let mut statement = self.conn.prepare(
            "SELECT b.body FROM entries e JOIN bodies b ON b.seq = e.seq
             WHERE e.kind = 'notice' AND e.outcome = 'retention' AND b.body <> X''",
        )?;
        let mut rows = statement.query([])?;
        let mut through = 0;
        while let Some(row) = rows.next()? {
            let body: Vec<u8> = row.get(0)?;
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(seq) = value
                .pointer("/detail/pruned_through")
                .and_then(serde_json::Value::as_u64)
            {
                through = through.max(seq);
            }
        }
        Ok(through)
    }

    /// The seq of the first entry recorded at or after `at`, if any.
    pub fn first_at_or_after(&self, at: i64) -> Result<Option<u64>, LogError> {
        Ok(self
            .conn
            .query_row("SELECT MIN(seq) FROM entries WHERE at >= ?1", [at], |row| {
                row.get::<_, Option<i64>>(0)
            })?
            .map(|seq| seq as u64))
    }

    /// The newest checkpoint.
    pub fn latest_checkpoint(&self) -> Result<Option<Checkpoint>, LogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT size, root, at, key_id, signature FROM latest_checkpoint WHERE singleton = 1",
                [],
                checkpoint_from_row,
            )
            .optional()?)
    }

    /// The kept checkpoints, oldest first, then the latest one unless it is among them.
    pub fn checkpoints(&self) -> Result<Vec<Checkpoint>, LogError> {
        let mut statement = self
            .conn
            .prepare("SELECT size, root, at, key_id, signature FROM checkpoints ORDER BY size")?;
        let mut checkpoints = statement
            .query_map([], checkpoint_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(latest) = self.latest_checkpoint()? {
            if !checkpoints.contains(&latest) {
                checkpoints.push(latest);
            }
        }
        Ok(checkpoints)
    }

    /// Reads rows `from..=to` in order and hands each to `visit`; a row that cannot be read
    /// (a column of the wrong type or shape) stops the scan with its error.
    pub fn scan(
        &self,
        from: u64,
        to: u64,
        mut visit: impl FnMut(Row) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        self.scan_raw(from, to, |_, row| visit(row?))
    }

    /// Like [`scan`](Self::scan), but hands over unreadable rows as errors with their seq, so
    /// that verification can report them and go on.
    pub fn scan_raw(
        &self,
        from: u64,
        to: u64,
        mut visit: impl FnMut(u64, Result<Row, LogError>) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM {ROW_SOURCE} WHERE e.seq BETWEEN ?1 AND ?2 ORDER BY e.seq"
        ))?;
        let mut rows = statement.query(params![from as i64, to.min(i64::MAX as u64) as i64])?;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0).map(|seq| seq as u64).unwrap_or(0);
            visit(seq, row_from_sql(row))?;
        }
        Ok(())
    }

    /// The row with this seq.
    pub fn row(&self, seq: u64) -> Result<Option<Row>, LogError> {
        let mut statement = self.conn.prepare(&format!(
            "SELECT {ROW_COLUMNS} FROM {ROW_SOURCE} WHERE e.seq = ?1"
        ))?;
        let mut rows = statement.query([seq as i64])?;
        match rows.next()? {
            Some(row) => Ok(Some(row_from_sql(row)?)),
            None => Ok(None),
        }
    }

    /// The seq of the entry recording decision `id`.
    pub fn seq_of_decision(&self, id: &str) -> Result<Option<u64>, LogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT seq FROM entries WHERE decision_id = ?1 AND decision_id <> '' ORDER BY seq LIMIT 1",
                [id],
                |row| row.get::<_, i64>(0),
            )
            .optional()?
            .map(|seq| seq as u64))
    }
}

fn checkpoint_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Checkpoint> {
    Ok(Checkpoint {
        size: row.get::<_, i64>(0)? as u64,
        root: row.get(1)?,
        at: row.get(2)?,
        key_id: row.get(3)?,
        signature: row.get(4)?,
    })
}

/// A JSON array column (`entities`, `policies`) of entry `seq`.
pub(crate) fn list_column(
    row: &rusqlite::Row<'_>,
    seq: u64,
    idx: usize,
) -> Result<Vec<String>, LogError> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|err| LogError::Corrupt(format!("entry {seq}: column {idx}: {err}")))
}

pub(crate) fn row_from_sql(row: &rusqlite::Row<'_>) -> Result<Row, LogError> {
    let seq: i64 = row.get(0)?;
    let list = |idx: usize| list_column(row, seq as u64, idx);
    Ok(Row {
        seq: seq as u64,
        columns: Columns {
            kind: row.get(1)?,
            at: row.get(2)?,
            decision_id: row.get(3)?,
            principal: row.get(4)?,
            owner: row.get(5)?,
            outcome: row.get(6)?,
            action: row.get(7)?,
            resource: row.get(8)?,
            policy_version: row.get::<_, i64>(9)? as u64,
            entities: list(10)?,
            policies: list(11)?,
        },
        body: row
            .get::<_, Option<Vec<u8>>>(12)?
            .ok_or_else(|| LogError::Corrupt(format!("entry {seq}: its body is missing")))?,
        leaf: row.get(13)?,
    })
}

/// Brings a writable log to [`FORMAT`]: a new file gets the schema; a format-1 file is upgraded
/// in one transaction.
fn upgrade(conn: &mut Connection) -> Result<(), LogError> {
    let format: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let tx = conn.transaction()?;
    if format < 2 && has_table(&tx, "entries")? {
        let with_body: i64 = tx.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('entries') WHERE name = 'body'",
            [],
            |row| row.get(0),
        )?;
        if with_body == 1 {
            tracing::info!("upgrading the decision log to format {FORMAT}");
            tx.execute_batch(UPGRADE_FROM_1)?;
        }
    } else if format > FORMAT {
        return Err(LogError::Corrupt(format!(
            "the log is in format {format}, newer than this version's {FORMAT}"
        )));
    }
    tx.execute_batch(SCHEMA)?;
    tx.pragma_update(None, "user_version", FORMAT)?;
    tx.commit()?;
    Ok(())
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, LogError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}
