//! The log on real SQLite files: group commit, verification, inclusion proofs, and tampering of
//! every kind the issue names (every single-byte change of stored entries, deletion, truncation,
//! reordering, and restoring an older copy), each of which verification must catch.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use arbiter_log::checkpoint::{public_key_path, read_public_key};
use arbiter_log::verify::prove;
use arbiter_log::{
    verify, Checkpoint, DecisionLog, Entry, LogConfig, LogDb, NoticeEntry, VerifyOptions,
    VerifyReport,
};
use rusqlite::{params, Connection};
use serde_json::json;
use std::path::{Path, PathBuf};

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key: PathBuf,
    witness: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    Fixture {
        db: dir.path().join("decisions.sqlite3"),
        key: dir.path().join("keys/log.key"),
        witness: dir.path().join("checkpoints.jsonl"),
        _dir: dir,
    }
}

fn config(fixture: &Fixture) -> LogConfig {
    let mut config = LogConfig::new(fixture.db.clone(), fixture.key.clone());
    config.witness_path = Some(fixture.witness.clone());
    // Keep every checkpoint, so that each commit is a checkpoint boundary.
    config.keep_every = std::time::Duration::ZERO;
    config
}

fn notice(n: usize) -> Entry {
    Entry::Notice(NoticeEntry {
        kind: "test".into(),
        at: 1_700_000_000 + n as i64,
        message: format!("entry {n}"),
        detail: json!({"n": n}),
    })
}

/// A decision entry, as the server records one.
fn decision(n: usize) -> Entry {
    Entry::Decision(Box::new(
        serde_json::from_value(json!({
            "endpoint": "evaluation",
            "request": {"subject": {"type": "Agent", "id": format!("a{n}")}, "action": {"name": "read"},
                        "resource": {"type": "Dataset", "id": "d"}, "context": {}},
            "decision": {
                "id": format!("d{n}"), "outcome": "allow", "determining": [],
                "reason_admin": "allowed", "reason_user": "allowed", "hops": [],
                "context": {}, "decided_at": 1_700_000_000 + n as i64,
                "snapshot": {"policy_version": 1, "policy_digest": "x", "inventory_version": 1}
            },
            "latency_us": 10
        }))
        .unwrap(),
    ))
}

/// Writes `groups` commits of `per_group` notices each.
fn write_log(fixture: &Fixture, groups: usize, per_group: usize) {
    write_entries(fixture, groups, per_group, notice);
}

/// Writes `groups` commits of `per_group` entries each, made by `make`.
fn write_entries(fixture: &Fixture, groups: usize, per_group: usize, make: fn(usize) -> Entry) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (log, writer) = DecisionLog::open(config(fixture)).unwrap();
    runtime.block_on(async {
        for group in 0..groups {
            let entries: Vec<Entry> = (0..per_group)
                .map(|i| make(group * per_group + i))
                .collect();
            log.append(&entries).await.unwrap();
        }
    });
    drop(log);
    writer.join().unwrap();
}

fn witness(fixture: &Fixture) -> Vec<Checkpoint> {
    std::fs::read_to_string(&fixture.witness)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn check(fixture: &Fixture) -> VerifyReport {
    let db = LogDb::open_read_only(&fixture.db).unwrap();
    let public_key = read_public_key(&public_key_path(&fixture.key)).unwrap();
    verify(
        &db,
        &VerifyOptions {
            public_key,
            external: witness(fixture),
            from: 1,
            to: None,
            progress: None,
        },
    )
    .unwrap()
}

/// An attacker's connection: the triggers that stop accidental edits are dropped first.
fn attacker(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS entries_no_update; DROP TRIGGER IF EXISTS entries_no_delete;
         DROP TRIGGER IF EXISTS bodies_no_update; DROP TRIGGER IF EXISTS bodies_no_delete;",
    )
    .unwrap();
    conn
}

