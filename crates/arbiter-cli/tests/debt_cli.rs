//! `arbiter debt` run as an operator would, on a data folder written by the real store and the
//! real decision log: the ranked table, `--json`, `--html`, the kept trend and progress lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use arbiter_core::{ActionRef, DecisionRequest, EntityInput, EntityRef, InventoryDocument};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};
use arbiter_log::{DecisionEntry, DecisionLog, Entry, LogConfig};
use arbiter_store::{Actor, PolicySourceRecord, SqliteStore, Store};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

const NOW: i64 = 1_767_225_600; // 2026-01-01
const DAY: i64 = 86_400;

const POLICIES: &str = r#"@id("readers-read")
permit(principal in Role::"readers", action == Action::"read", resource);

@id("writers-write")
permit(principal in Role::"writers", action == Action::"write", resource);
"#;

/// A data folder as `arbiter serve` leaves it: a store and a decision log with 20 days of reads.
fn data_folder(dir: &Path) {
    let inventory: InventoryDocument = serde_json::from_value(json!({
        "groups": [{"type": "Role", "id": "readers"}, {"type": "Role", "id": "writers"}],
        "resources": [{"type": "Dataset", "id": "docs", "sensitivity": "internal"}],
        "identities": [
            {"id": "alice", "kind": "human", "attributes": {"team": "platform"}},
            {"id": "reader", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "readers"}]},
            {"id": "hoarder", "kind": "ai_agent", "owner": "alice",
             "member_of": [{"type": "Role", "id": "readers"}, {"type": "Role", "id": "writers"}]},
            {"id": "stray", "kind": "service_account"}
        ]
    }))
    .unwrap();
    let store = SqliteStore::open(dir.join("arbiter.sqlite3")).unwrap();
    let actor = Actor::new("bootstrap", "system");
    let sources = vec![PolicySource {
        name: "policies.cedar".into(),
        text: POLICIES.into(),
    }];
    let compiled = PolicySet::compile(sources, None, 1).unwrap();
    let record = PolicySourceRecord {
        name: "policies.cedar".into(),
        text: POLICIES.into(),
    };
    let version = store
        .create_policy_version(&[record], compiled.digest(), &actor, "bootstrap")
        .unwrap();
    store
        .activate_policy_version(version, &actor, "bootstrap")
        .unwrap();
    for group in &inventory.groups {
        store.put_group(group, &actor, "bootstrap").unwrap();
    }
    for resource in &inventory.resources {
        store.put_resource(resource, &actor, "bootstrap").unwrap();
    }
    for identity in &inventory.identities {
        store.put_identity(identity, &actor, "bootstrap").unwrap();
    }
    let mut builder = InventoryBuilder::new();
    builder
        .add_document(&store.load_inventory().unwrap())
        .unwrap();
    let mut snapshot = Snapshot::new(
        compiled,
        builder.build(None).unwrap(),
        None,
        EngineConfig::default(),
    );
    snapshot.set_change_seq(store.latest_seq().unwrap());
    let mut entries = Vec::new();
    for day in 1..=20 {
        for agent in ["reader", "hoarder"] {
            let request = DecisionRequest {
                subject: EntityInput {
                    entity: EntityRef::new("Agent", agent),
                    properties: Default::default(),
                },
                action: ActionRef {
                    name: "read".into(),
                    properties: Default::default(),
                },
                resource: EntityInput {
                    entity: EntityRef::new("Dataset", "docs"),
                    properties: Default::default(),
                },
                context: Default::default(),
                delegation: Vec::new(),
            };
            let options = DecideOptions {
                now: NOW - day * DAY,
                decision_id: format!("d-{agent}-{day}"),
                explain: false,
            };
            let decision = snapshot.decide(&request, &options);
            entries.push(Entry::Decision(Box::new(DecisionEntry {
                endpoint: "evaluation".into(),
                caller: None,
                request: request.to_value(),
                owner: None,
                decision,
                latency_us: 0,
                redacted: Vec::new(),
                approval: None,
            })));
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (log, writer) = DecisionLog::open(LogConfig::new(
        dir.join("decisions.sqlite3"),
        dir.join("keys/log.key"),
    ))
    .unwrap();
    runtime.block_on(log.append(&entries)).unwrap();
    drop(log);
    writer.join().unwrap();
}

fn arbiter(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .env("ARBITER_PROGRESS", "1")
        .env_remove("ARBITER_API_KEY")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn debt_prints_a_ranked_table_json_html_and_keeps_the_trend() {
    let dir = tempfile::tempdir().unwrap();
    data_folder(dir.path());
    let data = dir.path().to_str().unwrap();
    let earlier = (NOW - DAY).to_string();
    let now = NOW.to_string();

    let (ok, table, progress) = arbiter(&["debt", "--data-dir", data, "--now", &earlier]);
    assert!(ok, "{progress}");
    assert!(progress.contains("debt: usage 40/"), "{progress}");
    let lines: Vec<&str> = table.lines().collect();
    let header = lines
        .iter()
        .position(|line| line.starts_with("#  IDENTITY"))
        .unwrap_or_else(|| panic!("{table}"));
    // The orphan (one high finding, 25) ranks above the over-privileged agent (medium, 10).
    assert!(
        lines[header + 1].contains("ServiceAccount::\"stray\"")
            && lines[header + 1].contains("NHI1 orphaned (high)"),
        "{table}"
    );
    assert!(
        lines[header + 2].contains("Agent::\"hoarder\"")
            && lines[header + 2].contains("NHI5 over_privileged"),
        "{table}"
    );
    assert!(
        !table.contains("Agent::\"reader\""),
        "a clean agent is not listed:\n{table}"
    );
    assert!(table.contains("writers-write"), "{table}");
    assert!(
        table.contains("would have changed 0 of the 40 decisions"),
        "{table}"
    );

    let html = dir.path().join("debt.html");
    let (ok, json_text, _) = arbiter(&[
        "debt",
        "--data-dir",
        data,
        "--now",
        &now,
        "--json",
        "--html",
        html.to_str().unwrap(),
    ]);
    assert!(ok);
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(
        report["findings"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
    assert_eq!(
        report["history"].as_array().unwrap().len(),
        2,
        "two runs kept"
    );
    assert_eq!(
        report["suggestions"][0]["removes"],
        json!(["writers-write"])
    );
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("id=\"chart-trend\"")
            && page.contains("id=\"chart-owasp\"")
            && page.contains("id=\"chart-owners\"")
    );
    assert!(dir.path().join("debt.sqlite3").exists());
}
