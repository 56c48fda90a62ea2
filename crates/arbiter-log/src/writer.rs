//! The writer: one thread that owns the log database and commits entries in groups.
//!
//! Callers hand entries to [`DecisionLog::append`] and, in durable mode, wait until the group
//! holding them is committed and fsynced. While one group commits, the next one queues, so one
//! fsync carries as many entries as arrived during the previous one: throughput rises with load
//! while no caller is answered before its entry is on disk.

use crate::checkpoint::{Checkpoint, LogKey};
use crate::db::{LogDb, Prepared};
use crate::merkle::Frontier;
use crate::record::{Entry, NoticeEntry};
use crate::LogError;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// When an append counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// After the entry is committed and fsynced (the default): an acknowledged decision is
    /// never lost.
    Durable,
    /// As soon as the entry is queued. A crash loses what was queued but not yet committed: at
    /// most [`LogConfig::queue`] appends plus the group being committed. Write failures still
    /// turn decisions into denials once they are seen.
    Buffered,
}

/// How to open the log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// The log database file.
    pub path: PathBuf,
    /// The checkpoint signing key (created when missing). Keep it outside the database.
    pub key_path: PathBuf,
    /// A file outside the database to which kept checkpoints are appended; verification uses it
    /// to detect a database restored from an older copy.
    pub witness_path: Option<PathBuf>,
    /// When an append counts as done.
    pub durability: Durability,
    /// Most entries per commit.
    pub max_group: usize,
    /// Most appends waiting for the writer; callers wait (backpressure) beyond it. In buffered
    /// mode this bounds what a crash can lose.
    pub queue: usize,
    /// How often a checkpoint is kept (the latest is always rewritten with each commit).
    pub keep_every: Duration,
    /// Entries per block of the search index, for a new log (see [`crate::postings`]).
    pub posting_block: u32,
}

impl LogConfig {
    /// The defaults for a log at `path` with its key at `key_path`.
    pub fn new(path: PathBuf, key_path: PathBuf) -> Self {
        Self {
            path,
            key_path,
            witness_path: None,
            durability: Durability::Durable,
            max_group: 8192,
            queue: 4096,
            keep_every: Duration::from_secs(1),
            posting_block: crate::postings::DEFAULT_BLOCK,
        }
    }
}

/// The writer's health, readable without blocking.
#[derive(Debug, Default)]
pub struct LogHealth {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
    committed: AtomicU64,
    commits: AtomicU64,
    failures: AtomicU64,
}

impl LogHealth {
    /// `None` when the last commit succeeded; otherwise why it failed.
    pub fn failure(&self) -> Option<String> {
        if !self.failing.load(Ordering::Acquire) {
            return None;
        }
        self.last_error
            .lock()
            .map(|error| error.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
            .or_else(|| Some("unknown error".into()))
    }

    /// Entries committed since start.
    pub fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Successful commits (each one fsync) since start.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Failed commits since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    fn set_failure(&self, error: Option<String>) {
        if let Ok(mut last) = self.last_error.lock() {
            if error.is_some() {
                *last = error.clone();
            }
        }
        self.failing.store(error.is_some(), Ordering::Release);
    }
}

struct Job {
    entries: Vec<Prepared>,
    done: Option<oneshot::Sender<Result<u64, LogError>>>,
    decision_ids: Vec<String>,
    /// A retention run to make after the group commits.
    retention: Option<(
        Retention,
        oneshot::Sender<Result<RetentionReport, LogError>>,
    )>,
}

/// What retention keeps: entries younger than `keep_seconds`, and at least the newest
/// `keep_entries`, whichever keeps more. Older decisions lose their bodies; their leaves and
/// search columns stay, so the log still verifies and still answers "was there a decision".
/// Governance changes and notices are kept whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Retention {
    /// Keep entries recorded within this many seconds.
    pub keep_seconds: Option<i64>,
    /// Keep at least this many newest entries.
    pub keep_entries: Option<u64>,
}

/// What a retention run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetentionReport {
    /// Entries up to this seq have no body now (0: none).
    pub pruned_through: u64,
    /// Bodies dropped by this run.
    pub pruned: u64,
    /// The seq of the `retention` notice that records the run, if one was needed.
    pub notice_seq: Option<u64>,
}

/// The handle callers append through. Cheap to clone.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    queue: mpsc::Sender<Job>,
    health: Arc<LogHealth>,
    durability: Durability,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Job({} entries)", self.entries.len())
    }
}