#[test]
fn an_untouched_log_verifies_and_reopens() {
    let fixture = fixture();
    write_log(&fixture, 5, 7);
    let report = check(&fixture);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 35);
    assert!(report.checkpoints_checked >= 5);
    // Reopening continues the same tree.
    write_log(&fixture, 2, 3);
    let report = check(&fixture);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 41);
}

#[test]
fn concurrent_appends_get_distinct_consecutive_positions() {
    let fixture = fixture();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (log, writer) = DecisionLog::open(config(&fixture)).unwrap();
    let mut seqs: Vec<u64> = runtime.block_on(async {
        let tasks: Vec<_> = (0..500)
            .map(|n| {
                let log = log.clone();
                tokio::spawn(async move { log.append(&[notice(n)]).await.unwrap().unwrap() })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap());
        }
        seqs
    });
    drop(log);
    writer.join().unwrap();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
    assert!(check(&fixture).ok());
}

#[test]
fn every_single_byte_change_of_a_stored_entry_is_detected() {
    let fixture = fixture();
    write_log(&fixture, 4, 3);
    assert!(check(&fixture).ok());
    let conn = attacker(&fixture.db);
    let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = conn
        .prepare("SELECT e.seq, b.body, e.leaf FROM entries e JOIN bodies b ON b.seq = e.seq ORDER BY e.seq")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut changes = 0;
    for (seq, body, leaf) in &rows {
        for (table, column, original) in [("bodies", "body", body), ("entries", "leaf", leaf)] {
            for position in 0..original.len() {
                let mut altered = original.clone();
                altered[position] ^= 0x01;
                let sql = format!("UPDATE {table} SET {column} = ?1 WHERE seq = ?2");
                conn.execute(&sql, params![altered, seq]).unwrap();
                let report = check(&fixture);
                assert!(
                    !report.ok(),
                    "changing byte {position} of {column} of entry {seq} went unnoticed"
                );
                if column == "body" {
                    assert_eq!(report.problems[0].seq, Some(*seq as u64));
                }
                conn.execute(&sql, params![original, seq]).unwrap();
                changes += 1;
            }
        }
        // Every search column, one byte (or one unit) at a time.
        let texts = [
            "kind",
            "principal",
            "outcome",
            "action",
            "resource",
            "owner",
            "decision_id",
            "entities",
            "policies",
        ];
        for column in texts {
            let original: String = conn
                .query_row(
                    &format!("SELECT {column} FROM entries WHERE seq = ?1"),
                    [seq],
                    |row| row.get(0),
                )
                .unwrap();
            let variants: Vec<String> = if original.is_empty() {
                vec!["x".into()]
            } else {
                (0..original.len())
                    .filter(|&i| original.is_char_boundary(i))
                    .map(|i| {
                        let mut bytes = original.clone().into_bytes();
                        bytes[i] ^= 0x01;
                        String::from_utf8(bytes).unwrap_or_else(|_| format!("{original}!"))
                    })
                    .collect()
            };
            let sql = format!("UPDATE entries SET {column} = ?1 WHERE seq = ?2");
            for variant in variants {
                conn.execute(&sql, params![variant, seq]).unwrap();
                assert!(
                    !check(&fixture).ok(),
                    "changing {column} of entry {seq} to {variant:?} went unnoticed"
                );
                changes += 1;
            }
            conn.execute(&sql, params![original, seq]).unwrap();
        }
        for column in ["at", "policy_version"] {
            let sql = format!("UPDATE entries SET {column} = {column} + 1 WHERE seq = ?1");
            conn.execute(&sql, [seq]).unwrap();
            assert!(!check(&fixture).ok(), "{column} of entry {seq}");
            let sql = format!("UPDATE entries SET {column} = {column} - 1 WHERE seq = ?1");
            conn.execute(&sql, [seq]).unwrap();
            changes += 1;
        }
    }
    assert!(changes > 1000, "{changes} changes tried");
    assert!(check(&fixture).ok(), "restoring every byte verifies again");
}

