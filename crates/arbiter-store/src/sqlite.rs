//! The SQLite backend: one connection behind a mutex, numbered migrations embedded in the binary.

use crate::change::{
    change_kind, ApiKeyDetail, CreateDetail, DeleteDetail, PolicyCreateDetail, WriteDetail,
};
use crate::cursor::{self, CursorKey};
use crate::{
    validate, Actor, ApiKeyRecord, ApprovalRecord, ChangeEvent, Clock, ControlRecord,
    IdentityFilter, Page, PageOf, PolicySourceRecord, PolicyVersion, PolicyVersionSummary, Result,
    Store, StoreError, SystemClock,
};
use arbiter_core::{
    Control, EntityRef, Group, Identity, IdentityKind, InventoryDocument, Lifecycle, Resource,
    Signal, Timestamp,
};
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One schema change, applied once, in order, and recorded in `schema_migrations`.
struct Migration {
    version: u32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration this build knows. INVARIANT: versions are 1, 2, 3… in order, the last one is
/// [`SqliteStore::SCHEMA_VERSION`], and each matches a file `migrations/sqlite/NNNN_name.sql`
/// (a test checks all three). Never edit one that has shipped; append a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/sqlite/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "approvals",
        sql: include_str!("../migrations/sqlite/0002_approvals.sql"),
    },
    Migration {
        version: 3,
        name: "controls",
        sql: include_str!("../migrations/sqlite/0003_controls.sql"),
    },
];

/// How long a write waits for another connection (another process) to release the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const IDENTITY: &str = "identity";
const GROUP: &str = "group";
const RESOURCE: &str = "resource";
const SIGNAL: &str = "signal";
const POLICY_VERSION: &str = "policy version";
const API_KEY: &str = "api key";
const CONTROL: &str = "control";

/// A [`Store`] in one SQLite database file (or in memory).
///
/// Opening applies any pending migrations. The file uses write-ahead logging and `synchronous =
/// FULL`, so a change that returned is on disk. All calls share one connection and take turns.
pub struct SqliteStore {
    connection: Mutex<Connection>,
    clock: Arc<dyn Clock>,
    location: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The newest schema version this build knows, and migrates every database it opens to.
    pub const SCHEMA_VERSION: u32 = 3;

    /// Opens the database at `path`, creating the file and its folder if needed, and migrates it.
    /// [`StoreError::SchemaTooNew`] if a newer Arbiter has migrated it further.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(folder) = path
            .parent()
            .filter(|folder| !folder.as_os_str().is_empty())
        {
            std::fs::create_dir_all(folder).map_err(|error| {
                StoreError::Backend(format!(
                    "cannot create folder `{}`: {error}",
                    folder.display()
                ))
            })?;
        }
        let location = path.display().to_string();
        let connection = Connection::open(path).map_err(|error| {
            StoreError::Backend(format!("cannot open database `{location}`: {error}"))
        })?;
        let setup = || -> Result<(), Failure> {
            connection.busy_timeout(BUSY_TIMEOUT)?;
            let mode: String =
                connection
                    .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Backend(format!(
                    "database `{location}` cannot use write-ahead logging (journal mode `{mode}`)"
                ))
                .into());
            }
            Ok(())
        };
        setup().map_err(Failure::into_store_error)?;
        Self::start(connection, location)
    }

    /// Opens a new, empty database that lives in memory and vanishes when dropped; for tests.
    pub fn open_in_memory() -> Result<Self> {
        let connection = Connection::open_in_memory()
            .map_err(|error| Failure::from(error).into_store_error())?;
        Self::start(connection, ":memory:".to_owned())
    }

    /// Uses `clock` instead of the system clock for the timestamps of changes from now on.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn start(mut connection: Connection, location: String) -> Result<Self> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let setup = |connection: &mut Connection| -> Result<(), Failure> {
            connection.pragma_update(None, "synchronous", "FULL")?;
            connection.pragma_update(None, "foreign_keys", true)?;
            migrate(connection, clock.now())
        };
        setup(&mut connection).map_err(Failure::into_store_error)?;
        Ok(Self {
            connection: Mutex::new(connection),
            clock,
            location,
        })
    }

    fn connection(&self) -> MutexGuard<'_, Connection> {
        // A panic while the lock was held dropped its transaction, which rolled back: the
        // connection is as consistent as before, so the poison carries no information.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` in a write transaction and commits it, or rolls everything back on error.
    fn write<T>(
        &self,
        actor: &Actor,
        reason: &str,
        change: impl FnOnce(&Change<'_>) -> Result<T, Failure>,
    ) -> Result<T> {
        validate::actor(actor)?;
        let now = self.clock.now();
        let mut connection = self.connection();
        let run = || -> Result<T, Failure> {
            // IMMEDIATE takes the write lock up front, so two processes never both read and then
            // fail to upgrade to writing.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = change(&Change {
                transaction: &transaction,
                now,
                actor,
                reason,
            })?;
            transaction.commit()?;
            Ok(value)
        };
        run().map_err(Failure::into_store_error)
    }

    /// Runs `query` in a read transaction, so that its statements see one state of the database.
    fn read<T>(&self, query: impl FnOnce(&Connection) -> Result<T, Failure>) -> Result<T> {
        let mut connection = self.connection();
        let run = || -> Result<T, Failure> {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
            let value = query(&transaction)?;
            transaction.commit()?;
            Ok(value)
        };
        run().map_err(Failure::into_store_error)
    }
}

