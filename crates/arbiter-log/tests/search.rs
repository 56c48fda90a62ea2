//! Searching the log through its block index: every search returns exactly what a plain filter
//! over every stored entry returns, across full blocks, the unindexed tail, restarts mid-block,
//! and a log upgraded from format 1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use arbiter_log::checkpoint::{public_key_path, read_public_key};
use arbiter_log::record::Columns;
use arbiter_log::{
    verify, ChangeEntry, DecisionLog, Entry, EntryQuery, LogConfig, LogDb, VerifyOptions,
};
use proptest::prelude::*;
use serde_json::json;
use std::path::{Path, PathBuf};

const AGENTS: [&str; 5] = ["a0", "a1", "a2", "a3", "a4"];
const ACTIONS: [&str; 3] = ["read", "write", "call_tool"];

/// Decision `n`: agents, owners, actions, resources, policies and delegation vary with `n`, so
/// that terms spread over blocks unevenly and some combinations never occur.
fn decision(n: usize) -> Entry {
    let agent = AGENTS[n % AGENTS.len()];
    let mut hops = Vec::new();
    if n % 4 == 1 {
        hops.push(hop("User", "u1"));
    }
    hops.push(hop("Agent", agent));
    let determining: Vec<_> = (0..n % 3)
        .map(|p| json!({"id": format!("p{}", (n + p) % 4), "effect": "permit"}))
        .collect();
    let mut value = json!({
        "endpoint": "evaluation",
        "request": {"subject": {"type": "Agent", "id": agent},
                    "action": {"name": ACTIONS[n % ACTIONS.len()]},
                    "resource": {"type": "Dataset", "id": format!("d{}", n % 7)}, "context": {}},
        "decision": {
            "id": format!("dec-{n}"), "outcome": if n.is_multiple_of(5) { "deny" } else { "allow" },
            "determining": determining, "reason_admin": "r", "reason_user": "r", "hops": hops,
            "context": {}, "decided_at": 1_700_000_000 + n as i64,
            "snapshot": {"policy_version": 1, "policy_digest": "x", "inventory_version": 1}
        },
        "latency_us": 10
    });
    if !n.is_multiple_of(3) {
        value["owner"] =
            json!({"type": "Human", "id": if n.is_multiple_of(2) { "ann" } else { "bob" }});
    }
    Entry::Decision(Box::new(serde_json::from_value(value).unwrap()))
}

fn hop(entity_type: &str, id: &str) -> serde_json::Value {
    json!({"principal": {"type": entity_type, "id": id}, "outcome": "allow", "determining": [],
           "candidates": 0, "explanation": {"policies": []}})
}

fn change(n: usize) -> Entry {
    Entry::Change(ChangeEntry {
        change_seq: n as u64,
        at: 1_700_000_000 + n as i64,
        kind: "lifecycle.set".into(),
        subject: format!("Agent::\"{}\"", AGENTS[n % AGENTS.len()]),
        actor: "test".into(),
        actor_role: "admin".into(),
        reason: String::new(),
        detail: json!({}),
    })
}

fn entry(n: usize) -> Entry {
    if n % 9 == 8 {
        change(n)
    } else {
        decision(n)
    }
}

fn config(dir: &Path, block: u32) -> LogConfig {
    let mut config = LogConfig::new(dir.join("decisions.sqlite3"), dir.join("log.key"));
    config.posting_block = block;
    config
}

/// Appends entries `from..to`, `per_commit` at a time.
fn append(config: LogConfig, from: usize, to: usize, per_commit: usize) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (log, writer) = DecisionLog::open(config).unwrap();
    runtime.block_on(async {
        let numbers: Vec<usize> = (from..to).collect();
        for chunk in numbers.chunks(per_commit) {
            let entries: Vec<Entry> = chunk.iter().map(|&n| entry(n)).collect();
            log.append(&entries).await.unwrap();
        }
    });
    drop(log);
    writer.join().unwrap();
}

/// Every stored row, read without the index.
fn all_rows(path: &Path) -> Vec<(u64, Columns)> {
    let db = LogDb::open_read_only(path).unwrap();
    let mut rows = Vec::new();
    db.scan(1, u64::MAX, |row| {
        rows.push((row.seq, row.columns));
        Ok(())
    })
    .unwrap();
    rows
}

