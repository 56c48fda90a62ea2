//! The log's SQLite file: entries, their search columns, and signed checkpoints.
//!
//! The log lives in its own database file, beside the governance store's: it is written at
//! decision rate with its own group commit, and a verifier can open it without the store.

use crate::checkpoint::Checkpoint;
use crate::merkle::{Frontier, Hash};
use crate::record::{leaf_of, Columns};
use crate::LogError;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;

const SCHEMA: &str = r#"
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
    body           BLOB    NOT NULL,    -- the entry's JSON, exactly as hashed
    leaf           BLOB    NOT NULL     -- record::leaf_of(seq, columns, body)
) STRICT;
CREATE INDEX IF NOT EXISTS entries_by_decision ON entries (decision_id) WHERE decision_id <> '';
CREATE INDEX IF NOT EXISTS entries_by_at ON entries (at);
CREATE INDEX IF NOT EXISTS entries_by_principal ON entries (principal, seq);
CREATE INDEX IF NOT EXISTS entries_by_owner ON entries (owner, seq) WHERE owner <> '';
CREATE INDEX IF NOT EXISTS entries_by_action ON entries (action, seq);
CREATE INDEX IF NOT EXISTS entries_by_resource ON entries (resource, seq);
-- Search indexes over the JSON arrays above (a hop of a delegation chain; a determining policy).
CREATE TABLE IF NOT EXISTS entry_entities (
    entity TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (entity, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entry_policies (
    policy TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (policy, seq)
) STRICT, WITHOUT ROWID;
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
-- one update allowed is retention's: emptying the body of an entry it covers, nothing else.
CREATE TRIGGER IF NOT EXISTS entries_no_update BEFORE UPDATE ON entries
WHEN NOT (NEW.body = X'' AND NEW.seq = OLD.seq AND NEW.leaf = OLD.leaf AND NEW.kind = OLD.kind
      AND NEW.at = OLD.at AND NEW.decision_id = OLD.decision_id AND NEW.principal = OLD.principal
      AND NEW.owner = OLD.owner AND NEW.outcome = OLD.outcome AND NEW.action = OLD.action
      AND NEW.resource = OLD.resource AND NEW.policy_version = OLD.policy_version
      AND NEW.entities = OLD.entities AND NEW.policies = OLD.policies
      AND OLD.kind = 'decision' AND OLD.seq <= (SELECT COALESCE(MAX(through), 0) FROM retention))
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_no_delete BEFORE DELETE ON entries
BEGIN SELECT RAISE(ABORT, 'the decision log is append-only'); END;
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
}

pub(crate) const ROW_COLUMNS: &str = "seq, kind, at, decision_id, principal, owner, outcome, action, resource, policy_version, entities, policies, body, leaf";

impl LogDb {
    /// Opens (creating if needed) the log for writing. Every commit is fsynced
    /// (`synchronous = FULL`): an entry is on disk when its transaction returns.
    pub fn open(path: &Path) -> Result<Self, LogError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path)?;
        // Set before the first table exists (a no-op afterwards): entries are ~2-3 KB, and
        // larger pages hold several, so a commit writes fewer, fuller pages.
        conn.pragma_update(None, "page_size", 16_384)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A commit group of a few thousand entries dirties a few thousand pages; with SQLite's
        // default 2 MB cache it spills them to the WAL mid-transaction and reads them back.
        conn.pragma_update(None, "cache_size", -65_536)?; // KiB: 64 MB
                                                          // Checkpoint (copy the WAL into the database, fsync it) every 4096 pages (64 MB).
        conn.pragma_update(None, "wal_autocheckpoint", 4_096)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
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
        Ok(Self { conn })
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
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT INTO entries (seq, kind, at, decision_id, principal, owner, outcome, action, resource, policy_version, entities, policies, body, leaf)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            let mut entity =
                tx.prepare("INSERT OR IGNORE INTO entry_entities (entity, seq) VALUES (?1, ?2)")?;
            let mut policy =
                tx.prepare("INSERT OR IGNORE INTO entry_policies (policy, seq) VALUES (?1, ?2)")?;
            for (offset, (prepared, leaf)) in entries.iter().enumerate() {
                let seq = (first_seq + offset as u64) as i64;
                let columns = &prepared.columns;
                insert.execute(params![
                    seq,
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
                    prepared.body,
                    &leaf[..],
                ])?;
                for name in &columns.entities {
                    entity.execute(params![name, seq])?;
                }
                for name in &columns.policies {
                    policy.execute(params![name, seq])?;
                }
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
            "UPDATE entries SET body = X''
             WHERE seq BETWEEN ?1 AND ?2 AND kind = 'decision' AND body <> X''",
            params![from as i64, through as i64],
        )?;
        tx.commit()?;
        Ok(pruned as u64)
    }

    /// The highest seq a `retention` notice in the log allows to be pruned (0 if none). Read
    /// from the notices themselves, which the tree covers, not from the `retention` table.
    pub fn pruned_through(&self) -> Result<u64, LogError> {
        let mut statement = self.conn.prepare(
            "SELECT body FROM entries WHERE kind = 'notice' AND outcome = 'retention' AND body <> X''",
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
            "SELECT {ROW_COLUMNS} FROM entries WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq"
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
        let mut statement = self
            .conn
            .prepare(&format!("SELECT {ROW_COLUMNS} FROM entries WHERE seq = ?1"))?;
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

pub(crate) fn row_from_sql(row: &rusqlite::Row<'_>) -> Result<Row, LogError> {
    let seq: i64 = row.get(0)?;
    let list = |idx: usize| -> Result<Vec<String>, LogError> {
        let text: String = row.get(idx)?;
        serde_json::from_str(&text)
            .map_err(|err| LogError::Corrupt(format!("entry {seq}: column {idx}: {err}")))
    };
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
        body: row.get(12)?,
        leaf: row.get(13)?,
    })
}