/// Applies the migrations the database lacks, in one transaction.
fn migrate(connection: &mut Connection, now: Timestamp) -> Result<(), Failure> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT    NOT NULL,
            applied_at INTEGER NOT NULL
        ) STRICT;",
    )?;
    let current: u32 = transaction.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    if current > SqliteStore::SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SqliteStore::SCHEMA_VERSION,
        }
        .into());
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        transaction
            .execute_batch(migration.sql)
            .and_then(|()| {
                transaction.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                    params![migration.version, migration.name, now],
                )
            })
            .map_err(|error| {
                StoreError::Backend(format!(
                    "migration {} `{}` failed: {error}",
                    migration.version, migration.name
                ))
            })?;
    }
    transaction.commit()?;
    Ok(())
}

/// A failure inside a transaction: a store error decided by the code, or one from SQLite or JSON.
/// Private so that no rusqlite type reaches the public API.
enum Failure {
    Store(StoreError),
    Sql(rusqlite::Error),
    Json(serde_json::Error),
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Store(error)
    }
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sql(error)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(error: serde_json::Error) -> Self {
        Failure::Json(error)
    }
}

impl Failure {
    fn into_store_error(self) -> StoreError {
        match self {
            Failure::Store(error) => error,
            Failure::Sql(error) => StoreError::Backend(format!("sqlite: {error}")),
            Failure::Json(error) => StoreError::Backend(format!("json: {error}")),
        }
    }
}

/// The write in progress: its transaction, its time, and who makes it why.
/// Stores `identity` (replacing any with its kind and id) and records the change, in `change`'s
/// transaction.
fn put_identity_in(change: &Change<'_>, identity: &Identity) -> Result<u64, Failure> {
    let before = load_identity(change.transaction, identity.kind, &identity.id)?;
    write_identity(change.transaction, identity, change.now)?;
    change.record(
        change_kind::IDENTITY_PUT,
        &identity.entity_ref().to_string(),
        &WriteDetail {
            after: identity,
            before: before.as_ref(),
        },
    )
}

struct Change<'a> {
    transaction: &'a Transaction<'a>,
    now: Timestamp,
    actor: &'a Actor,
    reason: &'a str,
}

impl Change<'_> {
    /// Appends the change event and returns its `seq`.
    fn record(&self, kind: &str, subject: &str, detail: &impl Serialize) -> Result<u64, Failure> {
        let detail = serde_json::to_string(detail)?;
        self.transaction.execute(
            "INSERT INTO change_events (at, actor_id, actor_role, reason, kind, subject, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                self.now,
                self.actor.id,
                self.actor.role,
                self.reason,
                kind,
                subject,
                detail
            ],
        )?;
        to_u64(self.transaction.last_insert_rowid())
    }
}

fn to_u64(value: i64) -> Result<u64, Failure> {
    u64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("negative number `{value}` in database")).into())
}

/// A version number or `seq` as SQLite stores it; `None` if it is too large to have been stored.
fn to_i64(value: u64) -> Option<i64> {
    i64::try_from(value).ok()
}

fn decode<T: DeserializeOwned>(what: &str, key: &str, body: &str) -> Result<T, Failure> {
    serde_json::from_str(body).map_err(|error| {
        StoreError::Backend(format!("stored {what} `{key}` cannot be read: {error}")).into()
    })
}

// Identities.

/// The kind of identity an entity reference names; an unknown type names no identity.
fn identity_kind(entity: &EntityRef) -> Result<IdentityKind, StoreError> {
    IdentityKind::from_cedar_type(&entity.entity_type)
        .ok_or_else(|| StoreError::not_found(IDENTITY, entity))
}

fn load_identity(
    connection: &Connection,
    kind: IdentityKind,
    id: &str,
) -> Result<Option<Identity>, Failure> {
    let body: Option<String> = connection
        .query_row(
            "SELECT body FROM identities WHERE kind = ?1 AND id = ?2",
            params![kind.as_str(), id],
            |row| row.get(0),
        )
        .optional()?;
    body.map(|body| decode(IDENTITY, id, &body)).transpose()
}

