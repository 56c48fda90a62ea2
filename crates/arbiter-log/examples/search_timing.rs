//! Times searches on a large log: writes one (2,000,000 decisions by 10,000 agents over 5
//! actions and 2,000 resources, one in ten on behalf of a user) through the real writer into
//! `target/search-timing/` unless it is there already, then runs each query three times and
//! prints the best time.
//!
//! `cargo run --release -p arbiter-log --example search_timing` (`SEARCH_TIMING_ENTRIES` sets
//! the size).

#![allow(clippy::panic, reason = "a measuring tool fails loudly")]

use arbiter_log::{DecisionLog, Entry, EntryQuery, LogConfig, LogDb};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const AGENTS: u64 = 10_000;
const ACTIONS: [&str; 5] = ["read", "write", "call_tool", "delete", "list"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let entries: u64 = std::env::var("SEARCH_TIMING_ENTRIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(2_000_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/search-timing")
        .join(entries.to_string());
    let path = dir.join("decisions.sqlite3");
    if !path.exists() {
        write(&dir, entries)?;
    }
    let db = LogDb::open_read_only(&path)?;
    println!("{} entries", db.len()?);
    let query =
        |entity: Option<&str>, action: Option<&str>, outcome: Option<&str>, newest_first| {
            EntryQuery {
                entity: entity.map(str::to_owned),
                action: action.map(str::to_owned),
                outcome: outcome.map(str::to_owned),
                newest_first,
                limit: Some(100),
                ..EntryQuery::default()
            }
        };
    let queries = [
        (
            "one agent, oldest first",
            query(Some("Agent::\"a42\""), None, None, false),
        ),
        (
            "one agent, newest first",
            query(Some("Agent::\"a42\""), None, None, true),
        ),
        (
            "a user as a delegation hop",
            query(Some("User::\"u7\""), None, None, true),
        ),
        (
            "one agent's deletes",
            query(Some("Agent::\"a42\""), Some("delete"), None, true),
        ),
        (
            "an identity that never acted",
            query(Some("Agent::\"nobody\""), None, None, false),
        ),
        (
            "every delete denied, newest first",
            query(None, Some("delete"), Some("deny"), true),
        ),
        (
            "by decision id",
            EntryQuery {
                decision_id: Some(format!("dec-{}", entries / 2)),
                ..EntryQuery::default()
            },
        ),
    ];
    for (name, query) in queries {
        let mut best = f64::MAX;
        let mut found = 0;
        for _ in 0..3 {
            let started = Instant::now();
            found = db.search(&query)?.len();
            best = best.min(started.elapsed().as_secs_f64());
        }
        println!("{name}: {found} found in {:.2} ms", best * 1e3);
    }
    Ok(())
}

fn write(dir: &std::path::Path, entries: u64) -> Result<(), Box<dyn std::error::Error>> {
    let _ = std::fs::remove_dir_all(dir);
    let config = LogConfig::new(dir.join("decisions.sqlite3"), dir.join("log.key"));
    let (log, writer) = DecisionLog::open(config)?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let started = Instant::now();
    runtime.block_on(async {
        let mut n = 0;
        while n < entries {
            let batch: Vec<Entry> = (n..(n + 10_000).min(entries)).map(decision).collect();
            n += batch.len() as u64;
            log.append(&batch).await?;
        }
        Ok::<_, arbiter_log::LogError>(())
    })?;
    drop(log);
    let _ = writer.join();
    println!(
        "wrote {entries} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Decision `n`, spread by a multiplicative hash so that agents and resources interleave.
fn decision(n: u64) -> Entry {
    let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let agent = mix % AGENTS;
    let mut hops = Vec::new();
    if mix.is_multiple_of(10) {
        hops.push(hop("User", &format!("u{}", (mix >> 20) % 1_000)));
    }
    hops.push(hop("Agent", &format!("a{agent}")));
    let value = json!({
        "endpoint": "evaluation",
        "request": {"subject": {"type": "Agent", "id": format!("a{agent}")},
                    "action": {"name": ACTIONS.get(((mix >> 8) % 5) as usize)},
                    "resource": {"type": "Dataset", "id": format!("d{}", (mix >> 12) % 2_000)},
                    "context": {}},
        "decision": {
            "id": format!("dec-{n}"), "outcome": if (mix >> 4).is_multiple_of(10) { "deny" } else { "allow" },
            "determining": [], "reason_admin": "r", "reason_user": "r", "hops": hops,
            "context": {}, "decided_at": 1_767_225_600 + (n / 100) as i64,
            "snapshot": {"policy_version": 1, "policy_digest": "x", "inventory_version": 1}
        },
        "latency_us": 10
    });
    Entry::Decision(Box::new(
        serde_json::from_value(value).unwrap_or_else(|error| panic!("decision {n}: {error}")),
    ))
}

fn hop(entity_type: &str, id: &str) -> serde_json::Value {
    json!({"principal": {"type": entity_type, "id": id}, "outcome": "allow", "determining": [],
           "candidates": 0, "explanation": {"policies": []}})
}
