//! The administration API: who may call what, changes that take effect on the next decision,
//! policy versions and rollback, keys, and persistence across restarts.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::json;

const READ_COPILOT: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;

/// Every route, with the built-in action that guards it. Restated here on purpose: the test
/// checks the built-in policies against an independent statement of who may do what.
fn routes() -> Vec<(&'static str, &'static str, Option<String>, &'static str)> {
    let identity = json!({"id": "matrix-bot", "kind": "ai_agent", "owner": "alice"}).to_string();
    vec![
        ("GET", "/health", None, "health.read"),
        ("GET", "/ready", None, "health.read"),
        ("GET", "/openapi.json", None, "discovery.read"),
        ("GET", "/.well-known/authzen-configuration", None, "discovery.read"),
        ("GET", "/metrics", None, "metrics.read"),
        ("POST", "/access/v1/evaluation", Some(READ_COPILOT.to_owned()), "decide"),
        ("POST", "/access/v1/evaluations", Some(format!(r#"{{"evaluations":[{READ_COPILOT}]}}"#)), "decide"),
        ("POST", "/access/v1/search/subject", Some(r#"{"subject":{"type":"Agent"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"}}"#.to_owned()), "decide"),
        ("POST", "/access/v1/search/resource", Some(r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"read"},"resource":{"type":"Dataset"}}"#.to_owned()), "decide"),
        ("POST", "/access/v1/search/action", Some(r#"{"subject":{"type":"Agent","id":"support-copilot"},"resource":{"type":"Dataset","id":"help-center"}}"#.to_owned()), "decide"),
        ("GET", "/admin/v1/identities", None, "identities.read"),
        ("GET", "/admin/v1/identities/ai_agent/support-copilot", None, "identities.read"),
        ("POST", "/admin/v1/identities", Some(identity.clone()), "identities.write"),
        ("PUT", "/admin/v1/identities/ai_agent/matrix-bot", Some(identity), "identities.write"),
        ("DELETE", "/admin/v1/identities/ai_agent/nobody", None, "identities.write"),
        ("POST", "/admin/v1/identities/ai_agent/nobody/lifecycle", Some(r#"{"lifecycle":"suspended","reason":"matrix"}"#.to_owned()), "lifecycle.write"),
        ("GET", "/admin/v1/groups", None, "inventory.read"),
        ("PUT", "/admin/v1/groups", Some(r#"{"id":"matrix-group"}"#.to_owned()), "inventory.write"),
        ("GET", "/admin/v1/resources", None, "inventory.read"),
        ("PUT", "/admin/v1/resources", Some(r#"{"type":"Dataset","id":"matrix-data","sensitivity":"public"}"#.to_owned()), "inventory.write"),
        ("GET", "/admin/v1/signals", None, "signals.read"),
        ("PUT", "/admin/v1/signals", Some(r#"{"subject":{"type":"Agent","id":"triage-agent"},"name":"risk_score","value":5,"source":"matrix","observed_at":0,"ttl_seconds":60}"#.to_owned()), "signals.write"),
        ("GET", "/admin/v1/policies", None, "policies.read"),
        ("GET", "/admin/v1/policies/1", None, "policies.read"),
        ("POST", "/admin/v1/policies/validate", Some(r#"{"sources":[{"name":"p","text":"permit(principal, action, resource);"}]}"#.to_owned()), "policies.read"),
        ("POST", "/admin/v1/policies", Some(r#"{"sources":[{"name":"p","text":"forbid(principal, action, resource);"}],"reason":"matrix"}"#.to_owned()), "policies.write"),
        ("POST", "/admin/v1/policies/999/activate", Some(r#"{"reason":"matrix"}"#.to_owned()), "policies.activate"),
        ("POST", "/admin/v1/policies/rollback", Some(r#"{"version":999,"reason":"matrix"}"#.to_owned()), "policies.activate"),
        ("GET", "/admin/v1/keys", None, "keys.read"),
        ("POST", "/admin/v1/keys", Some(r#"{"name":"matrix","role":"auditor"}"#.to_owned()), "keys.write"),
        ("DELETE", "/admin/v1/keys/nonexistent", None, "keys.write"),
        ("GET", "/admin/v1/changes", None, "changes.read"),
        ("GET", "/admin/v1/controls", None, "identities.read"),
        ("POST", "/admin/v1/controls", Some(r#"{"target":{"type":"Agent","id":"support-copilot"},"level":"observe","reason":"matrix"}"#.to_owned()), "lifecycle.write"),
        ("POST", "/admin/v1/controls/ctl_none/lift", Some(r#"{"reason":"matrix"}"#.to_owned()), "lifecycle.write"),
        ("GET", "/admin/v1/debt?suggestions=0", None, "debt.read"),
        ("GET", "/admin/v1/debt/report.html?suggestions=0", None, "debt.read"),
        ("POST", "/admin/v1/debt/runs", Some(r#"{"suggestions":0}"#.to_owned()), "debt.write"),
        ("GET", "/admin/v1/debt/runs/latest", None, "debt.read"),
        ("POST", "/admin/v1/debt/publish", Some(r#"{"reason":"matrix"}"#.to_owned()), "debt.write"),
        // Also checks identities.write, which every role holding debt.write holds too.
        ("POST", "/admin/v1/debt/suggestions/lm-none/apply", Some(r#"{"reason":"matrix"}"#.to_owned()), "debt.write"),
    ]
}

fn may(role: Option<Role>, action: &str) -> bool {
    if matches!(action, "health.read" | "discovery.read") {
        return true;
    }
    let reads = [
        "identities.read",
        "inventory.read",
        "signals.read",
        "policies.read",
    ];
    match role {
        None => false,
        Some(Role::Admin) => true,
        Some(Role::Operator) => {
            reads.contains(&action)
                || matches!(
                    action,
                    "identities.write"
                        | "lifecycle.write"
                        | "inventory.write"
                        | "signals.write"
                        | "policies.write"
                        | "policies.activate"
                        | "changes.read"
                        | "metrics.read"
                        | "debt.read"
                        | "debt.write"
                )
        }
        Some(Role::Approver) => reads.contains(&action),
        Some(Role::Auditor) => {
            reads.contains(&action)
                || matches!(
                    action,
                    "changes.read" | "keys.read" | "metrics.read" | "debt.read"
                )
        }
        Some(Role::EnforcementPoint) => action == "decide",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_route_matrix_has_no_unexpected_success() {
    let server = TestServer::start(Bundle::demo()).await;
    let mut callers: Vec<(Option<Role>, Option<String>)> = vec![(None, None)];
    for role in Role::ALL {
        callers.push((Some(role), Some(server.key(role).to_owned())));
    }
    callers.push((None, Some("arb_not_a_real_key".to_owned())));
    let mut checked = 0;
    let mut unexpected = Vec::new();
    for (method, path, body, action) in routes() {
        for (role, key) in &callers {
            let (status, _, _) = server
                .send(method, path, key.as_deref(), body.clone())
                .await;
            let allowed = may(*role, action) && !(role.is_none() && key.is_some());
            let denied = status == 401 || status == 403;
            checked += 1;
            if allowed == denied || (!allowed && (200..300).contains(&status)) {
                unexpected.push(format!(
                    "{method} {path} as {role:?} (key: {}): {status}",
                    key.is_some()
                ));
            }
        }
    }
    println!("role x route matrix: {checked} requests");
    assert!(
        unexpected.is_empty(),
        "unexpected answers:\n{}",
        unexpected.join("\n")
    );
    assert_eq!(checked, routes().len() * 7);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_and_reinstate_take_effect_on_the_next_decision() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            Some(&admin),
            Some(r#"{"lifecycle":"quarantined","reason":"prompt injection suspected"}"#.into()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, decision) = server.decide(READ_COPILOT).await;
    assert_eq!(decision["decision"], false);
    assert_eq!(decision["context"]["outcome"], "deny");
    assert!(decision["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains("quarantined"));
    // Recorded with who and why.
    let (_, _, changes) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            Some(&admin),
            None,
        )
        .await;
    let change = changes
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|change| change["kind"] == "identity.lifecycle")
        .unwrap();
    assert_eq!(change["reason"], "prompt injection suspected");
    assert_eq!(change["actor"]["role"], "admin");
    // A lifecycle change without a reason is refused, and changes nothing.
    let (status, _, problem) = server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            Some(&admin),
            Some(r#"{"lifecycle":"active","reason":" "}"#.into()),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "reason");
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], false);
    server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            Some(&admin),
            Some(r#"{"lifecycle":"active","reason":"cleared"}"#.into()),
        )
        .await;
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_versions_activate_and_roll_back_in_one_call() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    // An invalid upload is refused with line and column, and nothing changes.
    let (status, _, problem) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(r#"{"sources":[{"name":"bad.cedar","text":"permit(principal,\n action resource);"}],"reason":"typo"}"#.into()),
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["source"], "bad.cedar", "{problem}");
    assert_eq!(problem["errors"][0]["line"], 2, "{problem}");
    assert!(problem["errors"][0]["column"].is_u64(), "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("bad.cedar:2:"),
        "{problem}"
    );
    // Version 2 forbids everything and is activated at upload.
    let lockdown = json!({"sources": [{"name": "lockdown.cedar", "text": "forbid(principal, action, resource);"}],
                          "reason": "incident lockdown", "activate": true});
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(lockdown.to_string()),
        )
        .await;
    assert_eq!((status, body["version"].as_u64()), (201, Some(2)), "{body}");
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], false);
    // Roll back to the previous version in one call.
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/policies/rollback",
            Some(&admin),
            Some(r#"{"reason":"incident over"}"#.into()),
        )
        .await;
    assert_eq!(
        (status, body["active_version"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    let (_, _, versions) = server
        .send("GET", "/admin/v1/policies", Some(&admin), None)
        .await;
    assert_eq!(
        versions.as_array().unwrap().len(),
        2,
        "every version is kept"
    );

    // Compare and swap: a version built from version 2 is not activated now that 1 is active
    // (it would undo the rollback), neither at upload nor later; built from 1, it is.
    let mut stale = lockdown.clone();
    stale["expected_active"] = json!(2);
    let (status, _, problem) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(stale.to_string()),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("active policy version is 1, not 2"),
        "{problem}"
    );
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    let (status, _, problem) = server
        .send(
            "POST",
            "/admin/v1/policies/2/activate",
            Some(&admin),
            Some(r#"{"reason":"again","expected_active":3}"#.into()),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    let mut current = lockdown.clone();
    current["expected_active"] = json!(1);
    let (status, _, body) = server
        .send(
            "POST",
            "/admin/v1/policies",
            Some(&admin),
            Some(current.to_string()),
        )
        .await;
    assert_eq!(
        (status, body["active"].as_bool()),
        (201, Some(true)),
        "{body}"
    );
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_shown_once_and_revocation_is_immediate() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let (status, _, created) = server
        .send(
            "POST",
            "/admin/v1/keys",
            Some(&admin),
            Some(r#"{"name":"gw-2","role":"enforcement_point"}"#.into()),
        )
        .await;
    assert_eq!(status, 201);
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, _, _) = server
        .send(
            "POST",
            "/access/v1/evaluation",
            Some(&key),
            Some(READ_COPILOT.into()),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, listed) = server
        .send("GET", "/admin/v1/keys", Some(&admin), None)
        .await;
    assert!(
        !listed.to_string().contains(&key),
        "a key is never shown again"
    );
    assert!(
        !listed.to_string().contains("hash"),
        "hashes stay in the store"
    );
    let (status, _, _) = server
        .send(
            "DELETE",
            &format!("/admin/v1/keys/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .send(
            "POST",
            "/access/v1/evaluation",
            Some(&key),
            Some(READ_COPILOT.into()),
        )
        .await;
    assert_eq!(status, 401);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("arbiter-restart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("arbiter.sqlite3");
    let _ = std::fs::remove_file(&path);
    let server = TestServer::start_at(&path, Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let gateway = server.key(Role::EnforcementPoint).to_owned();
    server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            Some(&admin),
            Some(r#"{"lifecycle":"revoked","reason":"decommissioned"}"#.into()),
        )
        .await;
    let new_agent = json!({"id": "night-bot", "kind": "ai_agent", "owner": "bob",
                           "member_of": [{"type": "Group", "id": "support-agents"}]});
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/identities",
            Some(&admin),
            Some(new_agent.to_string()),
        )
        .await;
    assert_eq!(status, 201);
    server.stop().await;

    // Restart on the same file: no bootstrap, no new admin key, the same state.
    let server = TestServer::start_at(&path, Bundle::default()).await;
    assert!(
        !server.keys.contains_key(&Role::Admin),
        "the bootstrap admin key is minted only once"
    );
    let (status, _, identity) = server
        .send(
            "GET",
            "/admin/v1/identities/ai_agent/night-bot",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((status, identity["owner"].as_str()), (200, Some("bob")));
    let (_, _, decision) = server
        .send(
            "POST",
            "/access/v1/evaluation",
            Some(&gateway),
            Some(READ_COPILOT.into()),
        )
        .await;
    assert!(
        decision["context"]["reason_admin"]["en"]
            .as_str()
            .unwrap()
            .contains("revoked"),
        "{decision}"
    );
    server.stop().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn revocation_is_permanent() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let revoke =
        |lifecycle: &str| json!({"lifecycle": lifecycle, "reason": "leaked token"}).to_string();
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/identities/ai_agent/triage-agent/lifecycle",
            Some(&admin),
            Some(revoke("revoked")),
        )
        .await;
    assert_eq!(status, 200);
    for lifecycle in ["active", "quarantined", "suspended"] {
        let (status, _, problem) = server
            .send(
                "POST",
                "/admin/v1/identities/ai_agent/triage-agent/lifecycle",
                Some(&admin),
                Some(revoke(lifecycle)),
            )
            .await;
        assert_eq!(status, 409, "{lifecycle}: {problem}");
        assert!(problem["detail"].as_str().unwrap().contains("permanent"));
    }
    // Nor can a full replacement bring it back.
    let (status, _, _) = server
        .send(
            "PUT",
            "/admin/v1/identities/ai_agent/triage-agent",
            Some(&admin),
            Some(json!({"id": "triage-agent", "kind": "ai_agent", "owner": "alice", "lifecycle": "active"}).to_string()),
        )
        .await;
    assert_eq!(status, 409);
    let (_, answer) = server
        .decide(r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#)
        .await;
    assert_eq!(answer["decision"], false);
    assert!(answer["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains("revoked"));
    server.stop().await;
}

#[tokio::test]
async fn a_signal_rule_quarantines_the_subject_and_records_the_signal_that_did_it() {
    let config = arbiter_server::ServerConfig {
        signal_rules: vec!["anomaly_score >= 80 => quarantined".parse().unwrap()],
        ..arbiter_server::ServerConfig::default()
    };
    let server = TestServer::start_configured(Bundle::demo(), config).await;
    let admin = server.key(Role::Admin).to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let report = |score: i64| {
        json!({
            "subject": {"type": "Agent", "id": "support-copilot"},
            "name": "anomaly_score",
            "value": score,
            "source": "ueba",
            "observed_at": now,
            "ttl_seconds": 600
        })
        .to_string()
    };
    let ask = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;
    let lifecycle =
        |body: &serde_json::Value| body["lifecycle"].as_str().unwrap_or("active").to_owned();

    let (status, _, _) = server
        .send("PUT", "/admin/v1/signals", Some(&admin), Some(report(50)))
        .await;
    assert_eq!(status, 200);
    let (_, _, agent) = server
        .send(
            "GET",
            "/admin/v1/identities/ai_agent/support-copilot",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(lifecycle(&agent), "active");
    assert_eq!(server.decide(ask).await.1["decision"], true);

    let (status, _, _) = server
        .send("PUT", "/admin/v1/signals", Some(&admin), Some(report(92)))
        .await;
    assert_eq!(status, 200);
    let (_, _, agent) = server
        .send(
            "GET",
            "/admin/v1/identities/ai_agent/support-copilot",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(lifecycle(&agent), "quarantined");
    let (_, denied) = server.decide(ask).await;
    assert_eq!(denied["decision"], false);
    assert!(denied["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains("quarantined"));

    let (_, _, changes) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            Some(&admin),
            None,
        )
        .await;
    let last = changes.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "identity.lifecycle");
    assert_eq!(last["actor"]["id"], "signal-rules");
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("anomaly_score` = 92"),
        "{last}"
    );
    server.stop().await;
}
