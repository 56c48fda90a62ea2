//! The trust-debt report at scale: 100,000 identities and 10,000,000 recorded decisions by
//! default, with progress on stderr, the time of each phase, and peak memory.
//!
//! ```sh
//! cargo bench -p arbiter-debt --bench debt
//! DEBT_BENCH_DECISIONS=1000000 DEBT_BENCH_BODY_BYTES=2200 cargo bench -p arbiter-debt --bench debt
//! ```
//!
//! The decision log is a real `decisions.sqlite3` written with `LogDb::append` (leaf hashes,
//! search columns and a signed checkpoint, as the writer stores them) and kept in
//! `target/debt-bench/` so later runs reuse it. Its bodies are placeholders of
//! `DEBT_BENCH_BODY_BYTES` (default 64): the report reads only the search columns, which the log
//! keeps apart from the bodies (format 2), so body size should not change its time; the
//! parameter is there to check that. The store is SQLite in
//! memory, filled through the `Store` trait each run (a file-backed store fsyncs every one of
//! 100,000 writes). Suggestions are proposed but not replayed: a replay needs real request
//! bodies, and its speed is measured by arbiter-replay's own benchmark.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark fails loudly"
)]

use arbiter_core::{EntityRef, InventoryDocument};
use arbiter_debt::{compute, RunOptions, Thresholds};
use arbiter_engine::PolicySet;
use arbiter_log::checkpoint::LogKey;
use arbiter_log::db::{LogDb, Prepared};
use arbiter_log::merkle::Frontier;
use arbiter_log::record::{leaf_of, Columns};
use arbiter_store::{Actor, PolicySourceRecord, SqliteStore, Store};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

const NOW: i64 = 1_767_225_600; // 2026-01-01
const DAY: i64 = 86_400;
const ROLES: usize = 200;
const DIRECT_GRANTS: usize = 500;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Peak resident set size in MiB (VmHWM).
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resets VmHWM to the current RSS (Linux: `clear_refs` 5), so the peak measured is the report's.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

struct Fleet {
    document: InventoryDocument,
    /// Active non-human principals that act, with their roles.
    actors: Vec<(String, Vec<usize>)>,
    /// Principals whose last decision is 45–60 days old.
    dormant: Vec<(String, Vec<usize>)>,
    policies: String,
}

