//! Trust debt as a live policy input: the figures published as the `debt` attribute of each
//! identity, read by a policy, decided by the real engine.

use crate::planted::{recorded, Recorded, NOW};
use arbiter_core::{ActionRef, DecisionRequest, EntityInput, EntityRef, Outcome};
use arbiter_debt::set_figures;
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};
use arbiter_store::Store;

const POLICIES: &str = r#"
@id("agents-may-drop-tables")
permit(principal, action == Action::"drop_table", resource);

@id("no-destructive-tools-on-unrotated-credentials")
@reason("rotate your credentials first")
forbid(principal, action == Action::"drop_table", resource)
when { principal has debt && principal.debt.unrotated_days > 90 };

@id("no-destructive-tools-with-high-debt")
forbid(principal, action == Action::"drop_table", resource)
when { principal has debt && principal.debt.score >= 25 };
"#;

fn ask(snapshot: &Snapshot, subject: EntityRef) -> (Outcome, Vec<String>) {
    let request = DecisionRequest {
        subject: EntityInput {
            entity: subject,
            properties: serde_json::Map::new(),
        },
        action: ActionRef {
            name: "drop_table".into(),
            properties: serde_json::Map::new(),
        },
        resource: EntityInput {
            entity: EntityRef::new("Tool", "search"),
            properties: serde_json::Map::new(),
        },
        context: serde_json::Map::new(),
        delegation: Vec::new(),
    };
    let options = DecideOptions {
        now: NOW,
        decision_id: "d-debt".into(),
        explain: false,
    };
    let decision = snapshot.decide(&request, &options);
    (
        decision.outcome,
        decision
            .determining
            .iter()
            .map(|policy| policy.id.clone())
            .collect(),
    )
}

#[test]
fn a_policy_reading_debt_figures_denies_as_expected() {
    let Recorded { server, report, .. } = recorded();
    let mut inventory = server.store.load_inventory().unwrap();
    let mut published = 0;
    for identity in &mut inventory.identities {
        if let Some(figures) = report.figures.get(&identity.entity_ref().to_string()) {
            published += usize::from(set_figures(identity, figures));
        }
    }
    assert_eq!(
        published, 19,
        "every active non-human identity gets its figures"
    );
    let mut builder = InventoryBuilder::new();
    builder.add_document(&inventory).unwrap();
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "debt.cedar".into(),
            text: POLICIES.into(),
        }],
        None,
        1,
    )
    .unwrap();
    let snapshot = Snapshot::new(
        policies,
        builder.build(None).unwrap(),
        None,
        EngineConfig::default(),
    );

    // clean-1 has no finding of its own, but holds a credential issued 200 days ago.
    let (outcome, determining) = ask(&snapshot, EntityRef::new("Agent", "clean-1"));
    assert_eq!(outcome, Outcome::Deny);
    assert_eq!(
        determining,
        ["no-destructive-tools-on-unrotated-credentials"]
    );
    // multienv's score is 25 (one high finding).
    let (outcome, determining) = ask(&snapshot, EntityRef::new("Agent", "multienv"));
    assert_eq!(outcome, Outcome::Deny);
    assert_eq!(determining, ["no-destructive-tools-with-high-debt"]);
    // A clean identity with fresh credentials is allowed.
    let (outcome, determining) = ask(&snapshot, EntityRef::new("Workload", "w1"));
    assert_eq!(outcome, Outcome::Allow);
    assert_eq!(determining, ["agents-may-drop-tables"]);
    // An identity without published figures is not judged by them (`has` guards the read).
    let (outcome, _) = ask(&snapshot, EntityRef::new("Human", "bob"));
    assert_eq!(outcome, Outcome::Allow);

    // Publishing the same figures again changes nothing.
    let again = inventory
        .identities
        .iter_mut()
        .filter_map(|identity| {
            let figures = report.figures.get(&identity.entity_ref().to_string())?;
            Some(set_figures(identity, figures))
        })
        .filter(|changed| *changed)
        .count();
    assert_eq!(again, 0);
}