#[test]
fn a_changed_checkpoint_is_detected() {
    let fixture = fixture();
    write_log(&fixture, 3, 2);
    let conn = Connection::open(&fixture.db).unwrap();
    for column in ["root", "signature"] {
        let original: String = conn
            .query_row(
                &format!("SELECT {column} FROM latest_checkpoint"),
                [],
                |row| row.get(0),
            )
            .unwrap();
        for position in 0..original.len() {
            let mut bytes = original.clone().into_bytes();
            // Stay within hex: swap one digit for another.
            bytes[position] = if bytes[position] == b'0' { b'1' } else { b'0' };
            let altered = String::from_utf8(bytes).unwrap();
            let sql = format!("UPDATE latest_checkpoint SET {column} = ?1");
            conn.execute(&sql, [&altered]).unwrap();
            assert!(!check(&fixture).ok(), "{column} byte {position}");
            conn.execute(&sql, [&original]).unwrap();
        }
    }
    assert!(check(&fixture).ok());
}

#[test]
fn deletion_truncation_reordering_and_an_older_copy_are_detected() {
    let fixture = fixture();
    write_log(&fixture, 4, 5);
    let pristine = std::fs::read(&fixture.db).unwrap();
    let restore = |fixture: &Fixture| {
        // Remove the WAL too: the pristine copy is complete on its own after a clean close.
        let _ = std::fs::remove_file(fixture.db.with_extension("sqlite3-wal"));
        let _ = std::fs::remove_file(fixture.db.with_extension("sqlite3-shm"));
        std::fs::write(&fixture.db, &pristine).unwrap();
        assert!(check(fixture).ok());
    };
    restore(&fixture);

    // Deleting any one entry.
    for seq in 1..=20 {
        attacker(&fixture.db)
            .execute("DELETE FROM entries WHERE seq = ?1", [seq])
            .unwrap();
        let report = check(&fixture);
        assert!(!report.ok(), "deleting entry {seq}");
        restore(&fixture);
        // …or only its body, which lives in its own table.
        attacker(&fixture.db)
            .execute("DELETE FROM bodies WHERE seq = ?1", [seq])
            .unwrap();
        let report = check(&fixture);
        assert!(!report.ok(), "deleting the body of entry {seq}");
        assert_eq!(
            report.problems[0].seq,
            Some(seq as u64),
            "{:?}",
            report.problems
        );
        restore(&fixture);
    }

    // Truncating the tail, even with the latest checkpoint rolled back to a kept one that
    // matches the shorter log: the witness outside the database still remembers.
    let conn = attacker(&fixture.db);
    conn.execute("DELETE FROM entries WHERE seq > 10", [])
        .unwrap();
    conn.execute("DELETE FROM checkpoints WHERE size > 10", [])
        .unwrap();
    conn.execute(
        "UPDATE latest_checkpoint SET size = c.size, root = c.root, at = c.at, signature = c.signature
         FROM (SELECT * FROM checkpoints WHERE size = 10) AS c",
        [],
    )
    .unwrap();
    drop(conn);
    let report = check(&fixture);
    assert!(!report.ok());
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.message.contains("older copy")),
        "{:?}",
        report.problems
    );
    restore(&fixture);

    // Swapping two entries (everything but their positions).
    let conn = attacker(&fixture.db);
    conn.execute_batch(
        "CREATE TEMP TABLE a AS SELECT e.leaf, b.body FROM entries e JOIN bodies b ON b.seq = e.seq WHERE e.seq = 3;
         CREATE TEMP TABLE b AS SELECT e.leaf, b.body FROM entries e JOIN bodies b ON b.seq = e.seq WHERE e.seq = 7;
         UPDATE entries SET leaf = (SELECT leaf FROM b) WHERE seq = 3;
         UPDATE bodies SET body = (SELECT body FROM b) WHERE seq = 3;
         UPDATE entries SET leaf = (SELECT leaf FROM a) WHERE seq = 7;
         UPDATE bodies SET body = (SELECT body FROM a) WHERE seq = 7;",
    )
    .unwrap();
    drop(conn);
    let report = check(&fixture);
    assert!(!report.ok());
    let named: Vec<Option<u64>> = report.problems.iter().map(|p| p.seq).collect();
    assert!(
        named.contains(&Some(3)) && named.contains(&Some(7)),
        "{named:?}"
    );
    restore(&fixture);

    // Restoring an older copy of the whole database after more was written.
    write_log(&fixture, 2, 5);
    assert!(check(&fixture).ok());
    restore_without_check(&fixture, &pristine);
    let report = check(&fixture);
    assert!(
        !report.ok(),
        "an older copy must not verify against the witness"
    );
}