fn fleet(identities: usize) -> Fleet {
    let mut rng = ChaCha8Rng::seed_from_u64(0xDEB7);
    let humans = (identities / 50).max(2);
    let mut list = Vec::with_capacity(identities);
    for idx in 0..humans {
        let lifecycle = if idx % 33 == 0 { "revoked" } else { "active" };
        list.push(
            json!({"id": format!("h{idx}"), "kind": "human", "lifecycle": lifecycle,
                         "attributes": {"team": format!("team-{}", idx % 40)}}),
        );
    }
    let mut actors = Vec::new();
    let mut dormant = Vec::new();
    let mut nhis: Vec<EntityRef> = Vec::new();
    for idx in 0..identities - humans {
        let roll = rng.gen_range(0..100);
        let (kind, cedar) = match roll {
            0..=54 => ("ai_agent", "Agent"),
            55..=74 => ("service_account", "ServiceAccount"),
            75..=86 => ("workload", "Workload"),
            _ => ("credential", "Credential"),
        };
        let id = format!("{kind}-{idx}");
        let owner = if rng.gen_ratio(1, 100) {
            None
        } else {
            Some(format!("h{}", rng.gen_range(0..humans)))
        };
        let mut identity = json!({"id": id, "kind": kind, "owner": owner});
        let mut attributes = serde_json::Map::new();
        if rng.gen_bool(0.5) {
            attributes.insert(
                "reviewed_at".into(),
                json!(NOW - rng.gen_range(0..400) * DAY),
            );
        }
        if kind == "credential" && !nhis.is_empty() {
            let holder = &nhis[rng.gen_range(0..nhis.len())];
            let issued = NOW - rng.gen_range(1..400) * DAY;
            let expires = if rng.gen_bool(0.4) {
                None
            } else {
                Some(issued + rng.gen_range(30..800) * DAY)
            };
            identity["credential"] = json!({"holder": holder, "issued_at": issued,
                "expires_at": expires, "last_used_at": NOW - rng.gen_range(0..90) * DAY});
            if rng.gen_bool(0.2) {
                attributes.insert("credential_type".into(), json!("static_key"));
            }
        } else {
            let roles: Vec<usize> = (0..rng.gen_range(1..=3))
                .map(|_| rng.gen_range(0..ROLES))
                .collect();
            identity["member_of"] = json!(roles
                .iter()
                .map(|role| json!({"type": "Role", "id": format!("r{role}")}))
                .collect::<Vec<_>>());
            let entity = EntityRef::new(cedar, &id).to_string();
            nhis.push(EntityRef::new(cedar, &id));
            if rng.gen_ratio(1, 20) {
                dormant.push((entity, roles));
            } else {
                actors.push((entity, roles));
            }
        }
        identity["attributes"] = json!(attributes);
        list.push(identity);
    }
    let signals: Vec<_> = nhis
        .iter()
        .step_by(200)
        .map(|subject| {
            json!({"subject": subject, "name": "interactive_login", "value": true,
                               "source": "idp", "observed_at": NOW - DAY, "ttl_seconds": 86_400})
        })
        .collect();
    let levels = ["public", "internal", "confidential", "restricted"];
    let resources: Vec<_> = (0..5_000)
        .map(|idx| json!({"type": if idx % 3 == 0 { "Tool" } else { "Dataset" }, "id": format!("res-{idx}"),
            "sensitivity": levels[idx % 4],
            "attributes": {"environment": if idx % 10 == 0 { "staging" } else { "prod" }}}))
        .collect();
    let groups: Vec<_> = (0..ROLES)
        .map(|idx| json!({"type": "Role", "id": format!("r{idx}")}))
        .collect();
    let document = serde_json::from_value(json!({
        "identities": list, "groups": groups, "resources": resources, "signals": signals,
    }))
    .unwrap();
    let mut policies = String::new();
    for role in 0..ROLES {
        policies.push_str(&format!(
            "@id(\"role-{role}\")\npermit(principal in Role::\"r{role}\", action in [Action::\"read\", Action::\"write\", Action::\"call_tool\"], resource);\n\n"
        ));
    }
    for (idx, (entity, _)) in actors.iter().take(DIRECT_GRANTS).enumerate() {
        policies.push_str(&format!(
            "@id(\"direct-{idx}\")\npermit(principal == {entity}, action in [Action::\"read\", Action::\"deploy\"], resource);\n\n"
        ));
    }
    Fleet {
        document,
        actors,
        dormant,
        policies,
    }
}