fn write_identity(
    connection: &Connection,
    identity: &Identity,
    now: Timestamp,
) -> Result<(), Failure> {
    let body = serde_json::to_string(identity)?;
    let kind = identity.kind.as_str();
    connection.execute(
        "INSERT INTO identities (kind, id, lifecycle, owner, body, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT (kind, id) DO UPDATE SET
             lifecycle = excluded.lifecycle,
             owner = excluded.owner,
             body = excluded.body,
             updated_at = excluded.updated_at",
        params![
            kind,
            identity.id,
            identity.lifecycle.as_str(),
            identity.owner,
            body,
            now
        ],
    )?;
    connection.execute(
        "DELETE FROM identity_memberships WHERE kind = ?1 AND id = ?2",
        params![kind, identity.id],
    )?;
    let mut insert = connection.prepare(
        "INSERT OR IGNORE INTO identity_memberships (kind, id, parent_type, parent_id)
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for parent in &identity.member_of {
        insert.execute(params![kind, identity.id, parent.entity_type, parent.id])?;
    }
    Ok(())
}

fn keyed_row(row: &Row<'_>) -> rusqlite::Result<(CursorKey, String)> {
    Ok((
        CursorKey {
            entity_type: row.get(0)?,
            id: row.get(1)?,
        },
        row.get(2)?,
    ))
}

fn decode_rows<T: DeserializeOwned>(
    what: &str,
    rows: Vec<(CursorKey, String)>,
) -> Result<Vec<(CursorKey, T)>, Failure> {
    rows.into_iter()
        .map(|(key, body)| {
            let value = decode(what, &key.id, &body)?;
            Ok((key, value))
        })
        .collect()
}

// Groups and resources: objects keyed by (type, id) with no filters.

/// Where one kind of typed object lives.
struct Table {
    name: &'static str,
    type_column: &'static str,
    what: &'static str,
}

const GROUPS: Table = Table {
    name: "groups",
    type_column: "group_type",
    what: GROUP,
};

const RESOURCES: Table = Table {
    name: "resources",
    type_column: "resource_type",
    what: RESOURCE,
};

impl Table {
    fn load<T: DeserializeOwned>(
        &self,
        connection: &Connection,
        entity: &EntityRef,
    ) -> Result<Option<T>, Failure> {
        let body: Option<String> = connection
            .query_row(
                &format!(
                    "SELECT body FROM {} WHERE {} = ?1 AND id = ?2",
                    self.name, self.type_column
                ),
                params![entity.entity_type, entity.id],
                |row| row.get(0),
            )
            .optional()?;
        body.map(|body| decode(self.what, &entity.id, &body))
            .transpose()
    }

    fn put<T: Serialize>(
        &self,
        connection: &Connection,
        entity: &EntityRef,
        value: &T,
        now: Timestamp,
    ) -> Result<(), Failure> {
        let body = serde_json::to_string(value)?;
        connection.execute(
            &format!(
                "INSERT INTO {name} ({type_column}, id, body, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT ({type_column}, id) DO UPDATE SET
                     body = excluded.body,
                     updated_at = excluded.updated_at",
                name = self.name,
                type_column = self.type_column
            ),
            params![entity.entity_type, entity.id, body, now],
        )?;
        Ok(())
    }

    fn delete(&self, connection: &Connection, entity: &EntityRef) -> Result<(), Failure> {
        connection.execute(
            &format!(
                "DELETE FROM {} WHERE {} = ?1 AND id = ?2",
                self.name, self.type_column
            ),
            params![entity.entity_type, entity.id],
        )?;
        Ok(())
    }

    /// Up to `fetch` objects after `after`, in key order; no cursor means from the start and a
    /// negative `fetch` means no limit (SQLite's `LIMIT -1`).
    fn list<T: DeserializeOwned>(
        &self,
        connection: &Connection,
        after: Option<&CursorKey>,
        fetch: i64,
    ) -> Result<Vec<(CursorKey, T)>, Failure> {
        let mut statement = connection.prepare(&format!(
            "SELECT {type_column}, id, body FROM {name}
             WHERE ?1 IS NULL OR ({type_column}, id) > (?1, ?2)
             ORDER BY {type_column}, id
             LIMIT ?3",
            name = self.name,
            type_column = self.type_column
        ))?;
        let rows = statement
            .query_map(
                params![
                    after.map(|key| key.entity_type.as_str()),
                    after.map(|key| key.id.as_str()),
                    fetch
                ],
                keyed_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        decode_rows(self.what, rows)
    }

    fn all<T: DeserializeOwned>(&self, connection: &Connection) -> Result<Vec<T>, Failure> {
        let rows = self.list(connection, None, -1)?;
        Ok(rows.into_iter().map(|(_, value)| value).collect())
    }

    fn get<T: DeserializeOwned>(&self, store: &SqliteStore, entity: &EntityRef) -> Result<T> {
        store.read(|connection| {
            self.load(connection, entity)?
                .ok_or_else(|| StoreError::not_found(self.what, entity).into())
        })
    }

    fn page<T: DeserializeOwned>(&self, store: &SqliteStore, page: &Page) -> Result<PageOf<T>> {
        let (limit, after) = validate::page(self.name, page)?;
        let rows =
            store.read(|connection| self.list(connection, after.as_ref(), i64::from(limit) + 1))?;
        Ok(cursor::into_page(self.name, rows, limit))
    }

    fn write_one<T: Serialize + DeserializeOwned>(
        &self,
        store: &SqliteStore,
        entity: &EntityRef,
        value: &T,
        kind: &str,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64> {
        store.write(actor, reason, |change| {
            let before: Option<T> = self.load(change.transaction, entity)?;
            self.put(change.transaction, entity, value, change.now)?;
            change.record(
                kind,
                &entity.to_string(),
                &WriteDetail {
                    after: value,
                    before: before.as_ref(),
                },
            )
        })
    }

    fn delete_one<T: Serialize + DeserializeOwned>(
        &self,
        store: &SqliteStore,
        entity: &EntityRef,
        kind: &str,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64> {
        store.write(actor, reason, |change| {
            let before: T = self
                .load(change.transaction, entity)?
                .ok_or_else(|| StoreError::not_found(self.what, entity))?;
            self.delete(change.transaction, entity)?;
            change.record(kind, &entity.to_string(), &DeleteDetail { before: &before })
        })
    }
}

// Signals.

fn load_signal(
    connection: &Connection,
    subject: &EntityRef,
    name: &str,
) -> Result<Option<Signal>, Failure> {
    let body: Option<String> = connection
        .query_row(
            "SELECT body FROM signals WHERE subject_type = ?1 AND subject_id = ?2 AND name = ?3",
            params![subject.entity_type, subject.id, name],
            |row| row.get(0),
        )
        .optional()?;
    body.map(|body| decode(SIGNAL, name, &body)).transpose()
}

fn list_signals(
    connection: &Connection,
    subject: Option<&EntityRef>,
) -> Result<Vec<Signal>, Failure> {
    let mut statement = connection.prepare(
        "SELECT name, body FROM signals
         WHERE ?1 IS NULL OR (subject_type = ?1 AND subject_id = ?2)
         ORDER BY subject_type, subject_id, name",
    )?;
    let rows = statement
        .query_map(
            params![
                subject.map(|subject| subject.entity_type.as_str()),
                subject.map(|subject| subject.id.as_str())
            ],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)),
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(name, body)| decode(SIGNAL, &name, &body))
        .collect()
}

// Policy versions.

fn policy_version_exists(connection: &Connection, version: i64) -> Result<bool, Failure> {
    Ok(connection
        .query_row(
            "SELECT 1 FROM policy_versions WHERE version = ?1",
            [version],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn active_version(connection: &Connection) -> Result<Option<u64>, Failure> {
    let version: Option<i64> = connection
        .query_row(
            "SELECT version FROM active_policy WHERE singleton = 1",
            [],
            |row| row.get(0),
        )
        .optional()?;
    version.map(to_u64).transpose()
}

// API keys.

const API_KEY_COLUMNS: &str =
    "id, name, role, key_hash, created_at, created_by, revoked_at, acts_for";

fn api_key_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        role: row.get(2)?,
        key_hash: row.get(3)?,
        created_at: row.get(4)?,
        created_by: row.get(5)?,
        revoked_at: row.get(6)?,
        acts_for: row
            .get::<_, Option<String>>(7)?
            .and_then(|text| serde_json::from_str(&text).ok()),
    })
}

fn load_api_key(connection: &Connection, id: &str) -> Result<Option<ApiKeyRecord>, Failure> {
    Ok(connection
        .query_row(
            &format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
            [id],
            api_key_row,
        )
        .optional()?)
}

// Approvals.

const APPROVAL: &str = "approval";
const APPROVAL_COLUMNS: &str = "id, digest, state, principal, body, created_at, expires_at, decided_by, decided_at, decision_reason, uses_left, grant_expires_at";

fn approval_row(row: &Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let body: String = row.get(4)?;
    Ok(ApprovalRecord {
        id: row.get(0)?,
        digest: row.get(1)?,
        state: row.get(2)?,
        principal: row.get(3)?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        decided_by: row.get(7)?,
        decided_at: row.get(8)?,
        decision_reason: row.get(9)?,
        uses_left: row.get::<_, i64>(10)?.try_into().unwrap_or(0),
        grant_expires_at: row.get(11)?,
    })
}

fn load_approval(connection: &Connection, id: &str) -> Result<Option<ApprovalRecord>, Failure> {
    Ok(connection
        .query_row(
            &format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"),
            [id],
            approval_row,
        )
        .optional()?)
}

fn latest_seq(connection: &Connection) -> Result<u64, Failure> {
    let seq: i64 = connection.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM change_events",
        [],
        |row| row.get(0),
    )?;
    to_u64(seq)
}

impl Store for SqliteStore {
    fn create_identity(&self, identity: &Identity, actor: &Actor, reason: &str) -> Result<u64> {
        validate::identity(identity)?;
        self.write(actor, reason, |change| {
            let entity = identity.entity_ref();
            if load_identity(change.transaction, identity.kind, &identity.id)?.is_some() {
                return Err(StoreError::conflict(IDENTITY, &entity, "already exists").into());
            }
            write_identity(change.transaction, identity, change.now)?;
            change.record(
                change_kind::IDENTITY_CREATE,
                &entity.to_string(),
                &CreateDetail { after: identity },
            )
        })
    }

    fn put_identity(&self, identity: &Identity, actor: &Actor, reason: &str) -> Result<u64> {
        validate::identity(identity)?;
        self.write(actor, reason, |change| put_identity_in(change, identity))
    }

    fn put_identities(
        &self,
        identities: &[Identity],
        actor: &Actor,
        reason: &str,
    ) -> Result<Vec<u64>> {
        for identity in identities {
            validate::identity(identity)?;
        }
        self.write(actor, reason, |change| {
            identities
                .iter()
                .map(|identity| put_identity_in(change, identity))
                .collect()
        })
    }

    fn get_identity(&self, entity: &EntityRef) -> Result<Identity> {
        let kind = identity_kind(entity)?;
        self.read(|connection| {
            load_identity(connection, kind, &entity.id)?
                .ok_or_else(|| StoreError::not_found(IDENTITY, entity).into())
        })
    }

    fn list_identities(&self, filter: &IdentityFilter, page: &Page) -> Result<PageOf<Identity>> {
        const LISTING: &str = "identities";
        let (limit, after) = validate::page(LISTING, page)?;
        let prefix = filter
            .id_prefix
            .as_deref()
            .filter(|prefix| !prefix.is_empty());
        let prefix_end = prefix.and_then(cursor::prefix_end);
        let rows = self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT i.kind, i.id, i.body FROM identities AS i
                 WHERE (?1 IS NULL OR i.kind = ?1)
                   AND (?2 IS NULL OR i.lifecycle = ?2)
                   AND (?3 IS NULL OR i.owner = ?3)
                   AND (?4 IS NULL OR EXISTS (
                        SELECT 1 FROM identity_memberships AS m
                        WHERE m.kind = i.kind AND m.id = i.id
                          AND m.parent_type = ?4 AND m.parent_id = ?5))
                   AND (?6 IS NULL OR i.id >= ?6)
                   AND (?7 IS NULL OR i.id < ?7)
                   AND (?8 IS NULL OR (i.kind, i.id) > (?8, ?9))
                 ORDER BY i.kind, i.id
                 LIMIT ?10",
            )?;
            let rows = statement
                .query_map(
                    params![
                        filter.kind.map(IdentityKind::as_str),
                        filter.lifecycle.map(Lifecycle::as_str),
                        filter.owner,
                        filter
                            .member_of
                            .as_ref()
                            .map(|group| group.entity_type.as_str()),
                        filter.member_of.as_ref().map(|group| group.id.as_str()),
                        prefix,
                        prefix_end,
                        after.as_ref().map(|key| key.entity_type.as_str()),
                        after.as_ref().map(|key| key.id.as_str()),
                        i64::from(limit) + 1,
                    ],
                    keyed_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            decode_rows(IDENTITY, rows)
        })?;
        Ok(cursor::into_page(LISTING, rows, limit))
    }

    fn delete_identity(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64> {
        let kind = identity_kind(entity)?;
        self.write(actor, reason, |change| {
            let before = load_identity(change.transaction, kind, &entity.id)?
                .ok_or_else(|| StoreError::not_found(IDENTITY, entity))?;
            // Memberships go with it (ON DELETE CASCADE).
            change.transaction.execute(
                "DELETE FROM identities WHERE kind = ?1 AND id = ?2",
                params![kind.as_str(), entity.id],
            )?;
            change.record(
                change_kind::IDENTITY_DELETE,
                &entity.to_string(),
                &DeleteDetail { before: &before },
            )
        })
    }

    fn set_lifecycle(
        &self,
        entity: &EntityRef,
        lifecycle: Lifecycle,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64> {
        let kind = identity_kind(entity)?;
        self.write(actor, reason, |change| {
            let mut identity = load_identity(change.transaction, kind, &entity.id)?
                .ok_or_else(|| StoreError::not_found(IDENTITY, entity))?;
            let before = identity.lifecycle;
            identity.lifecycle = lifecycle;
            change.transaction.execute(
                "UPDATE identities SET lifecycle = ?3, body = ?4, updated_at = ?5
                 WHERE kind = ?1 AND id = ?2",
                params![
                    kind.as_str(),
                    entity.id,
                    lifecycle.as_str(),
                    serde_json::to_string(&identity)?,
                    change.now
                ],
            )?;
            change.record(
                change_kind::IDENTITY_LIFECYCLE,
                &entity.to_string(),
                &WriteDetail {
                    after: &lifecycle,
                    before: Some(&before),
                },
            )
        })
    }

    fn put_group(&self, group: &Group, actor: &Actor, reason: &str) -> Result<u64> {
        validate::group(group)?;
        let entity = EntityRef::new(&group.group_type, &group.id);
        GROUPS.write_one(self, &entity, group, change_kind::GROUP_PUT, actor, reason)
    }

    fn get_group(&self, entity: &EntityRef) -> Result<Group> {
        GROUPS.get(self, entity)
    }

    fn list_groups(&self, page: &Page) -> Result<PageOf<Group>> {
        GROUPS.page(self, page)
    }

    fn delete_group(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64> {
        GROUPS.delete_one::<Group>(self, entity, change_kind::GROUP_DELETE, actor, reason)
    }

    fn put_resource(&self, resource: &Resource, actor: &Actor, reason: &str) -> Result<u64> {
        validate::resource(resource)?;
        let entity = EntityRef::new(&resource.resource_type, &resource.id);
        RESOURCES.write_one(
            self,
            &entity,
            resource,
            change_kind::RESOURCE_PUT,
            actor,
            reason,
        )
    }

    fn get_resource(&self, entity: &EntityRef) -> Result<Resource> {
        RESOURCES.get(self, entity)
    }

    fn list_resources(&self, page: &Page) -> Result<PageOf<Resource>> {
        RESOURCES.page(self, page)
    }

    fn delete_resource(&self, entity: &EntityRef, actor: &Actor, reason: &str) -> Result<u64> {
        RESOURCES.delete_one::<Resource>(self, entity, change_kind::RESOURCE_DELETE, actor, reason)
    }

    fn put_signal(&self, signal: &Signal, actor: &Actor, reason: &str) -> Result<u64> {
        validate::signal(signal)?;
        self.write(actor, reason, |change| {
            let before = load_signal(change.transaction, &signal.subject, &signal.name)?;
            change.transaction.execute(
                "INSERT INTO signals (subject_type, subject_id, name, body, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (subject_type, subject_id, name) DO UPDATE SET
                     body = excluded.body,
                     updated_at = excluded.updated_at",
                params![
                    signal.subject.entity_type,
                    signal.subject.id,
                    signal.name,
                    serde_json::to_string(signal)?,
                    change.now
                ],
            )?;
            change.record(
                change_kind::SIGNAL_PUT,
                &signal.subject.to_string(),
                &WriteDetail {
                    after: signal,
                    before: before.as_ref(),
                },
            )
        })
    }

    fn list_signals(&self, subject: Option<&EntityRef>) -> Result<Vec<Signal>> {
        self.read(|connection| list_signals(connection, subject))
    }

    fn load_inventory_with_seq(&self) -> Result<(InventoryDocument, u64)> {
        self.read(|connection| {
            let mut statement =
                connection.prepare("SELECT kind, id, body FROM identities ORDER BY kind, id")?;
            let identity_rows = statement
                .query_map([], keyed_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let identities = decode_rows(IDENTITY, identity_rows)?
                .into_iter()
                .map(|(_, identity)| identity)
                .collect();
            let inventory = InventoryDocument {
                identities,
                groups: GROUPS.all(connection)?,
                resources: RESOURCES.all(connection)?,
                signals: list_signals(connection, None)?,
                controls: list_controls(connection, false)?
                    .into_iter()
                    .map(|record| record.control)
                    .collect(),
            };
            Ok((inventory, latest_seq(connection)?))
        })
    }

    fn create_policy_version(
        &self,
        sources: &[PolicySourceRecord],
        digest: &str,
        actor: &Actor,
        reason: &str,
    ) -> Result<u64> {
        validate::policy_version(sources, digest)?;
        self.write(actor, reason, |change| {
            let version: i64 = change.transaction.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM policy_versions",
                [],
                |row| row.get(0),
            )?;
            change.transaction.execute(
                "INSERT INTO policy_versions (version, digest, created_at, created_by, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![version, digest, change.now, change.actor.id, change.reason],
            )?;
            let mut insert = change.transaction.prepare(
                "INSERT INTO policy_sources (version, position, name, text) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (position, source) in (0_i64..).zip(sources) {
                insert.execute(params![version, position, source.name, source.text])?;
            }
            let version = to_u64(version)?;
            change.record(
                change_kind::POLICY_CREATE,
                &version.to_string(),
                &PolicyCreateDetail {
                    version,
                    digest,
                    sources: sources.iter().map(|source| source.name.as_str()).collect(),
                },
            )?;
            Ok(version)
        })
    }

    fn get_policy_version(&self, version: u64) -> Result<PolicyVersion> {
        let not_found = || StoreError::not_found(POLICY_VERSION, version);
        let stored_version = to_i64(version).ok_or_else(not_found)?;
        self.read(|connection| {
            let row = connection
                .query_row(
                    "SELECT digest, created_at, created_by, reason FROM policy_versions
                     WHERE version = ?1",
                    [stored_version],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Timestamp>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                        ))
                    },
                )
                .optional()?;
            let Some((digest, created_at, created_by, reason)) = row else {
                return Err(not_found().into());
            };
            let mut statement = connection.prepare(
                "SELECT name, text FROM policy_sources WHERE version = ?1 ORDER BY position",
            )?;
            let sources = statement
                .query_map([stored_version], |row| {
                    Ok(PolicySourceRecord {
                        name: row.get(0)?,
                        text: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(PolicyVersion {
                version,
                sources,
                digest,
                created_at,
                created_by,
                reason,
            })
        })
    }

    fn list_policy_versions(&self) -> Result<Vec<PolicyVersionSummary>> {
        self.read(|connection| {
            let mut names: BTreeMap<i64, Vec<String>> = BTreeMap::new();
            let mut statement = connection
                .prepare("SELECT version, name FROM policy_sources ORDER BY version, position")?;
            let rows = statement.query_map([], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (version, name) = row?;
                names.entry(version).or_default().push(name);
            }
            let active = active_version(connection)?;
            let mut statement = connection.prepare(
                "SELECT version, digest, created_at, created_by, reason FROM policy_versions
                 ORDER BY version",
            )?;
            let rows = statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Timestamp>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(stored_version, digest, created_at, created_by, reason)| {
                    let version = to_u64(stored_version)?;
                    Ok(PolicyVersionSummary {
                        version,
                        digest,
                        source_names: names.remove(&stored_version).unwrap_or_default(),
                        created_at,
                        created_by,
                        reason,
                        active: active == Some(version),
                    })
                })
                .collect()
        })
    }

    fn activate_policy_version(&self, version: u64, actor: &Actor, reason: &str) -> Result<u64> {
        let not_found = || StoreError::not_found(POLICY_VERSION, version);
        let stored_version = to_i64(version).ok_or_else(not_found)?;
        self.write(actor, reason, |change| {
            if !policy_version_exists(change.transaction, stored_version)? {
                return Err(not_found().into());
            }
            let before = active_version(change.transaction)?;
            change.transaction.execute(
                "INSERT INTO active_policy (singleton, version, activated_at) VALUES (1, ?1, ?2)
                 ON CONFLICT (singleton) DO UPDATE SET
                     version = excluded.version,
                     activated_at = excluded.activated_at",
                params![stored_version, change.now],
            )?;
            change.record(
                change_kind::POLICY_ACTIVATE,
                &version.to_string(),
                &WriteDetail {
                    after: &version,
                    before: before.as_ref(),
                },
            )
        })
    }

    fn active_policy_version(&self) -> Result<Option<u64>> {
        self.read(active_version)
    }

    fn create_api_key(&self, key: &ApiKeyRecord, actor: &Actor, reason: &str) -> Result<u64> {
        validate::new_api_key(key)?;
        self.write(actor, reason, |change| {
            if load_api_key(change.transaction, &key.id)?.is_some() {
                return Err(StoreError::conflict(API_KEY, &key.id, "already exists").into());
            }
            let hash_taken = change
                .transaction
                .query_row(
                    "SELECT 1 FROM api_keys WHERE key_hash = ?1",
                    [&key.key_hash],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if hash_taken {
                return Err(StoreError::conflict(
                    API_KEY,
                    &key.id,
                    "has the same hash as another key",
                )
                .into());
            }
            change.transaction.execute(
                &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, ?7)"),
                params![
                    key.id,
                    key.name,
                    key.role,
                    key.key_hash,
                    key.created_at,
                    key.created_by,
                    key.acts_for
                        .as_ref()
                        .map(serde_json::to_string)
                        .transpose()
                        .map_err(|err| StoreError::invalid("acts_for", err.to_string()))?
                ],
            )?;
            change.record(
                change_kind::API_KEY_CREATE,
                &key.id,
                &ApiKeyDetail {
                    id: &key.id,
                    name: &key.name,
                    role: &key.role,
                },
            )
        })
    }

    fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKeyRecord>> {
        self.read(|connection| {
            Ok(connection
                .query_row(
                    &format!(
                        "SELECT {API_KEY_COLUMNS} FROM api_keys
                         WHERE key_hash = ?1 AND revoked_at IS NULL"
                    ),
                    [key_hash],
                    api_key_row,
                )
                .optional()?)
        })
    }

    fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>> {
        self.read(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY id"
            ))?;
            let keys = statement
                .query_map([], api_key_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(keys)
        })
    }

    fn revoke_api_key(&self, id: &str, actor: &Actor, reason: &str) -> Result<u64> {
        self.write(actor, reason, |change| {
            let key = load_api_key(change.transaction, id)?
                .ok_or_else(|| StoreError::not_found(API_KEY, id))?;
            if key.revoked_at.is_some() {
                return Err(StoreError::conflict(API_KEY, id, "is already revoked").into());
            }
            change.transaction.execute(
                "UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1",
                params![id, change.now],
            )?;
            change.record(
                change_kind::API_KEY_REVOKE,
                id,
                &ApiKeyDetail {
                    id,
                    name: &key.name,
                    role: &key.role,
                },
            )
        })
    }

    fn place_control(&self, control: &Control, actor: &Actor, reason: &str) -> Result<u64> {
        validate::control(control)?;
        self.write(actor, reason, |change| {
            if load_control(change.transaction, &control.id)?.is_some() {
                return Err(StoreError::conflict(CONTROL, &control.id, "already exists").into());
            }
            change.transaction.execute(
                "INSERT INTO controls (id, target, level, body, placed_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    control.id,
                    control.target.to_string(),
                    control.level.as_str(),
                    serde_json::to_string(control)?,
                    control.placed_at,
                    control.expires_at
                ],
            )?;
            change.record(
                change_kind::CONTROL_PLACE,
                &control.target.to_string(),
                &serde_json::json!({ "after": control }),
            )
        })
    }

    fn lift_control(&self, id: &str, actor: &Actor, reason: &str) -> Result<(Control, u64)> {
        self.write(actor, reason, |change| {
            let record = load_control(change.transaction, id)?
                .ok_or_else(|| StoreError::not_found(CONTROL, id))?;
            if record.lifted_at.is_some() {
                return Err(StoreError::conflict(CONTROL, id, "already lifted").into());
            }
            change.transaction.execute(
                "UPDATE controls SET lifted_at = ?2, lifted_by = ?3, lift_reason = ?4 WHERE id = ?1",
                params![id, change.now, actor.id, reason],
            )?;
            let seq = change.record(
                change_kind::CONTROL_LIFT,
                &record.control.target.to_string(),
                &serde_json::json!({ "id": id, "before": record.control }),
            )?;
            Ok((record.control, seq))
        })
    }

    fn list_controls(&self, include_lifted: bool) -> Result<Vec<ControlRecord>> {
        self.read(|connection| list_controls(connection, include_lifted))
    }

    fn request_approval(
        &self,
        approval: &ApprovalRecord,
        actor: &Actor,
        reason: &str,
    ) -> Result<(ApprovalRecord, bool)> {
        self.write(actor, reason, |change| {
            let pending = change
                .transaction
                .query_row(
                    &format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals
                         WHERE digest = ?1 AND state = 'pending' AND expires_at > ?2
                         ORDER BY created_at LIMIT 1"
                    ),
                    params![approval.digest, change.now],
                    approval_row,
                )
                .optional()?;
            if let Some(pending) = pending {
                return Ok((pending, false));
            }
            if load_approval(change.transaction, &approval.id)?.is_some() {
                return Err(StoreError::conflict(APPROVAL, &approval.id, "already exists").into());
            }
            change.transaction.execute(
                &format!(
                    "INSERT INTO approvals ({APPROVAL_COLUMNS})
                     VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, NULL, NULL, NULL, 0, NULL)"
                ),
                params![
                    approval.id,
                    approval.digest,
                    approval.principal,
                    approval.body.to_string(),
                    approval.created_at,
                    approval.expires_at
                ],
            )?;
            let stored = load_approval(change.transaction, &approval.id)?
                .ok_or_else(|| StoreError::not_found(APPROVAL, &approval.id))?;
            change.record(
                change_kind::APPROVAL_REQUEST,
                &approval.id,
                &CreateDetail { after: &stored },
            )?;
            Ok((stored, true))
        })
    }

    fn get_approval(&self, id: &str) -> Result<ApprovalRecord> {
        self.read(|connection| {
            Ok(
                load_approval(connection, id)?
                    .ok_or_else(|| StoreError::not_found(APPROVAL, id))?,
            )
        })
    }

    fn list_approvals(&self, state: Option<&str>, limit: u32) -> Result<Vec<ApprovalRecord>> {
        self.read(|connection| {
            let mut statement = connection.prepare(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals
                 WHERE ?1 IS NULL OR state = ?1
                 ORDER BY created_at DESC, id LIMIT ?2"
            ))?;
            let approvals = statement
                .query_map(params![state, limit], approval_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(approvals)
        })
    }

    fn decide_approval(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        uses: u32,
        grant_expires_at: i64,
        actor: &Actor,
        reason: &str,
    ) -> Result<ApprovalRecord> {
        self.write(actor, reason, |change| {
            let current = load_approval(change.transaction, id)?
                .ok_or_else(|| StoreError::not_found(APPROVAL, id))?;
            if current.state != "pending" {
                let why = if current.state == "approved" {
                    "is already approved; a decided request cannot be revived"
                } else {
                    "is already denied; a decided request cannot be revived"
                };
                return Err(StoreError::conflict(APPROVAL, id, why).into());
            }
            if current.expires_at <= change.now {
                return Err(StoreError::conflict(
                    APPROVAL,
                    id,
                    "has lapsed; ask again with a new request",
                )
                .into());
            }
            change.transaction.execute(
                "UPDATE approvals SET state = ?2, decided_by = ?3, decided_at = ?4,
                   decision_reason = ?5, uses_left = ?6, grant_expires_at = ?7
                 WHERE id = ?1",
                params![
                    id,
                    if approve { "approved" } else { "denied" },
                    approver,
                    change.now,
                    reason,
                    if approve { i64::from(uses) } else { 0 },
                    if approve {
                        Some(grant_expires_at)
                    } else {
                        None
                    }
                ],
            )?;
            let stored = load_approval(change.transaction, id)?
                .ok_or_else(|| StoreError::not_found(APPROVAL, id))?;
            change.record(
                change_kind::APPROVAL_DECIDE,
                id,
                &CreateDetail { after: &stored },
            )?;
            Ok(stored)
        })
    }

    fn use_grant(&self, digest: &str, now: i64, actor: &Actor) -> Result<Option<ApprovalRecord>> {
        self.write(actor, "grant used", |change| {
            // The store's one connection and IMMEDIATE transactions serialise this: of many
            // concurrent callers for a one-use grant, exactly one sees `uses_left` > 0.
            let live = change
                .transaction
                .query_row(
                    &format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals
                         WHERE digest = ?1 AND state = 'approved' AND uses_left > 0
                           AND grant_expires_at > ?2
                         ORDER BY decided_at, id LIMIT 1"
                    ),
                    params![digest, now],
                    approval_row,
                )
                .optional()?;
            let Some(live) = live else {
                return Ok(None);
            };
            change.transaction.execute(
                "UPDATE approvals SET uses_left = uses_left - 1 WHERE id = ?1",
                [&live.id],
            )?;
            let stored = load_approval(change.transaction, &live.id)?
                .ok_or_else(|| StoreError::not_found(APPROVAL, &live.id))?;
            change.record(
                change_kind::APPROVAL_USE,
                &live.id,
                &CreateDetail { after: &stored },
            )?;
            Ok(Some(stored))
        })
    }

    fn changes_since(&self, after: u64, limit: u32) -> Result<Vec<ChangeEvent>> {
        let limit = validate::limit(limit)?;
        // A `seq` too large for SQLite has nothing after it.
        let Some(after) = to_i64(after) else {
            return Ok(Vec::new());
        };
        self.read(|connection| {
            let mut statement = connection.prepare(
                "SELECT seq, at, actor_id, actor_role, reason, kind, subject, detail
                 FROM change_events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement
                .query_map(params![after, limit], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, Timestamp>(1)?,
                        Actor {
                            id: row.get(2)?,
                            role: row.get(3)?,
                        },
                        row.get::<_, String>(4)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, String>(6)?,
                        row.get::<_, String>(7)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(seq, at, actor, reason, kind, subject, detail)| {
                    Ok(ChangeEvent {
                        seq: to_u64(seq)?,
                        at,
                        actor,
                        reason,
                        kind,
                        detail: decode("change event", &seq.to_string(), &detail)?,
                        subject,
                    })
                })
                .collect()
        })
    }

    fn latest_seq(&self) -> Result<u64> {
        self.read(latest_seq)
    }
}

