//! Scores kept over time in `<data-dir>/debt.sqlite3`, a file of this crate's own (the
//! store and the log are not touched): one row per report and scope.

use crate::report::Report;
use crate::score::GroupPoint;
use crate::DebtError;
use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS scores (
    at       INTEGER NOT NULL,  -- when the report was computed
    scope    TEXT    NOT NULL,  -- overall | owner | team | identity
    key      TEXT    NOT NULL,  -- '' for overall; the owner, team or identity
    score    REAL    NOT NULL,  -- overall: mean identity score; owner/team: debt points; identity: 0-100
    findings INTEGER NOT NULL,
    PRIMARY KEY (scope, key, at)
) STRICT, WITHOUT ROWID;
"#;

/// One point of a trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// When the report was computed.
    pub at: i64,
    /// The score then.
    pub score: f64,
    /// Findings then.
    pub findings: u64,
}

/// The score history.
#[derive(Debug)]
pub struct History {
    conn: Connection,
}

impl History {
    /// Opens (creating if needed) the history at `path`.
    pub fn open(path: &Path) -> Result<Self, DebtError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// A history in memory (tests, and reports nobody asked to keep).
    pub fn in_memory() -> Result<Self, DebtError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Records `report`'s scores: overall, every owner and team, and every identity with debt.
    /// Recording the same report twice changes nothing.
    pub fn record(&mut self, report: &Report) -> Result<(), DebtError> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR REPLACE INTO scores (at, scope, key, score, findings) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let at = report.generated_at;
            insert.execute(params![
                at,
                "overall",
                "",
                report.scores.overall,
                report.findings.len() as i64
            ])?;
            for (scope, groups) in [
                ("owner", &report.scores.owners),
                ("team", &report.scores.teams),
            ] {
                for group in groups {
                    insert.execute(params![
                        at,
                        scope,
                        group.key,
                        group.total as f64,
                        group.findings as i64
                    ])?;
                }
            }
            for debt in &report.ranking {
                insert.execute(params![
                    at,
                    "identity",
                    debt.identity,
                    f64::from(debt.score),
                    debt.kinds.len() as i64
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The trend of one scope and key (`overall` and `""` for the overall score), oldest
    /// first, at most the last `limit` points.
    pub fn trend(
        &self,
        scope: &str,
        key: &str,
        limit: u32,
    ) -> Result<Vec<HistoryPoint>, DebtError> {
        let mut statement = self.conn.prepare(
            "SELECT at, score, findings FROM
               (SELECT at, score, findings FROM scores WHERE scope = ?1 AND key = ?2 ORDER BY at DESC LIMIT ?3)
             ORDER BY at",
        )?;
        let points = statement
            .query_map(params![scope, key, limit], |row| {
                Ok(HistoryPoint {
                    at: row.get(0)?,
                    score: row.get(1)?,
                    findings: row.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(points)
    }

    /// Fills each owner's and team's `previous`, `delta` and `trend` in `report` from the
    /// reports kept before it (at most the last `limit`), whether or not `report` itself was
    /// recorded. Every report keeps every owner and team with debt, so one missing from a kept
    /// report had none then: it counts as 0, not as unknown.
    pub fn add_group_trends(&self, report: &mut Report, limit: u32) -> Result<(), DebtError> {
        let now = report.generated_at;
        // The reports kept before this one: each has exactly one overall row.
        let mut times = self.conn.prepare(
            "SELECT at FROM
               (SELECT at FROM scores WHERE scope = 'overall' AND key = '' AND at < ?1 ORDER BY at DESC LIMIT ?2)
             ORDER BY at",
        )?;
        let times: Vec<i64> = times
            .query_map(params![now, limit], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        // One index seek per owner or team: (scope, key, at) is the primary key.
        let mut points = self.conn.prepare(
            "SELECT at, score FROM scores WHERE scope = ?1 AND key = ?2 AND at >= ?3 AND at < ?4",
        )?;
        let first = times.first().copied().unwrap_or(now);
        for (scope, groups) in [
            ("owner", &mut report.scores.owners),
            ("team", &mut report.scores.teams),
        ] {
            for group in groups.iter_mut() {
                let kept: HashMap<i64, f64> = points
                    .query_map(params![scope, group.key, first, now], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })?
                    .collect::<Result<_, _>>()?;
                group.trend = times
                    .iter()
                    .map(|at| GroupPoint {
                        at: *at,
                        // Owner and team scores are sums of whole identity scores.
                        total: kept
                            .get(at)
                            .map_or(0, |score| score.max(0.0).round() as u64),
                    })
                    .chain(std::iter::once(GroupPoint {
                        at: now,
                        total: group.total,
                    }))
                    .collect();
                group.previous = times.last().map(|at| {
                    kept.get(at)
                        .map_or(0, |score| score.max(0.0).round() as u64)
                });
                group.delta = group.previous.map(|previous| {
                    i64::try_from(group.total).unwrap_or(i64::MAX)
                        - i64::try_from(previous).unwrap_or(i64::MAX)
                });
            }
        }
        Ok(())
    }
}
