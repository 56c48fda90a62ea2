//! `arbiter demo`: Acme's agents meet Arbiter. Shows allow, deny with its explanation,
//! approval required, a lifecycle guard, delegation, and a quarantine taking effect at once.

use crate::bundle::BundleTexts;
use crate::command::{options_now, unix_now};
use crate::render::render_decision;
use anyhow::{anyhow, Result};
use arbiter_core::{parse_request, EntityRef, InventoryDocument, Lifecycle, RequestLimits};
use arbiter_engine::{EngineConfig, PolicySource, SnapshotCell};
use std::process::ExitCode;
use std::time::Instant;

pub(crate) const POLICIES: &str = include_str!("../../../../examples/demo/policies.cedar");
pub(crate) const SCHEMA: &str = include_str!("../../../../examples/demo/schema.cedarschema");
pub(crate) const INVENTORY: &str = include_str!("../../../../examples/demo/inventory.json");

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {}

const SCENARIOS: &[(&str, &str)] = &[
    (
        "An AI agent calls a read-only CRM tool (its risk score is low)",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#,
    ),
    (
        "The same agent calls a destructive tool: a human must approve",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.delete_customer"}}"#,
    ),
    (
        "An agent whose live risk score is high: denied, and the explanation says what would have to change",
        r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#,
    ),
    (
        "An agent tries to read customer PII: a forbid wins",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"customer-pii"}}"#,
    ),
    (
        "A quarantined agent: denied by a guard no policy can override",
        r#"{"subject":{"type":"Agent","id":"research-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#,
    ),
    (
        "The copilot acts for a user who has left the company: every hop must be allowed",
        r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"},"context":{"delegation":[{"type":"Human","id":"carol"}]}}"#,
    ),
];

pub(crate) fn run(_args: DemoArgs) -> Result<ExitCode> {
    let now = unix_now();
    let snapshot = demo_bundle(now)?.load()?;
    let n_policies = snapshot.policies().len();
    println!(
        "Arbiter demo: {} entities and {n_policies} Cedar policies (validated against the schema) from examples/demo/\n",
        snapshot.inventory().len()
    );
    let cell = SnapshotCell::new(snapshot);
    for (number, (title, text)) in SCENARIOS.iter().enumerate() {
        let request =
            parse_request(text, RequestLimits::default()).map_err(|err| anyhow!("{err}"))?;
        let decision = cell.load().decide(&request, &options_now(Some(now), true));
        println!("{}. {title}", number + 1);
        println!("{}", render_decision(&request, &decision, n_policies));
    }

    println!("7. Incident: quarantine the copilot, then repeat request 1");
    let (_, first) = SCENARIOS.first().ok_or_else(|| anyhow!("no scenarios"))?;
    let request = parse_request(first, RequestLimits::default()).map_err(|err| anyhow!("{err}"))?;
    let started = Instant::now();
    cell.update(|snapshot| {
        snapshot.inventory_mut().set_lifecycle(
            &EntityRef::new("Agent", "support-copilot"),
            Lifecycle::Quarantined,
        )
    })?;
    let decision = cell.load().decide(&request, &options_now(Some(now), true));
    let elapsed = started.elapsed();
    println!("{}", render_decision(&request, &decision, n_policies));
    println!(
        "   quarantine published and the next decision denied {:.1} µs after the call\n",
        elapsed.as_secs_f64() * 1e6
    );
    println!("Try it yourself:");
    println!("  cargo run --release -p arbiter-cli -- check -p examples/demo/policies.cedar -s examples/demo/schema.cedarschema \\");
    println!(
        "      -i examples/demo/inventory.json --now 1767225600 -r examples/demo/requests.jsonl"
    );
    println!("  echo '{first}' | cargo run --release -p arbiter-cli -- explain -p examples/demo/policies.cedar \\");
    println!("      -s examples/demo/schema.cedarschema -i examples/demo/inventory.json --now 1767225600");
    Ok(ExitCode::SUCCESS)
}

/// The demo bundle, with its signals observed two minutes before `now` so they are fresh.
pub(crate) fn demo_bundle(now: i64) -> Result<BundleTexts> {
    let mut document: InventoryDocument = serde_json::from_str(INVENTORY)?;
    for signal in &mut document.signals {
        signal.observed_at = now - 120;
    }
    Ok(BundleTexts {
        policies: vec![PolicySource {
            name: "examples/demo/policies.cedar".to_owned(),
            text: POLICIES.to_owned(),
        }],
        schema: Some((
            "examples/demo/schema.cedarschema".to_owned(),
            SCHEMA.to_owned(),
        )),
        entities: Vec::new(),
        inventories: vec![(
            "examples/demo/inventory.json".to_owned(),
            serde_json::to_string(&document)?,
        )],
        config: EngineConfig::default(),
    })
}