impl DecisionLog {
    /// Opens the log and starts its writer thread. Refuses a log whose entries do not match its
    /// latest signed checkpoint: a tampered or damaged log is not written to.
    pub fn open(config: LogConfig) -> Result<(Self, std::thread::JoinHandle<()>), LogError> {
        let key = LogKey::load_or_create(&config.key_path)?;
        let db = LogDb::open_with_block(&config.path, config.posting_block)?;
        let frontier = checked_frontier(&db, &key)?;
        let (queue, jobs) = mpsc::channel(config.queue.max(1));
        let health = Arc::new(LogHealth::default());
        let checkpointer = spawn_checkpointer(config.path.clone())?;
        let writer = Writer {
            checkpointer,
            since_nudge: 0,
            db: Some(db),
            frontier,
            key,
            config: config.clone(),
            health: Arc::clone(&health),
            last_kept: None,
            failed_ids: Vec::new(),
            failed_error: None,
        };
        let thread = std::thread::Builder::new()
            .name("arbiter-log-writer".into())
            .spawn(move || writer.run(jobs))?;
        Ok((
            Self {
                queue,
                health,
                durability: config.durability,
            },
            thread,
        ))
    }

    /// The writer's health.
    pub fn health(&self) -> &LogHealth {
        &self.health
    }

    /// Appends entries, consecutively. Durable: returns the first entry's seq once all are on
    /// disk. Buffered: returns `None` once they are queued, or the last write failure if the
    /// log is failing (so callers fail closed either way).
    pub async fn append(&self, entries: &[Entry]) -> Result<Option<u64>, LogError> {
        let mut prepared = Vec::with_capacity(entries.len());
        let mut decision_ids = Vec::new();
        for entry in entries {
            let columns = entry.columns();
            if !columns.decision_id.is_empty() {
                decision_ids.push(columns.decision_id.clone());
            }
            prepared.push(Prepared {
                columns,
                body: serde_json::to_vec(entry)?,
            });
        }
        match self.durability {
            Durability::Durable => {
                let (done, receipt) = oneshot::channel();
                self.queue
                    .send(Job {
                        entries: prepared,
                        done: Some(done),
                        decision_ids,
                        retention: None,
                    })
                    .await
                    .map_err(|_| LogError::Closed)?;
                receipt.await.map_err(|_| LogError::Closed)?.map(Some)
            }
            Durability::Buffered => {
                if let Some(failure) = self.health.failure() {
                    return Err(LogError::Unavailable(failure));
                }
                self.queue
                    .send(Job {
                        entries: prepared,
                        done: None,
                        decision_ids,
                        retention: None,
                    })
                    .await
                    .map_err(|_| LogError::Closed)?;
                Ok(None)
            }
        }
    }
}

impl DecisionLog {
    /// Runs retention: records a signed `retention` notice, then drops the bodies it covers.
    pub async fn retain(&self, retention: Retention) -> Result<RetentionReport, LogError> {
        let (done, receipt) = oneshot::channel();
        self.queue
            .send(Job {
                entries: Vec::new(),
                done: None,
                decision_ids: Vec::new(),
                retention: Some((retention, done)),
            })
            .await
            .map_err(|_| LogError::Closed)?;
        receipt.await.map_err(|_| LogError::Closed)?
    }
}

/// The tree of the stored entries, checked against the latest signed checkpoint.
fn checked_frontier(db: &LogDb, key: &LogKey) -> Result<Frontier, LogError> {
    let frontier = db.frontier()?;
    match db.latest_checkpoint()? {
        None if frontier.size() == 0 => Ok(frontier),
        None => Err(LogError::Corrupt(format!(
            "{} entries but no checkpoint; run `arbiter audit verify`",
            frontier.size()
        ))),
        Some(latest) => {
            let root = hex::encode(frontier.root());
            if latest.size != frontier.size() || latest.root != root {
                return Err(LogError::Corrupt(format!(
                    "the entries (size {}, root {root}) do not match the latest checkpoint (size {}, root {}); run `arbiter audit verify`",
                    frontier.size(),
                    latest.size,
                    latest.root
                )));
            }
            if !latest.verify(&key.verifying_key()) {
                return Err(LogError::Corrupt(
                    "the latest checkpoint is not signed by this log's key".into(),
                ));
            }
            Ok(frontier)
        }
    }
}

struct Writer {
    /// Nudged every [`NUDGE_EVERY`] entries; see [`spawn_checkpointer`].
    checkpointer: std::sync::mpsc::SyncSender<()>,
    since_nudge: usize,
    /// `None` after a failed commit, until reopened.
    db: Option<LogDb>,
    frontier: Frontier,
    key: LogKey,
    config: LogConfig,
    health: Arc<LogHealth>,
    last_kept: Option<Instant>,
    /// Decisions answered as denials because their commit failed, to be noted once the log
    /// can be written again.
    failed_ids: Vec<String>,
    failed_error: Option<String>,
}

