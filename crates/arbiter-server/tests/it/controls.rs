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