/// A control's body and, once lifted, when, by whom and why.
type ControlColumns = (String, Option<i64>, Option<String>, Option<String>);

fn control_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ControlColumns> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode_control(
    (body, lifted_at, lifted_by, lift_reason): ControlColumns,
) -> Result<ControlRecord, Failure> {
    Ok(ControlRecord {
        control: serde_json::from_str(&body)?,
        lifted_at,
        lifted_by,
        lift_reason,
    })
}

fn load_control(connection: &Connection, id: &str) -> Result<Option<ControlRecord>, Failure> {
    connection
        .query_row(
            "SELECT body, lifted_at, lifted_by, lift_reason FROM controls WHERE id = ?1",
            params![id],
            control_row,
        )
        .optional()?
        .map(decode_control)
        .transpose()
}

fn list_controls(
    connection: &Connection,
    include_lifted: bool,
) -> Result<Vec<ControlRecord>, Failure> {
    let mut statement = connection.prepare(
        "SELECT body, lifted_at, lifted_by, lift_reason FROM controls
         WHERE ?1 OR lifted_at IS NULL ORDER BY placed_at, id",
    )?;
    let rows = statement
        .query_map(params![include_lifted], control_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter().map(decode_control).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_from_one_without_gaps() {
        let versions: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
        let expected: Vec<u32> = (1..=SqliteStore::SCHEMA_VERSION).collect();
        assert_eq!(versions, expected);
    }
}