/// What `query` must return: a plain filter over every row.
fn expected(rows: &[(u64, Columns)], query: &EntryQuery) -> Vec<u64> {
    let matches =
        |wanted: &Option<String>, value: &str| wanted.as_deref().is_none_or(|w| w == value);
    let mut seqs: Vec<u64> = rows
        .iter()
        .filter(|(seq, c)| {
            matches(&query.kind, &c.kind)
                && matches(&query.owner, &c.owner)
                && matches(&query.outcome, &c.outcome)
                && matches(&query.action, &c.action)
                && matches(&query.resource, &c.resource)
                && matches(&query.decision_id, &c.decision_id)
                && query.entity.as_ref().is_none_or(|e| c.entities.contains(e))
                && query.policy.as_ref().is_none_or(|p| c.policies.contains(p))
                && query.since.is_none_or(|since| c.at >= since)
                && query.until.is_none_or(|until| c.at < until)
                && query.after.is_none_or(|after| *seq > after)
                && query.before.is_none_or(|before| *seq < before)
        })
        .map(|(seq, _)| *seq)
        .collect();
    if query.newest_first {
        seqs.reverse();
    }
    seqs.truncate(query.limit.unwrap_or(100) as usize);
    seqs
}

fn found(path: &Path, query: &EntryQuery) -> Vec<u64> {
    let db = LogDb::open_read_only(path).unwrap();
    db.search(query)
        .unwrap()
        .into_iter()
        .map(|stored| stored.seq)
        .collect()
}

fn query_strategy() -> impl Strategy<Value = EntryQuery> {
    let pick = |values: Vec<String>| proptest::option::of(proptest::sample::select(values));
    let entities: Vec<String> = AGENTS
        .iter()
        .map(|a| format!("Agent::\"{a}\""))
        .chain(["User::\"u1\"".to_owned(), "Agent::\"nobody\"".to_owned()])
        .collect();
    (
        (
            pick(entities),
            pick(vec!["Human::\"ann\"".into(), "Human::\"bob\"".into()]),
            pick(ACTIONS.iter().map(|a| (*a).to_owned()).collect()),
            pick((0..8).map(|d| format!("Dataset::\"d{d}\"")).collect()),
            pick((0..5).map(|p| format!("p{p}")).collect()),
        ),
        (
            pick(vec!["allow".into(), "deny".into(), "lifecycle.set".into()]),
            pick(vec!["decision".into(), "change".into()]),
            proptest::option::of(0u64..120),
            proptest::option::of(0u64..120),
            any::<bool>(),
            1u32..40,
        ),
    )
        .prop_map(
            |(
                (entity, owner, action, resource, policy),
                (outcome, kind, after, before, newest_first, limit),
            )| EntryQuery {
                entity,
                owner,
                action,
                resource,
                policy,
                outcome,
                kind,
                after,
                before,
                newest_first,
                limit: Some(limit),
                ..EntryQuery::default()
            },
        )
}

struct Log {
    _dir: tempfile::TempDir,
    path: PathBuf,
    rows: Vec<(u64, Columns)>,
}

/// 103 entries in blocks of 8 (12 full blocks and a tail of 7), written in commits of 5 that
/// straddle block boundaries, over two runs of the writer.
fn sample_log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    append(config(dir.path(), 8), 0, 50, 5);
    append(config(dir.path(), 8), 50, 103, 5);
    let path = dir.path().join("decisions.sqlite3");
    let rows = all_rows(&path);
    assert_eq!(rows.len(), 103);
    Log {
        _dir: dir,
        path,
        rows,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_search_returns_what_a_plain_filter_returns(query in query_strategy()) {
        thread_local! {
            static LOG: Log = sample_log();
        }
        LOG.with(|log| {
            prop_assert_eq!(found(&log.path, &query), expected(&log.rows, &query), "{:?}", query);
            Ok(())
        })?;
    }
}

