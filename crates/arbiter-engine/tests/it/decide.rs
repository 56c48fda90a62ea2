use arbiter_core::{parse_request, Decision, InventoryDocument, Outcome, RequestLimits};
use arbiter_engine::{
    DecideOptions, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};

const POLICIES: &str = r#"
@id("agents-read-internal")
permit(principal is Agent, action == Action::"read", resource is Dataset)
when { resource.sensitivity_level <= 1 && context.arbiter.signals.risk_score.value < 50 };

@id("deploy-needs-approval")
@approval("production deploys need the owner's sign-off")
forbid(principal, action == Action::"deploy", resource)
when { resource.env == "prod" };

@id("ci-can-deploy")
permit(principal in Group::"ci", action == Action::"deploy", resource);
"#;

const INVENTORY: &str = r#"{
  "identities": [
    {"id": "alice", "kind": "human"},
    {"id": "bot", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Group", "id": "ci"}]}
  ],
  "groups": [{"id": "ci"}],
  "resources": [
    {"type": "Dataset", "id": "wiki", "sensitivity": "internal"},
    {"type": "Service", "id": "api", "attributes": {"env": "prod"}}
  ],
  "signals": [
    {"subject": {"type": "Agent", "id": "bot"}, "name": "risk_score", "value": 72, "source": "siem", "observed_at": 1000, "ttl_seconds": 600}
  ]
}"#;

fn snapshot() -> Snapshot {
    let policies = PolicySet::compile(
        vec![PolicySource {
            name: "test.cedar".into(),
            text: POLICIES.into(),
        }],
        None,
        1,
    )
    .unwrap();
    let document: InventoryDocument = serde_json::from_str(INVENTORY).unwrap();
    let mut builder = InventoryBuilder::new();
    builder.add_document(&document).unwrap();
    Snapshot::new(
        policies,
        builder.build(None).unwrap(),
        None,
        EngineConfig::default(),
    )
}

fn decide(snapshot: &Snapshot, request: &str) -> Decision {
    let request = parse_request(request, RequestLimits::default()).unwrap();
    snapshot.decide(
        &request,
        &DecideOptions {
            now: 1100,
            decision_id: "d-1".into(),
            explain: true,
        },
    )
}

#[test]
fn smoke() {
    let snapshot = snapshot();
    let decision = decide(
        &snapshot,
        r#"{"subject":{"type":"Agent","id":"bot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"wiki"}}"#,
    );
    println!("{}", serde_json::to_string_pretty(&decision).unwrap());
    assert_eq!(decision.outcome, Outcome::Deny);
    let decision = decide(
        &snapshot,
        r#"{"subject":{"type":"Agent","id":"bot"},"action":{"name":"deploy"},"resource":{"type":"Service","id":"api"}}"#,
    );
    println!("{}", serde_json::to_string_pretty(&decision).unwrap());
    assert_eq!(decision.outcome, Outcome::ApprovalRequired);
}
