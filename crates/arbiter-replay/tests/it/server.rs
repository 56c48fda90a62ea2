//! The log the real `arbiter serve` writes (the server library on 127.0.0.1:0 over a SQLite
//! file, decisions asked over HTTP, changes made through the administration API) replays in
//! full, and a what-if over it agrees with what activating the candidate then did.

use arbiter_core::InventoryDocument;
use arbiter_engine::{PolicySource, Schema};
use arbiter_log::{DecisionLog, LogConfig, LogDb};
use arbiter_replay::{impact, replay, Candidate, ReplayOptions};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Role, ServerConfig};
use arbiter_store::SqliteStore;
use serde_json::{json, Value};
use std::sync::Arc;

const POLICIES: &str = include_str!("../../../../examples/demo/policies.cedar");
const INVENTORY: &str = include_str!("../../../../examples/demo/inventory.json");
const SCHEMA: &str = include_str!("../../../../examples/demo/schema.cedarschema");
const REQUESTS: &str = include_str!("../../../../examples/demo/requests.jsonl");

const V2_EXTRA: &str = r#"
@id("no-destructive-tools")
forbid(principal, action == Action::"call_tool", resource)
when { resource.destructive };
"#;

struct Client {
    base: String,
    http: reqwest::Client,
    admin: String,
    gateway: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
        let response = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {key}"))
            .header("x-arbiter-reason", "replay test")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn admin(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.send(method, path, &self.admin, body).await
    }

    /// Every demo request, one at a time, then a batch and a search.
    async fn round(&self) {
        for line in REQUESTS.lines().filter(|line| !line.trim().is_empty()) {
            let request: Value = serde_json::from_str(line).unwrap();
            if request.get("resource").is_none() {
                continue;
            }
            self.send(
                reqwest::Method::POST,
                "/access/v1/evaluation",
                &self.gateway,
                request,
            )
            .await;
        }
        self.send(
            reqwest::Method::POST,
            "/access/v1/evaluations",
            &self.gateway,
            json!({
                "subject": {"type": "Agent", "id": "support-copilot"},
                "action": {"name": "read"},
                "evaluations": [
                    {"resource": {"type": "Dataset", "id": "help-center"}},
                    {"resource": {"type": "Dataset", "id": "customer-pii"}},
                    {"subject": {"type": "Human", "id": "bob"}, "resource": {"type": "Dataset", "id": "customer-pii"}}
                ]
            }),
        )
        .await;
        self.send(
            reqwest::Method::POST,
            "/access/v1/search/resource",
            &self.gateway,
            json!({
                "subject": {"type": "Agent", "id": "support-copilot"},
                "action": {"name": "read"},
                "resource": {"type": "Dataset"}
            }),
        )
        .await;
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_server_s_log_replays_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("arbiter.sqlite3");
    let log_path = dir.path().join("decisions.sqlite3");
    let schema = Schema::parse("schema.cedarschema", SCHEMA).unwrap();
    let mut inventory: InventoryDocument = serde_json::from_str(INVENTORY).unwrap();
    for signal in &mut inventory.signals {
        signal.observed_at = now() - 60;
    }
    let bootstrap = Bootstrap {
        policies: vec![PolicySource {
            name: "policies.cedar".into(),
            text: POLICIES.into(),
        }],
        inventory: vec![inventory],
        extra_keys: vec![("gateway".into(), Role::EnforcementPoint)],
        ..Bootstrap::default()
    };
    let store = Arc::new(SqliteStore::open(&store_path).unwrap());
    let (state, keys) = AppState::open(
        store,
        Some(schema.clone()),
        bootstrap,
        ServerConfig::default(),
        metrics_handle(),
        now(),
    )
    .unwrap();
    let key = |wanted: Role| {
        keys.keys
            .iter()
            .find(|(_, role, _)| *role == wanted)
            .map(|(_, _, key)| key.clone())
            .unwrap()
    };
    let (log, writer) = DecisionLog::open(LogConfig::new(
        log_path.clone(),
        dir.path().join("log-key/ed25519.key"),
    ))
    .unwrap();
    let state = state
        .with_log(log, log_path.clone(), arbiter_server::Redaction::default())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = Client {
        base: format!("http://{}", listener.local_addr().unwrap()),
        http: reqwest::Client::new(),
        admin: key(Role::Admin),
        gateway: key(Role::EnforcementPoint),
    };
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(arbiter_server::serve(listener, Arc::new(state), async {
        let _ = signal.await;
    }));

    use reqwest::Method;
    client.round().await;
    client
        .admin(
            Method::POST,
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            json!({"lifecycle": "quarantined", "reason": "test"}),
        )
        .await;
    client.round().await;
    client
        .admin(
            Method::POST,
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            json!({"lifecycle": "active", "reason": "test"}),
        )
        .await;
    client
        .admin(
            Method::PUT,
            "/admin/v1/identities/human/bob",
            json!({"id": "bob", "kind": "human",
                   "member_of": [{"type": "Group", "id": "data-stewards"}]}),
        )
        .await;
    client
        .admin(
            Method::PUT,
            "/admin/v1/signals",
            json!({"subject": {"type": "Agent", "id": "triage-agent"}, "name": "risk_score",
                   "value": 5, "source": "siem", "observed_at": now(), "ttl_seconds": 3600}),
        )
        .await;
    client.round().await;
    let v2_text = format!("{POLICIES}\n{V2_EXTRA}");
    client
        .admin(
            Method::POST,
            "/admin/v1/policies",
            json!({"sources": [{"name": "policies.cedar", "text": v2_text}], "reason": "v2"}),
        )
        .await;
    // A what-if before activating, on the log so far...
    let before_activation = now();
    client
        .admin(
            Method::POST,
            "/admin/v1/policies/2/activate",
            json!({"reason": "go"}),
        )
        .await;
    client.round().await;
    client
        .admin(
            Method::POST,
            "/admin/v1/policies/rollback",
            json!({"reason": "back"}),
        )
        .await;
    client.round().await;
    let _ = shutdown.send(());
    server.await.unwrap().unwrap();
    // Every answered decision is on disk already (durable mode); the writer is left to stop
    // with the last handle.
    drop(writer);

    let store = SqliteStore::open(&store_path).unwrap();
    let log = LogDb::open_read_only(&log_path).unwrap();
    let options = ReplayOptions {
        schema: Some(schema),
        ..ReplayOptions::default()
    };
    let report = replay(&store, &log, &options, None).unwrap();
    // Five rounds of nine evaluations, a batch of three and a search.
    assert!(report.total >= 5 * 12, "{report:#?}");
    assert!(report.all_reproduced(), "{report:#?}");
    assert_eq!(report.policy_versions, vec![1, 2]);

    // ...and what activating version 2 then did: every call to the destructive tool that asked
    // for approval under version 1 would be denied.
    let report = impact(
        &store,
        &log,
        &Candidate::Version(2),
        &ReplayOptions {
            until: Some(before_activation + 1),
            ..options
        },
        None,
    )
    .unwrap();
    assert!(report.changed > 0, "{report:#?}");
    assert!(report
        .transitions
        .iter()
        .all(|t| t.from.as_str() == "approval_required" && t.to.as_str() == "deny"));
    assert!(report
        .by_resource
        .top
        .iter()
        .all(|tally| tally.key == "Tool::\"crm.delete_customer\""));
}