#[test]
fn searches_cover_full_blocks_and_the_tail_across_restarts() {
    let log = sample_log();
    let db = LogDb::open_read_only(&log.path).unwrap();
    // Agent a1 acts in every block and in the tail.
    let query = EntryQuery {
        entity: Some("Agent::\"a1\"".into()),
        limit: Some(1000),
        ..EntryQuery::default()
    };
    let seqs: Vec<u64> = db.search(&query).unwrap().iter().map(|s| s.seq).collect();
    assert_eq!(seqs, expected(&log.rows, &query));
    assert!(seqs.iter().any(|&seq| seq <= 8) && seqs.iter().any(|&seq| seq > 96));
    // A delegating user is found as a hop.
    let query = EntryQuery {
        entity: Some("User::\"u1\"".into()),
        action: Some("write".into()),
        limit: Some(1000),
        ..EntryQuery::default()
    };
    let found: Vec<u64> = db.search(&query).unwrap().iter().map(|s| s.seq).collect();
    assert!(!found.is_empty());
    assert_eq!(found, expected(&log.rows, &query));
}

#[test]
fn a_format_1_log_is_upgraded_in_place_and_still_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1");
    for file in ["decisions.sqlite3", "log.key", "log.key.pub"] {
        std::fs::copy(fixtures.join(file), dir.path().join(file)).unwrap();
    }
    let path = dir.path().join("decisions.sqlite3");
    let error = LogDb::open_read_only(&path).unwrap_err().to_string();
    assert!(error.contains("format 0"), "{error}");
    // Format 1: bodies inside `entries`.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM entries WHERE body <> X''",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(count, 40);
    drop(conn);

    // Opening it for writing upgrades it and indexes its 40 entries (5 blocks of 8); then it
    // takes more.
    append(config(dir.path(), 8), 100, 110, 3);
    let rows = all_rows(&path);
    assert_eq!(rows.len(), 50);
    let db = LogDb::open_read_only(&path).unwrap();
    let public_key = read_public_key(&public_key_path(&dir.path().join("log.key"))).unwrap();
    let report = verify(
        &db,
        &VerifyOptions {
            public_key,
            external: Vec::new(),
            from: 1,
            to: None,
            progress: None,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.entries, 50);
    // The fixture's decisions name no hops, so search them by action and resource.
    for action in ["read", "write"] {
        let query = EntryQuery {
            action: Some(action.into()),
            resource: Some("Dataset::\"d\"".into()),
            limit: Some(1000),
            ..EntryQuery::default()
        };
        let seqs = found(&path, &query);
        assert_eq!(seqs, expected(&rows, &query));
        assert!(seqs.iter().any(|&seq| seq <= 40), "{action}: {seqs:?}");
    }
    let query = EntryQuery {
        action: Some("write".into()),
        limit: Some(1000),
        ..EntryQuery::default()
    };
    let seqs = found(&path, &query);
    assert_eq!(seqs, expected(&rows, &query));
    assert!(seqs.iter().any(|&seq| seq <= 40) && seqs.iter().any(|&seq| seq > 40));
}

fn verify_log(path: &Path) -> arbiter_log::VerifyReport {
    let db = LogDb::open_read_only(path).unwrap();
    let dir = path.parent().unwrap();
    let public_key = read_public_key(&public_key_path(&dir.join("log.key"))).unwrap();
    verify(
        &db,
        &VerifyOptions {
            public_key,
            external: Vec::new(),
            from: 1,
            to: None,
            progress: None,
        },
    )
    .unwrap()
}

#[test]
fn an_edited_search_index_is_reported_by_verification() {
    let edits = [
        // Hiding one agent's entries of block 3 from searches…
        "DELETE FROM postings WHERE block = 3 AND term = 'e:Agent::\"a1\"'",
        // …or one entry of them.
        "UPDATE postings SET offsets = substr(offsets, 3) WHERE block = 5 AND term = 'a:read'",
        // Listing an entry under a term it does not have.
        "INSERT INTO postings (block, term, offsets) VALUES (0, 'e:Agent::\"ghost\"', X'0000')",
    ];
    for edit in edits {
        let log = sample_log();
        assert!(verify_log(&log.path).ok());
        let conn = rusqlite::Connection::open(&log.path).unwrap();
        assert_eq!(conn.execute(edit, []).unwrap(), 1, "{edit}");
        drop(conn);
        let report = verify_log(&log.path);
        assert!(!report.ok(), "{edit} went unnoticed");
        assert!(
            report
                .problems
                .iter()
                .any(|problem| problem.message.contains("search index")),
            "{edit}: {:?}",
            report.problems
        );
    }
}