fn build_log(path: &PathBuf, fleet: &Fleet, decisions: u64, body_bytes: usize) {
    let started = Instant::now();
    let _ = std::fs::remove_file(path);
    let mut db = LogDb::open(path).unwrap();
    let key = LogKey::generate().unwrap();
    let mut frontier = Frontier::new();
    let mut rng = ChaCha8Rng::seed_from_u64(0x10C);
    let body = vec![b' '; body_bytes];
    let actions = ["read", "write", "call_tool"];
    let batch = 50_000u64;
    let mut seq = 1u64;
    while seq <= decisions {
        let n = batch.min(decisions - seq + 1);
        let mut entries = Vec::with_capacity(n as usize);
        for offset in 0..n {
            let number = seq + offset;
            // Time moves forward along the log, as it does in a real one: 60 days, oldest first.
            let at = NOW - 60 * DAY + (number as i64 * 60 * DAY) / decisions as i64;
            let early = at < NOW - 45 * DAY;
            let (principal, roles) = if early && rng.gen_ratio(1, 20) && !fleet.dormant.is_empty() {
                let (entity, roles) = &fleet.dormant[rng.gen_range(0..fleet.dormant.len())];
                (entity, roles)
            } else {
                // Skewed: a quarter of the actors make most of the traffic.
                let pick = if rng.gen_bool(0.8) {
                    rng.gen_range(0..fleet.actors.len() / 4)
                } else {
                    rng.gen_range(0..fleet.actors.len())
                };
                let (entity, roles) = &fleet.actors[pick];
                (entity, roles)
            };
            let allowed = rng.gen_ratio(9, 10);
            let policies = if allowed {
                vec![format!("role-{}", roles[rng.gen_range(0..roles.len())])]
            } else {
                Vec::new()
            };
            let mut entities = Vec::new();
            if rng.gen_ratio(1, 10) {
                entities.push(fleet.actors[rng.gen_range(0..fleet.actors.len())].0.clone());
            }
            entities.push(principal.clone());
            let columns = Columns {
                kind: "decision".into(),
                at,
                decision_id: format!("d-{number}"),
                principal: principal.clone(),
                owner: String::new(),
                outcome: if allowed { "allow" } else { "deny" }.into(),
                action: actions[rng.gen_range(0..actions.len())].into(),
                resource: format!("Dataset::\"res-{}\"", rng.gen_range(0..5_000)),
                policy_version: 1,
                entities,
                policies,
            };
            let leaf = leaf_of(number, &columns, &body);
            frontier.push(leaf);
            entries.push((
                Prepared {
                    columns,
                    body: body.clone(),
                },
                leaf,
            ));
        }
        let checkpoint = key.sign(frontier.size(), &frontier.root(), NOW);
        db.append(seq, &entries, &checkpoint, false).unwrap();
        seq += n;
        eprintln!(
            "fixture: {}/{decisions} decisions written after {:.0} s",
            seq - 1,
            started.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let identities = env("DEBT_BENCH_IDENTITIES", 100_000) as usize;
    let decisions = env("DEBT_BENCH_DECISIONS", 10_000_000);
    let body_bytes = env("DEBT_BENCH_BODY_BYTES", 64) as usize;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debt-bench");
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join(format!(
        "decisions-{identities}-{decisions}-{body_bytes}-format2.sqlite3"
    ));

    let started = Instant::now();
    let fleet = fleet(identities);
    if !log_path.exists() {
        let partial = log_path.with_extension("partial");
        build_log(&partial, &fleet, decisions, body_bytes);
        std::fs::rename(&partial, &log_path).unwrap();
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", partial.display()));
        }
    }
    let log_bytes = std::fs::metadata(&log_path)
        .map(|meta| meta.len())
        .unwrap_or(0);

    let store = SqliteStore::open_in_memory().unwrap();
    let system = Actor::new("bench", "system");
    let sources = vec![arbiter_engine::PolicySource {
        name: "bench.cedar".into(),
        text: fleet.policies.clone(),
    }];
    let compiled = PolicySet::compile(sources, None, 1).unwrap();
    let version = store
        .create_policy_version(
            &[PolicySourceRecord {
                name: "bench.cedar".into(),
                text: fleet.policies.clone(),
            }],
            compiled.digest(),
            &system,
            "bench",
        )
        .unwrap();
    store
        .activate_policy_version(version, &system, "bench")
        .unwrap();
    for group in &fleet.document.groups {
        store.put_group(group, &system, "bench").unwrap();
    }
    for resource in &fleet.document.resources {
        store.put_resource(resource, &system, "bench").unwrap();
    }
    for identity in &fleet.document.identities {
        store.put_identity(identity, &system, "bench").unwrap();
    }
    for signal in &fleet.document.signals {
        store.put_signal(signal, &system, "bench").unwrap();
    }
    eprintln!(
        "setup: {identities} identities in the store, log of {decisions} decisions ({:.2} GB) in {:.0} s",
        log_bytes as f64 / 1e9,
        started.elapsed().as_secs_f64()
    );
    drop(fleet);

    let log = LogDb::open_read_only(&log_path).unwrap();
    let rss_before = peak_rss_mib();
    reset_peak();
    let progress_started = Instant::now();
    let progress = |phase: &str, done: u64, total: u64| {
        eprintln!(
            "debt: {phase} {done}/{total} after {:.1} s",
            progress_started.elapsed().as_secs_f64()
        );
    };
    let options = RunOptions {
        suggestions: 10,
        check: false,
    };
    let report_started = Instant::now();
    let report = compute(
        &store,
        &log,
        &Thresholds::default(),
        NOW,
        options,
        Some(&progress),
    )
    .unwrap();
    let elapsed = report_started.elapsed();
    let peak = peak_rss_mib();
    println!(
        "trust-debt report: {identities} identities, {} decisions ({body_bytes}-byte bodies, log {:.2} GB): {:.1} s, peak RSS {:.0} MiB (before: {:.0} MiB)",
        report.usage.decisions,
        log_bytes as f64 / 1e9,
        elapsed.as_secs_f64(),
        peak,
        rss_before,
    );
    println!(
        "  {} identities analysed, {} findings on {} identities, overall {:.1}, {} suggestions proposed; findings by OWASP item: {:?}",
        report.identities_analysed,
        report.findings.len(),
        report.scores.identities_with_debt,
        report.scores.overall,
        report.suggestions.len(),
        report.scores.by_owasp
    );
}
