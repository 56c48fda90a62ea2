//! Runtime controls over HTTP: placed with a reason, effective on the next decision, listed,
//! lifted, and recorded in the change feed.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;

const READ_COPILOT: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantine_control_takes_effect_on_the_next_decision_and_lifts_cleanly() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);

    // Bad input names the field and places nothing.
    let (status, _, problem) = server
        .send(
            "POST",
            "/admin/v1/controls",
            Some(&admin),
            Some(r#"{"target":{"type":"Agent","id":"support-copilot"},"level":"downgrade","overlay":"no-such","reason":"x"}"#.into()),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["field"], "overlay");
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/controls",
            Some(&admin),
            Some(
                r#"{"target":{"type":"Agent","id":"nobody"},"level":"quarantine","reason":"x"}"#
                    .into(),
            ),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);

    let (status, _, placed) = server
        .send(
            "POST",
            "/admin/v1/controls",
            Some(&admin),
            Some(r#"{"target":{"type":"Agent","id":"support-copilot"},"level":"quarantine","safe_actions":["read"],"expires_in":3600,"reason":"anomalous tool use"}"#.into()),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    let id = placed["control"]["id"].as_str().unwrap().to_owned();
    let (_, decision) = server.decide(READ_COPILOT).await;
    assert_eq!(decision["decision"], false);
    let reason = decision["context"]["reason_admin"]["en"].as_str().unwrap();
    assert!(
        reason.contains(&id) && reason.contains("anomalous tool use"),
        "{reason}"
    );

    let (_, _, listed) = server
        .send("GET", "/admin/v1/controls", Some(&admin), None)
        .await;
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|control| control["id"] == id.as_str()));

    let (status, _, lifted) = server
        .send(
            "POST",
            &format!("/admin/v1/controls/{id}/lift"),
            Some(&admin),
            Some(r#"{"reason":"investigated: false positive"}"#.into()),
        )
        .await;
    assert_eq!(status, 200, "{lifted}");
    assert_eq!(server.decide(READ_COPILOT).await.1["decision"], true);
    // Lifting twice is a conflict; the history keeps it.
    let (status, _, _) = server
        .send(
            "POST",
            &format!("/admin/v1/controls/{id}/lift"),
            Some(&admin),
            Some(r#"{"reason":"again"}"#.into()),
        )
        .await;
    assert_eq!(status, 409);
    let (_, _, changes) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            Some(&admin),
            None,
        )
        .await;
    let kinds: Vec<&str> = changes
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|change| change["kind"].as_str())
        .collect();
    assert!(
        kinds.contains(&"control.place") && kinds.contains(&"control.lift"),
        "{kinds:?}"
    );
    server.stop().await;
}

/// A signal rule can place a runtime control: here a high risk score makes every allowed call
/// of the agent wait for a person, once, however often the signal is reported again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_rule_places_a_runtime_control_once() {
    let config = arbiter_server::ServerConfig {
        signal_rules: vec!["drift_score >= 70 => require_approval".parse().unwrap()],
        ..arbiter_server::ServerConfig::default()
    };
    let server = TestServer::start_configured(Bundle::demo(), config).await;
    let admin = server.key(Role::Admin).to_owned();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let report = |score: i64| {
        serde_json::json!({
            "subject": {"type": "Agent", "id": "support-copilot"},
            "name": "drift_score",
            "value": score,
            "source": "ueba",
            "observed_at": now,
            "ttl_seconds": 600
        })
        .to_string()
    };
    let controls = |listed: &serde_json::Value| listed.as_array().map_or(0, Vec::len);
    server
        .send("PUT", "/admin/v1/signals", Some(&admin), Some(report(20)))
        .await;
    let (_, _, listed) = server
        .send("GET", "/admin/v1/controls", Some(&admin), None)
        .await;
    assert_eq!(controls(&listed), 0);
    for score in [80, 85] {
        let (status, _, _) = server
            .send(
                "PUT",
                "/admin/v1/signals",
                Some(&admin),
                Some(report(score)),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, _, listed) = server
        .send("GET", "/admin/v1/controls", Some(&admin), None)
        .await;
    assert_eq!(controls(&listed), 1, "{listed}");
    assert_eq!(listed[0]["level"], "require_approval");
    assert_eq!(listed[0]["placed_by"], "signal-rules");
    assert!(listed[0]["reason"]
        .as_str()
        .unwrap()
        .contains("drift_score"));
    let (_, decision) = server.decide(READ_COPILOT).await;
    assert_eq!(
        decision["context"]["outcome"], "approval_required",
        "{decision}"
    );
    server.stop().await;
}
