//! Open sessions are closed when their agent is contained or their credential removed, without
//! waiting for the agent's next message; calls to tools no server lists are decided and logged.

use crate::support::*;
use arbiter_core::EntityRef;
use arbiter_gateway::gateway::DENIED;
use arbiter_gateway::{AgentIdentity, Gateway};
use serde_json::json;

fn copilot() -> EntityRef {
    EntityRef::new("Agent", "copilot")
}

fn intruder() -> EntityRef {
    EntityRef::new("Agent", "intruder")
}

/// The MCP error of a request that must have been answered with one.
fn service_error(error: rmcp::ServiceError) -> rmcp::ErrorData {
    match error {
        rmcp::ServiceError::McpError(error) => error,
        other => panic!("no MCP error: {other:?}"),
    }
}

/// A call that fails below MCP (the session is gone), not with an MCP error.
async fn call_fails_without_an_answer(client: &Client) {
    let params = rmcp::model::CallToolRequestParams::new("echo")
        .with_arguments(json!({"text": "after"}).as_object().cloned().unwrap());
    match client.peer().call_tool(params).await {
        Err(rmcp::ServiceError::McpError(error)) => {
            panic!("the session still answers: {error:?}")
        }
        Err(_) => {}
        Ok(result) => panic!("the call went through: {result:?}"),
    }
}

async fn quarantine_closes_open_http_sessions(mode: &str) {
    let arbiter = Arbiter::start().await;
    let tools = TestTools::default();
    let upstream = serve_mcp(tools.clone()).await;
    let decider = match mode {
        "in-process" => arbiter.in_process(),
        _ => arbiter.remote(),
    };
    let gateway = Gateway::start(
        config(json!([{"name": "test", "url": upstream}]), 0),
        decider,
    )
    .await
    .unwrap();
    let url = serve_started(gateway.clone()).await;
    let client = connect(&url, COPILOT_TOKEN).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "1"})).await.unwrap(),
        "1"
    );
    let mut raw = RawSession::open(&url, COPILOT_TOKEN).await;
    // Another agent's session, which must stay open.
    let bystander = connect(&url, INTRUDER_TOKEN).await;
    assert_eq!(gateway.open_sessions(&copilot()), 2, "{mode}");
    assert_eq!(gateway.open_sessions(&intruder()), 1, "{mode}");

    arbiter.quarantine("copilot").await;
    // The gateway ends the session's stream although the agent sends nothing.
    raw.ended().await;
    eventually(|| gateway.open_sessions(&copilot()) == 0).await;
    // The closed session refuses further use, and no new one is opened while contained.
    assert_eq!(raw.list_tools_status(COPILOT_TOKEN).await, 404, "{mode}");
    assert_eq!(
        raw_initialize(&url, COPILOT_TOKEN).await.status(),
        403,
        "{mode}"
    );
    // The rmcp client's session is gone too (its attempt to open a new one is refused).
    call_fails_without_an_answer(&client).await;
    assert_eq!(tools.reached(), 1, "{mode}: nothing reached the tool after");

    // The other agent's session was left alone: it still gets answers (its own deny).
    assert_eq!(gateway.open_sessions(&intruder()), 1, "{mode}");
    let error = call(&bystander, "echo", json!({"text": "x"}))
        .await
        .unwrap_err();
    assert_eq!(error.code.0, DENIED, "{mode}");
}

#[tokio::test]
async fn quarantine_closes_open_http_sessions_in_process() {
    tokio::time::timeout(BOUND, quarantine_closes_open_http_sessions("in-process"))
        .await
        .unwrap();
}

#[tokio::test]
async fn quarantine_closes_open_http_sessions_remote() {
    tokio::time::timeout(BOUND, quarantine_closes_open_http_sessions("remote"))
        .await
        .unwrap();
}

/// A quarantine of the agent's owner contains the agent too (the engine's cascade), and so
/// closes its session.
#[tokio::test]
async fn an_owner_quarantined_by_a_control_closes_the_agents_sessions() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let upstream = serve_mcp(TestTools::default()).await;
        let gateway = Gateway::start(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter.remote(),
        )
        .await
        .unwrap();
        let url = serve_started(gateway.clone()).await;
        let mut raw = RawSession::open(&url, COPILOT_TOKEN).await;
        let (status, body) = arbiter
            .admin(
                "POST",
                "/admin/v1/controls",
                json!({"target": {"type": "Human", "id": "alice"}, "level": "quarantine",
                       "reason": "alice's laptop was stolen"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        raw.ended().await;
        eventually(|| gateway.open_sessions(&copilot()) == 0).await;
        assert_eq!(raw_initialize(&url, COPILOT_TOKEN).await.status(), 403);
    })
    .await
    .unwrap();
}