fn restore_without_check(fixture: &Fixture, bytes: &[u8]) {
    let _ = std::fs::remove_file(fixture.db.with_extension("sqlite3-wal"));
    let _ = std::fs::remove_file(fixture.db.with_extension("sqlite3-shm"));
    std::fs::write(&fixture.db, bytes).unwrap();
}

#[test]
fn an_inclusion_proof_checks_and_fails_once_altered() {
    let fixture = fixture();
    write_log(&fixture, 3, 11);
    let db = LogDb::open_read_only(&fixture.db).unwrap();
    let key = read_public_key(&public_key_path(&fixture.key)).unwrap();
    for seq in [1, 2, 17, 33] {
        let proof = prove(&db, seq).unwrap();
        proof.check(&key).unwrap();
        let mut altered = proof.clone();
        altered.body = altered.body.replace("entry", "entrY");
        assert!(altered.check(&key).is_err());
        let mut moved = proof.clone();
        moved.seq = if seq == 1 { 2 } else { seq - 1 };
        assert!(moved.check(&key).is_err());
    }
}

#[test]
fn a_log_that_does_not_match_its_checkpoint_is_not_written_to() {
    let fixture = fixture();
    write_log(&fixture, 2, 2);
    attacker(&fixture.db)
        .execute("UPDATE bodies SET body = X'78' WHERE seq = 2", [])
        .unwrap();
    // Body edits leave stored leaves alone; editing a stored leaf is what the writer sees.
    attacker(&fixture.db)
        .execute("UPDATE entries SET leaf = zeroblob(32) WHERE seq = 2", [])
        .unwrap();
    let error = DecisionLog::open(config(&fixture)).unwrap_err();
    assert!(error.to_string().contains("latest checkpoint"), "{error}");
}

#[test]
fn retention_drops_old_bodies_and_the_log_still_verifies() {
    let fixture = fixture();
    write_entries(&fixture, 4, 5, decision);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (log, writer) = DecisionLog::open(config(&fixture)).unwrap();
    let report = runtime
        .block_on(log.retain(arbiter_log::Retention {
            keep_seconds: None,
            keep_entries: Some(5),
        }))
        .unwrap();
    assert_eq!(report.pruned_through, 15);
    assert_eq!(report.pruned, 15);
    assert_eq!(report.notice_seq, Some(21));
    // A second run with the same rule has nothing to do.
    let again = runtime
        .block_on(log.retain(arbiter_log::Retention {
            keep_seconds: None,
            keep_entries: Some(6),
        }))
        .unwrap();
    assert_eq!(again.pruned, 0);
    drop(log);
    writer.join().unwrap();

    let report = check(&fixture);
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.pruned, 15);
    let db = LogDb::open_read_only(&fixture.db).unwrap();
    let first = db
        .search(&arbiter_log::EntryQuery {
            limit: Some(1),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(first[0].entry["type"], "pruned");

    // The database refuses to empty a body retention did not cover, even by mistake…
    let conn = Connection::open(&fixture.db).unwrap();
    assert!(conn
        .execute("UPDATE bodies SET body = X'' WHERE seq = 18", [])
        .is_err());
    // …and verification catches it when the triggers are dropped.
    attacker(&fixture.db)
        .execute("UPDATE bodies SET body = X'' WHERE seq = 18", [])
        .unwrap();
    let report = check(&fixture);
    assert!(!report.ok());
    assert_eq!(report.problems[0].seq, Some(18));
}