impl Writer {
    fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        while let Some(first) = jobs.blocking_recv() {
            let mut group = vec![first];
            let mut count = group.iter().map(|job| job.entries.len()).sum::<usize>();
            while count < self.config.max_group {
                match jobs.try_recv() {
                    Ok(job) => {
                        count += job.entries.len();
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            let mut retentions = Vec::new();
            for job in &mut group {
                retentions.extend(job.retention.take());
            }
            group.retain(|job| !job.entries.is_empty() || job.done.is_some());
            if !group.is_empty() {
                self.commit_group(group);
            }
            for (retention, done) in retentions {
                let _ = done.send(self.retain(retention));
            }
        }
    }

    fn retain(&mut self, retention: Retention) -> Result<RetentionReport, LogError> {
        if self.db.is_none() {
            let db = LogDb::open_with_block(&self.config.path, self.config.posting_block)?;
            self.frontier = checked_frontier(&db, &self.key)?;
            self.db = Some(db);
        }
        let Some(db) = self.db.as_ref() else {
            return Err(LogError::Closed);
        };
        let size = self.frontier.size();
        let previous = db.pruned_through()?;
        let now = unix_now();
        // The oldest entry that must be kept, by each rule; keep whichever keeps more.
        let mut first_kept = size + 1;
        if let Some(keep_seconds) = retention.keep_seconds {
            first_kept = first_kept.min(
                db.first_at_or_after(now.saturating_sub(keep_seconds))?
                    .unwrap_or(size + 1),
            );
        }
        if let Some(keep_entries) = retention.keep_entries {
            first_kept = first_kept.min(size.saturating_sub(keep_entries) + 1);
        }
        let through = first_kept.saturating_sub(1);
        if through <= previous {
            return Ok(RetentionReport {
                pruned_through: previous,
                pruned: 0,
                notice_seq: None,
            });
        }
        let notice = Entry::Notice(NoticeEntry {
            kind: "retention".into(),
            at: now,
            message: format!(
                "retention: decisions {} to {through} keep only their hashes and columns",
                previous + 1
            ),
            detail: json!({"pruned_through": through, "previous": previous, "rule": retention}),
        });
        let prepared = Prepared {
            columns: notice.columns(),
            body: serde_json::to_vec(&notice)?,
        };
        let notice_seq = self.commit(vec![prepared])?;
        let Some(db) = self.db.as_mut() else {
            return Err(LogError::Closed);
        };
        let pruned = db.prune(previous + 1, through, now)?;
        Ok(RetentionReport {
            pruned_through: through,
            pruned,
            notice_seq: Some(notice_seq),
        })
    }

    fn commit_group(&mut self, mut group: Vec<Job>) {
        let started = Instant::now();
        let lengths: Vec<u64> = group.iter().map(|job| job.entries.len() as u64).collect();
        let entries: Vec<Prepared> = group
            .iter_mut()
            .flat_map(|job| std::mem::take(&mut job.entries))
            .collect();
        match self.commit(entries) {
            Ok(first_seq) => {
                let mut seq = first_seq;
                for (job, len) in group.into_iter().zip(lengths) {
                    if let Some(done) = job.done {
                        let _ = done.send(Ok(seq));
                    }
                    seq += len;
                }
                metrics::histogram!("arbiter_log_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                self.recovered();
            }
            Err(error) => {
                let message = error.to_string();
                tracing::error!(error = %message, "decision log write failed; deciding deny until it recovers");
                metrics::counter!("arbiter_log_write_failures_total").increment(1);
                metrics::gauge!("arbiter_log_healthy").set(0.0);
                self.health.failures.fetch_add(1, Ordering::Relaxed);
                self.health.set_failure(Some(message.clone()));
                self.failed_error = Some(message.clone());
                for job in group {
                    self.failed_ids.extend(job.decision_ids);
                    if let Some(done) = job.done {
                        let _ = done.send(Err(LogError::Unavailable(message.clone())));
                    }
                }
                // The connection's state after a failed fsync is unknown; start afresh.
                self.db = None;
            }
        }
    }

    /// After a failure, the first successful commit records which decisions were answered as
    /// denials while the log could not be written (their entries may or may not have reached
    /// the disk, so the log says how they were answered).
    fn recovered(&mut self) {
        if self.failed_ids.is_empty() {
            if self.health.failure().is_some() {
                self.health.set_failure(None);
                metrics::gauge!("arbiter_log_healthy").set(1.0);
            }
            return;
        }
        let ids = std::mem::take(&mut self.failed_ids);
        let notice = Entry::Notice(NoticeEntry {
            kind: "write_failed".into(),
            at: unix_now(),
            message: format!(
                "the log could not be written ({}); {} decisions were answered deny instead",
                self.failed_error.take().unwrap_or_default(),
                ids.len()
            ),
            detail: json!({"answered_deny": ids}),
        });
        let prepared = serde_json::to_vec(&notice).map(|body| Prepared {
            columns: notice.columns(),
            body,
        });
        match prepared
            .map_err(LogError::from)
            .and_then(|p| self.commit(vec![p]))
        {
            Ok(_) => {
                self.health.set_failure(None);
                metrics::gauge!("arbiter_log_healthy").set(1.0);
            }
            Err(error) => {
                tracing::error!(error = %error, "could not record the write-failure notice");
                self.db = None;
            }
        }
    }

    fn commit(&mut self, entries: Vec<Prepared>) -> Result<u64, LogError> {
        if self.db.is_none() {
            let db = LogDb::open_with_block(&self.config.path, self.config.posting_block)?;
            self.frontier = checked_frontier(&db, &self.key)?;
            self.db = Some(db);
        }
        let Some(db) = self.db.as_mut() else {
            return Err(LogError::Closed);
        };
        let first_seq = self.frontier.size() + 1;
        let mut frontier = self.frontier.clone();
        let mut rows = Vec::with_capacity(entries.len());
        for (offset, prepared) in entries.into_iter().enumerate() {
            let leaf = crate::record::leaf_of(
                first_seq + offset as u64,
                &prepared.columns,
                &prepared.body,
            );
            frontier.push(leaf);
            rows.push((prepared, leaf));
        }
        let checkpoint = self.key.sign(frontier.size(), &frontier.root(), unix_now());
        let keep = self
            .last_kept
            .is_none_or(|kept| kept.elapsed() >= self.config.keep_every);
        db.append(first_seq, &rows, &checkpoint, keep)?;
        self.frontier = frontier;
        self.health
            .committed
            .fetch_add(rows.len() as u64, Ordering::Relaxed);
        self.health.commits.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("arbiter_log_entries_total").increment(rows.len() as u64);
        self.since_nudge += rows.len();
        if self.since_nudge >= NUDGE_EVERY {
            self.since_nudge = 0;
            // Full means a nudge is already waiting; that one will do.
            let _ = self.checkpointer.try_send(());
        }
        if keep {
            self.last_kept = Some(Instant::now());
            if let Err(error) = self.witness(&checkpoint) {
                // The witness is a second copy for rollback detection; the entries are safe.
                tracing::warn!(error = %error, "could not append to the checkpoint witness file");
            }
        }
        Ok(first_seq)
    }

    fn witness(&self, checkpoint: &Checkpoint) -> Result<(), LogError> {
        let Some(path) = &self.config.witness_path else {
            return Ok(());
        };
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut line = serde_json::to_vec(checkpoint)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_data()?;
        Ok(())
    }
}

/// Entries committed between nudges of the checkpointer: about 2 MB of WAL.
const NUDGE_EVERY: usize = 1_000;

/// Starts the thread that copies committed pages from the WAL into the database file
/// (`wal_checkpoint(PASSIVE)`: never blocks the writer, and gives up on pages a reader still
/// needs). The writer's own automatic checkpoint (every 4,096 pages) then finds almost nothing
/// left to copy; without this thread it copied 64 MB and fsynced the database in the middle of
/// a commit, and every caller waiting on that commit waited for it too (the log's worst
/// latencies). A failure here costs nothing but that: the entries are safe in the WAL, and the
/// writer's checkpoint still runs. The thread ends when the writer does.
fn spawn_checkpointer(path: PathBuf) -> Result<std::sync::mpsc::SyncSender<()>, LogError> {
    let (nudge, nudged) = std::sync::mpsc::sync_channel::<()>(1);
    std::thread::Builder::new()
        .name("arbiter-log-checkpoint".into())
        .spawn(move || {
            let conn = match rusqlite::Connection::open(&path) {
                Ok(conn) => conn,
                Err(error) => {
                    tracing::warn!(%error, "decision log checkpointer could not open the log");
                    return;
                }
            };
            while nudged.recv().is_ok() {
                let copied = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
                    Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
                });
                match copied {
                    Ok((frames, copied)) => tracing::trace!(frames, copied, "log checkpoint"),
                    Err(error) => tracing::warn!(%error, "decision log checkpoint failed"),
                }
            }
        })?;
    Ok(nudge)
}

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}