/// A quarantine that leaves the gateway's actions in its safe set is not containment here:
/// the session stays open, and each message is decided as before.
#[tokio::test]
async fn a_quarantine_whose_safe_set_keeps_the_gateways_actions_leaves_sessions_open() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let gateway = Gateway::start(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter.in_process(),
        )
        .await
        .unwrap();
        let url = serve_started(gateway.clone()).await;
        let client = connect(&url, COPILOT_TOKEN).await;
        let (status, body) = arbiter
            .admin(
                "POST",
                "/admin/v1/controls",
                json!({"target": {"type": "Agent", "id": "copilot"}, "level": "quarantine",
                       "reason": "under review", "safe_actions": ["read_resource"]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        // Several checks' worth of time: the session is still there and still answers.
        tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
        assert_eq!(gateway.open_sessions(&copilot()), 1);
        let error = call(&client, "echo", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        let read = client
            .peer()
            .read_resource(rmcp::model::ReadResourceRequestParams::new("test://public"))
            .await
            .unwrap();
        assert_eq!(read.contents.len(), 1);
        assert_eq!(tools.reached(), 1, "only the safe read reached the server");
    })
    .await
    .unwrap();
}

async fn stdio_session_ends_when_its_agent_is_contained(mode: &str) {
    let arbiter = Arbiter::start().await;
    let tools = TestTools::default();
    let upstream = serve_mcp(tools.clone()).await;
    let decider = match mode {
        "in-process" => arbiter.in_process(),
        _ => arbiter.remote(),
    };
    let gateway = Gateway::start(
        config(json!([{"name": "test", "url": upstream}]), 0),
        decider,
    )
    .await
    .unwrap();
    let identity = AgentIdentity {
        subject: copilot(),
        acts_for: vec![EntityRef::new("Human", "alice")],
    };
    let (client_end, gateway_end) = tokio::io::duplex(64 * 1024);
    let serving = {
        let gateway = gateway.clone();
        let identity = identity.clone();
        tokio::spawn(async move {
            let (read, write) = tokio::io::split(gateway_end);
            arbiter_gateway::serve_session(&gateway, identity, (read, write)).await
        })
    };
    use rmcp::ServiceExt;
    let (read, write) = tokio::io::split(client_end);
    let client: Client = ().serve((read, write)).await.unwrap();
    assert_eq!(
        call(&client, "echo", json!({"text": "1"})).await.unwrap(),
        "1"
    );

    arbiter.quarantine("copilot").await;
    // The gateway ends the session by itself and says why; the client sees its end close.
    let ended = serving.await.unwrap().unwrap_err();
    assert!(ended.contains("contained"), "{mode}: {ended}");
    client.waiting().await.unwrap();
    assert_eq!(gateway.open_sessions(&copilot()), 0, "{mode}");
    assert_eq!(tools.reached(), 1, "{mode}");

    // A new stdio session for the contained agent is refused before it starts.
    let (_client_end, gateway_end) = tokio::io::duplex(64 * 1024);
    let (read, write) = tokio::io::split(gateway_end);
    let refused = arbiter_gateway::serve_session(&gateway, identity, (read, write))
        .await
        .unwrap_err();
    assert!(
        refused.contains("no session is opened"),
        "{mode}: {refused}"
    );
}

#[tokio::test]
async fn stdio_session_ends_when_its_agent_is_contained_in_process() {
    tokio::time::timeout(
        BOUND,
        stdio_session_ends_when_its_agent_is_contained("in-process"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn stdio_session_ends_when_its_agent_is_contained_remote() {
    tokio::time::timeout(
        BOUND,
        stdio_session_ends_when_its_agent_is_contained("remote"),
    )
    .await
    .unwrap();
}

/// The gateway's configuration with `agents` of the given credentials, as a file's text.
fn config_text(upstream: &str, tokens: &[(&str, &str)]) -> String {
    let agents: Vec<serde_json::Value> = tokens
        .iter()
        .map(|(token, agent)| {
            json!({"token_sha256": arbiter_gateway::config::token_hash(token),
                   "subject": {"type": "Agent", "id": agent}})
        })
        .collect();
    json!({"upstreams": [{"name": "test", "url": upstream}], "agents": agents}).to_string()
}

/// Replaces the file whole (write, then rename), as the documentation asks.
fn replace(path: &std::path::Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn a_removed_credential_stops_working_and_its_open_sessions_close() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("gateway.json");
        let both = config_text(
            &upstream,
            &[(COPILOT_TOKEN, "copilot"), (INTRUDER_TOKEN, "intruder")],
        );
        replace(&path, &both);
        let gateway = Gateway::start(
            arbiter_gateway::GatewayConfig::load(&path).unwrap(),
            arbiter.in_process(),
        )
        .await
        .unwrap();
        gateway.reload_credentials_from(&path);
        let url = serve_started(gateway.clone()).await;
        let client = connect(&url, COPILOT_TOKEN).await;
        let mut raw = RawSession::open(&url, COPILOT_TOKEN).await;
        let mut bystander = RawSession::open(&url, INTRUDER_TOKEN).await;
        assert_eq!(
            call(&client, "echo", json!({"text": "1"})).await.unwrap(),
            "1"
        );

        // Copilot's credential is removed from the file; the agent itself is untouched.
        replace(
            &path,
            &config_text(&upstream, &[(INTRUDER_TOKEN, "intruder")]),
        );
        raw.ended().await;
        eventually(|| gateway.open_sessions(&copilot()) == 0).await;
        // New requests with it are refused before MCP, in its old session or a new one.
        assert_eq!(raw.list_tools_status(COPILOT_TOKEN).await, 401);
        assert_eq!(raw_initialize(&url, COPILOT_TOKEN).await.status(), 401);
        call_fails_without_an_answer(&client).await;
        assert_eq!(tools.reached(), 1);
        // The other credential still works in its open session.
        assert_eq!(gateway.open_sessions(&intruder()), 1);
        assert_eq!(bystander.list_tools_status(INTRUDER_TOKEN).await, 200);

        // A file that cannot be parsed accepts no credential at all (fail closed)...
        replace(&path, "{ not json");
        bystander.ended().await;
        eventually(|| gateway.open_sessions(&intruder()) == 0).await;
        assert_eq!(raw_initialize(&url, INTRUDER_TOKEN).await.status(), 401);
        // ...until it is valid again.
        replace(&path, &both);
        loop {
            if raw_initialize(&url, COPILOT_TOKEN).await.status() == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_session_answers_only_the_credential_that_opened_it() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let upstream = serve_mcp(TestTools::default()).await;
        let url = serve_gateway(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter.in_process(),
        )
        .await;
        let raw = RawSession::open(&url, COPILOT_TOKEN).await;
        assert_eq!(raw.list_tools_status(COPILOT_TOKEN).await, 200);
        // Another agent's valid credential cannot use (or learn of) copilot's session.
        assert_eq!(raw.list_tools_status(INTRUDER_TOKEN).await, 404);
    })
    .await
    .unwrap();
}

async fn calls_to_unlisted_tools_are_decided_and_recorded(mode: &str) {
    let arbiter = Arbiter::start().await;
    let tools = TestTools::default();
    let upstream = serve_mcp(tools.clone()).await;
    let decider = match mode {
        "in-process" => arbiter.in_process(),
        _ => arbiter.remote(),
    };
    let url = serve_gateway(
        config(json!([{"name": "test", "url": upstream}]), 0),
        decider,
    )
    .await;
    let client = connect(&url, COPILOT_TOKEN).await;
    let error = call(&client, "drop_tables", json!({"really": true}))
        .await
        .unwrap_err();
    assert_eq!(error.code.0, DENIED, "{mode}: {error:?}");
    assert!(
        error
            .message
            .contains("no upstream server lists tool `drop_tables`"),
        "{mode}: {error:?}"
    );
    let id = decision_id(&error);
    assert!(error.message.contains(&id), "{mode}: {error:?}");
    // The attempt is in the log, as the engine decided it (the tests' policy forbids it).
    let entry = arbiter.logged(&id).await;
    assert_eq!(entry["entry"]["decision"]["outcome"], "deny", "{mode}");
    let mcp = &entry["entry"]["request"]["context"]["mcp"];
    assert_eq!(mcp["tool"], "drop_tables", "{mode}");
    assert_eq!(mcp["listed"], false, "{mode}");
    assert_eq!(mcp["arguments"], json!({"really": true}), "{mode}");
    assert_eq!(
        error.data.as_ref().unwrap()["arbiter"]["reason"],
        "tools the server does not list cannot be called",
        "{mode}"
    );
    assert_eq!(tools.reached(), 0, "{mode}");

    // Likewise a resource and a prompt no server lists.
    let error = client
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new("test://hidden"))
        .await
        .unwrap_err();
    let error = service_error(error);
    assert_eq!(error.code.0, DENIED, "{mode}: {error:?}");
    assert!(
        error
            .message
            .contains("no upstream server lists resource `test://hidden`"),
        "{mode}: {error:?}"
    );
    let entry = arbiter.logged(&decision_id(&error)).await;
    let mcp = &entry["entry"]["request"]["context"]["mcp"];
    assert_eq!(mcp["uri"], "test://hidden", "{mode}");
    assert_eq!(mcp["listed"], false, "{mode}");
    let error = client
        .peer()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("hidden"))
        .await
        .unwrap_err();
    let error = service_error(error);
    assert_eq!(error.code.0, DENIED, "{mode}: {error:?}");
    let entry = arbiter.logged(&decision_id(&error)).await;
    let mcp = &entry["entry"]["request"]["context"]["mcp"];
    assert_eq!(mcp["prompt"], "hidden", "{mode}");
    assert_eq!(mcp["server"], "test", "{mode}");
    assert_eq!(mcp["listed"], false, "{mode}");
    assert_eq!(tools.reached(), 0, "{mode}");
}

#[tokio::test]
async fn calls_to_unlisted_tools_are_decided_and_recorded_in_process() {
    tokio::time::timeout(
        BOUND,
        calls_to_unlisted_tools_are_decided_and_recorded("in-process"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn calls_to_unlisted_tools_are_decided_and_recorded_remote() {
    tokio::time::timeout(
        BOUND,
        calls_to_unlisted_tools_are_decided_and_recorded("remote"),
    )
    .await
    .unwrap();
}
