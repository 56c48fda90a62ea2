//! The decision log through the server: every decision and change is recorded before it is
//! answered, searchable, provable, and the whole log verifies.

use crate::support::{Bundle, TestServer};
use arbiter_log::checkpoint::read_public_key;
use arbiter_log::{verify, InclusionProof, LogDb, VerifyOptions};
use arbiter_server::Role;
use serde_json::Value;

const ALLOW: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;
const APPROVAL: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.delete_customer"}}"#;
const DELEGATED: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"},"context":{"delegation":[{"type":"Human","id":"carol"}]}}"#;

async fn search(server: &TestServer, query: &str) -> Vec<Value> {
    let (status, _, body) = server
        .send(
            "GET",
            &format!("/admin/v1/decisions?{query}"),
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["entries"].as_array().unwrap().clone()
}

fn decision_id(answer: &Value) -> String {
    answer["context"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_decision_and_change_is_recorded_searchable_and_provable() {
    let server = TestServer::start(Bundle::demo()).await;
    let (_, allowed) = server.decide(ALLOW).await;
    let (_, approval) = server.decide(APPROVAL).await;
    let (_, delegated) = server.decide(DELEGATED).await;
    assert_eq!(allowed["decision"], true);
    assert_eq!(approval["context"]["outcome"], "approval_required");

    // By id: the full entry, request and explanation included.
    let (status, _, entry) = server
        .send(
            "GET",
            &format!("/admin/v1/decisions/{}", decision_id(&approval)),
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(entry["entry"]["type"], "decision");
    assert_eq!(entry["entry"]["decision"]["outcome"], "approval_required");
    assert_eq!(
        entry["entry"]["request"]["resource"]["id"],
        "crm.delete_customer"
    );
    assert_eq!(entry["entry"]["caller"]["role"], "enforcement_point");
    assert_eq!(entry["entry"]["owner"]["id"], "alice");
    assert!(entry["entry"]["decision"]["hops"][0]["explanation"].is_object());

    // A hop of a delegation chain finds the decision it took part in.
    let as_hop = search(&server, "entity=Human::%22carol%22&kind=decision").await;
    assert_eq!(as_hop.len(), 1);
    assert_eq!(
        as_hop[0]["entry"]["decision"]["id"],
        decision_id(&delegated)
    );
    let approvals = search(&server, "outcome=approval_required").await;
    assert_eq!(approvals.len(), 1);
    let by_policy = search(&server, "policy=support-agents-use-crm&kind=decision").await;
    assert!(by_policy
        .iter()
        .any(|found| found["entry"]["decision"]["id"] == decision_id(&allowed)));
    let (status, _, bad) = server
        .send(
            "GET",
            "/admin/v1/decisions?limit=0",
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 400, "{bad}");

    // A batch and a search record one entry per decision.
    let before = search(&server, "kind=decision&limit=1000").await.len();
    let batch = format!(r#"{{"evaluations":[{ALLOW},{APPROVAL}]}}"#);
    let (status, _, _) = server
        .send(
            "POST",
            "/access/v1/evaluations",
            Some(server.key(Role::EnforcementPoint)),
            Some(batch),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        search(&server, "kind=decision&limit=1000").await.len(),
        before + 2
    );

    // A governance change lands in the log as it is made.
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            Some(server.key(Role::Admin)),
            Some(r#"{"lifecycle":"quarantined","reason":"incident 7"}"#.into()),
        )
        .await;
    assert_eq!(status, 200);
    let changes = search(&server, "kind=change&newest_first=true&limit=1").await;
    assert_eq!(changes[0]["entry"]["kind"], "identity.lifecycle");
    assert_eq!(changes[0]["entry"]["reason"], "incident 7");

    // Enforcement points cannot read the log.
    let (status, _, _) = server
        .send(
            "GET",
            "/admin/v1/decisions",
            Some(server.key(Role::EnforcementPoint)),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // An inclusion proof checks with the public key alone, and the whole log verifies.
    let (status, _, proof) = server
        .send(
            "GET",
            &format!("/admin/v1/decisions/{}/proof", decision_id(&allowed)),
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    let proof: InclusionProof = serde_json::from_value(proof).unwrap();
    let key = read_public_key(&server.log_dir.path().join("log-key/ed25519.key.pub")).unwrap();
    proof.check(&key).unwrap();
    let db = LogDb::open_read_only(&server.log_dir.path().join("decisions.sqlite3")).unwrap();
    let report = verify(
        &db,
        &VerifyOptions {
            public_key: key,
            external: Vec::new(),
            from: 1,
            to: None,
            progress: None,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    let (_, _, ready) = server
        .send("GET", "/ready", Some(server.key(Role::Auditor)), None)
        .await;
    assert_eq!(ready["decision_log"]["writable"], true);

    // Retention is the admin's alone, is itself logged, and leaves a log that verifies.
    for _ in 0..10 {
        server.decide(ALLOW).await;
    }
    let rule = r#"{"keep_entries":2,"reason":"test retention"}"#;
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/log/retention",
            Some(server.key(Role::Auditor)),
            Some(rule.into()),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, pruned) = server
        .send(
            "POST",
            "/admin/v1/log/retention",
            Some(server.key(Role::Admin)),
            Some(rule.into()),
        )
        .await;
    assert_eq!(status, 200, "{pruned}");
    assert!(pruned["pruned"].as_u64().unwrap() > 10);
    let report = verify(
        &db,
        &VerifyOptions {
            public_key: key,
            external: Vec::new(),
            from: 1,
            to: None,
            progress: None,
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.pruned, pruned["pruned"].as_u64().unwrap());
    // Governance changes keep their bodies: they are the record of who changed what.
    let oldest_change = search(&server, "kind=change&limit=1").await;
    assert_eq!(oldest_change[0]["entry"]["type"], "change");
    server.stop().await;
}

#[tokio::test]
async fn a_version_in_shadow_is_never_enforced_and_its_differences_are_recorded() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(r#"{"sources":[{"name":"lockdown.cedar","text":"forbid(principal, action, resource);"}],"reason":"candidate"}"#.into()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let version = body["version"].as_u64().unwrap();
    let (status, _, body) = server
        .send(
            "POST",
            &format!("/admin/v1/policies/{version}/shadow"),
            Some(&admin),
            Some(r#"{"reason":"what would a lockdown break?"}"#.into()),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (_, allowed) = server.decide(ALLOW).await;
    assert_eq!(
        allowed["decision"], true,
        "the shadow version is not enforced"
    );
    let (_, denied) = server
        .decide(r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#)
        .await;
    assert_eq!(denied["decision"], false);

    let differences = search(&server, "kind=notice&outcome=shadow_difference").await;
    assert_eq!(
        differences.len(),
        1,
        "only the allow differs: {differences:?}"
    );
    let detail = &differences[0]["entry"]["detail"];
    assert_eq!(detail["decision_id"], decision_id(&allowed));
    assert_eq!(detail["active"]["outcome"], "allow");
    assert_eq!(detail["shadow"]["outcome"], "deny");
    assert_eq!(detail["shadow"]["version"], version);

    let (_, _, status_body) = server
        .send("GET", "/admin/v1/policies/shadow", Some(&admin), None)
        .await;
    assert_eq!(status_body["decided"], 2);
    assert_eq!(status_body["differing"], 1);
    let (status, _, _) = server
        .send("DELETE", "/admin/v1/policies/shadow", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .send("DELETE", "/admin/v1/policies/shadow", Some(&admin), None)
        .await;
    assert_eq!(status, 404);
    let (_, _) = server.decide(ALLOW).await;
    assert_eq!(
        search(&server, "kind=notice&outcome=shadow_difference")
            .await
            .len(),
        1,
        "no shadow once stopped"
    );
    server.stop().await;
}

/// Waits up to 10 s for `check` to hold.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..100 {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn sinks_ship_every_committed_entry_and_retry_until_delivered() {
    use arbiter_server::sinks::{follow, SinkTarget};
    use std::sync::{Arc, Mutex};

    let server = TestServer::start(Bundle::demo()).await;
    let log_path = server.log_dir.path().join("decisions.sqlite3");
    let cursors = server.log_dir.path().join("sinks");

    // A webhook that fails its first delivery: the batch must come again, nothing lost.
    let received: Arc<Mutex<Vec<u64>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = {
        let (received, calls) = (Arc::clone(&received), Arc::clone(&calls));
        axum::Router::new().route(
            "/ingest",
            axum::routing::post(move |axum::Json(batch): axum::Json<Vec<Value>>| {
                let (received, calls) = (Arc::clone(&received), Arc::clone(&calls));
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let mut received = received.lock().unwrap();
                    received.extend(batch.iter().map(|entry| entry["seq"].as_u64().unwrap()));
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/ingest", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let file = server.log_dir.path().join("shipped.jsonl");
    let sinks = [
        tokio::spawn(follow(
            hook.parse::<SinkTarget>().unwrap(),
            log_path.clone(),
            cursors.clone(),
        )),
        tokio::spawn(follow(
            SinkTarget::File(file.clone()),
            log_path.clone(),
            cursors.clone(),
        )),
    ];

    let (_, first) = server.decide(ALLOW).await;
    let (_, second) = server.decide(APPROVAL).await;
    let total = LogDb::open_read_only(&log_path).unwrap().len().unwrap();
    let all_shipped = eventually(|| received.lock().unwrap().len() as u64 >= total).await;
    assert!(
        all_shipped,
        "the webhook got {:?} of {total}",
        received.lock().unwrap().len()
    );
    // Entries may still arrive (a change copied late); what arrived is a gap-free prefix.
    let received_now = received.lock().unwrap().clone();
    assert_eq!(
        received_now,
        (1..=received_now.len() as u64).collect::<Vec<u64>>(),
        "in order, no gap, no duplicate after the retry"
    );
    assert!(calls.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    let in_file = eventually(|| {
        std::fs::read_to_string(&file)
            .map(|text| text.contains(&decision_id(&first)) && text.contains(&decision_id(&second)))
            .unwrap_or(false)
    })
    .await;
    assert!(in_file, "the file sink has both decisions");
    for sink in sinks {
        sink.abort();
    }
    server.stop().await;
}

#[tokio::test]
async fn impact_lists_exactly_the_recorded_decisions_a_version_would_change() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let (_, allowed) = server.decide(ALLOW).await;
    let (_, approval) = server.decide(APPROVAL).await;
    let (_, denied) = server
        .decide(r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#)
        .await;
    assert_eq!(denied["decision"], false);
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(r#"{"sources":[{"name":"lockdown.cedar","text":"forbid(principal, action, resource);"}],"reason":"candidate"}"#.into()),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let version = body["version"].as_u64().unwrap();
    let (status, _, report) = server
        .send(
            "POST",
            &format!("/admin/v1/policies/{version}/impact"),
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    // A blanket forbid changes the allow and the approval, not the deny.
    assert_eq!(report["total"], 3);
    assert_eq!(report["changed"], 2);
    let changed: Vec<&str> = report["changed_decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|change| change["decision_id"].as_str().unwrap())
        .collect();
    assert!(
        changed.contains(&decision_id(&allowed).as_str()),
        "{report}"
    );
    assert!(
        changed.contains(&decision_id(&approval).as_str()),
        "{report}"
    );
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/policies/999/impact",
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 404);
    server.stop().await;
}
