//! The gateway in front of the rmcp test server: lists, allowed and denied calls, arguments,
//! approvals, quarantine, delegation, stdio and HTTP, in both decision modes.

use crate::support::*;
use arbiter_core::EntityRef;
use arbiter_gateway::gateway::{APPROVAL_REQUIRED, DENIED};
use arbiter_gateway::{AgentIdentity, Gateway};
use serde_json::json;

async fn setup(mode: &str, approval_wait_seconds: u64) -> (Arbiter, TestTools, Client) {
    let arbiter = Arbiter::start().await;
    let tools = TestTools::default();
    let upstream = serve_mcp(tools.clone()).await;
    let decider = match mode {
        "in-process" => arbiter.in_process(),
        _ => arbiter.remote(),
    };
    let gateway = serve_gateway(
        config(
            json!([{"name": "test", "url": upstream}]),
            approval_wait_seconds,
        ),
        decider,
    )
    .await;
    let client = connect(&gateway, COPILOT_TOKEN).await;
    (arbiter, tools, client)
}

async fn lists_show_only_what_the_agent_may_use(mode: &str) {
    let (_arbiter, _tools, client) = setup(mode, 0).await;
    // `secret` is forbidden; `delete_record` needs approval, so it is listed.
    assert_eq!(
        tool_names(&client).await,
        ["delete_record", "echo", "transfer"],
        "{mode}"
    );
    let resources: Vec<String> = client
        .list_all_resources()
        .await
        .unwrap()
        .into_iter()
        .map(|resource| resource.uri.clone())
        .collect();
    assert_eq!(resources, ["test://public"], "{mode}");
    let prompts = client.list_all_prompts().await.unwrap();
    assert_eq!(prompts.len(), 1, "{mode}");
}

#[tokio::test]
async fn lists_show_only_what_the_agent_may_use_in_process() {
    tokio::time::timeout(BOUND, lists_show_only_what_the_agent_may_use("in-process"))
        .await
        .unwrap();
}

#[tokio::test]
async fn lists_show_only_what_the_agent_may_use_remote() {
    tokio::time::timeout(BOUND, lists_show_only_what_the_agent_may_use("remote"))
        .await
        .unwrap();
}

async fn allowed_denied_and_argument_dependent_calls(mode: &str) {
    let (arbiter, tools, client) = setup(mode, 0).await;

    // Allowed: it reaches the tool, and the decision is in the log.
    assert_eq!(
        call(&client, "echo", json!({"text": "hi"})).await.unwrap(),
        "hi"
    );
    assert_eq!(tools.reached(), 1);
    let logged = arbiter
        .logged_decisions("action=call_tool&outcome=allow&resource=Tool::%22test/echo%22")
        .await;
    assert_eq!(logged.len(), 1, "{mode}: {logged:?}");
    // The result cites its decision.
    let result = client
        .peer()
        .call_tool(
            rmcp::model::CallToolRequestParams::new("echo")
                .with_arguments(json!({"text": "cited"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    let cited = result.meta.as_ref().unwrap().0[arbiter_gateway::gateway::DECISION_META_KEY]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        arbiter.logged(&cited).await["entry"]["decision"]["outcome"],
        "allow"
    );
    assert_eq!(tools.reached(), 2);
    let recorded = &logged[0]["entry"]["request"]["context"]["mcp"];
    assert_eq!(recorded["arguments"], json!({"text": "hi"}), "{mode}");
    assert_eq!(
        recorded["annotations"]["readOnlyHint"], true,
        "{mode}: the server's annotations are in the request"
    );

    // Denied: an MCP error with the reason for the user and the decision id; nothing forwarded.
    let error = call(&client, "secret", json!({})).await.unwrap_err();
    assert_eq!(error.code.0, DENIED, "{mode}");
    assert!(
        error
            .message
            .contains("the secret tool is off-limits to agents"),
        "{mode}: {error:?}"
    );
    let id = decision_id(&error);
    assert!(error.message.contains(&id), "{mode}: {error:?}");
    assert_eq!(
        arbiter.logged(&id).await["entry"]["decision"]["outcome"],
        "deny"
    );
    assert_eq!(
        tools.reached(),
        2,
        "{mode}: a denied call never reaches the tool"
    );

    // The same tool, decided by its arguments.
    assert_eq!(
        call(&client, "transfer", json!({"amount": 50}))
            .await
            .unwrap(),
        "sent 50"
    );
    let error = call(&client, "transfer", json!({"amount": 500}))
        .await
        .unwrap_err();
    assert_eq!(error.code.0, DENIED, "{mode}");
    assert!(
        error.message.contains("transfers over 100"),
        "{mode}: {error:?}"
    );
    assert_eq!(tools.reached(), 3, "{mode}");

    // Resources and prompts are decided the same way.
    let read = client
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new("test://public"))
        .await
        .unwrap();
    assert_eq!(read.contents.len(), 1);
    let refused = client
        .peer()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "test://private",
        ))
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("private resources are off-limits"),
        "{refused}"
    );
    client
        .peer()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("greet"))
        .await
        .unwrap();
    assert_eq!(tools.reached(), 5, "{mode}");
}

#[tokio::test]
async fn allowed_denied_and_argument_dependent_calls_in_process() {
    tokio::time::timeout(
        BOUND,
        allowed_denied_and_argument_dependent_calls("in-process"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn allowed_denied_and_argument_dependent_calls_remote() {
    tokio::time::timeout(BOUND, allowed_denied_and_argument_dependent_calls("remote"))
        .await
        .unwrap();
}

async fn approval_round_trip_without_waiting(mode: &str) {
    let (arbiter, tools, client) = setup(mode, 0).await;
    let error = call(&client, "delete_record", json!({"id": "c-7"}))
        .await
        .unwrap_err();
    assert_eq!(error.code.0, APPROVAL_REQUIRED, "{mode}");
    let approval = error.data.as_ref().unwrap()["approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(error.message.contains(&approval), "{mode}: {error:?}");
    assert_eq!(tools.reached(), 0);

    arbiter.approve(&approval).await;
    assert_eq!(
        call(&client, "delete_record", json!({"id": "c-7"}))
            .await
            .unwrap(),
        "deleted \"c-7\""
    );
    // The grant covered exactly one use of exactly that call.
    let again = call(&client, "delete_record", json!({"id": "c-7"}))
        .await
        .unwrap_err();
    assert_eq!(again.code.0, APPROVAL_REQUIRED, "{mode}");
    assert_eq!(tools.reached(), 1, "{mode}");
}

#[tokio::test]
async fn approval_round_trip_without_waiting_in_process() {
    tokio::time::timeout(BOUND, approval_round_trip_without_waiting("in-process"))
        .await
        .unwrap();
}

#[tokio::test]
async fn approval_round_trip_without_waiting_remote() {
    tokio::time::timeout(BOUND, approval_round_trip_without_waiting("remote"))
        .await
        .unwrap();
}

async fn approval_held_call_goes_through_once_approved(mode: &str) {
    let (arbiter, tools, client) = setup(mode, 20).await;
    let approver = async {
        // Find the pending request the held call opened, then approve it.
        loop {
            let (_, pending) = arbiter
                .send(
                    "GET",
                    "/admin/v1/approvals?state=pending",
                    arbiter_server::Role::Approver,
                    None,
                )
                .await;
            if let Some(id) = pending["approvals"][0]["id"].as_str() {
                arbiter.approve(id).await;
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let (answer, ()) = tokio::join!(
        call(&client, "delete_record", json!({"id": "c-9"})),
        approver
    );
    assert_eq!(answer.unwrap(), "deleted \"c-9\"", "{mode}");
    assert_eq!(tools.reached(), 1);
}

#[tokio::test]
async fn approval_held_call_goes_through_once_approved_in_process() {
    tokio::time::timeout(
        BOUND,
        approval_held_call_goes_through_once_approved("in-process"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn approval_held_call_goes_through_once_approved_remote() {
    tokio::time::timeout(
        BOUND,
        approval_held_call_goes_through_once_approved("remote"),
    )
    .await
    .unwrap();
}

/// Each message is decided on the latest snapshot, whatever the session watcher does: with the
/// watcher slowed down here, the session is still open and its very next message is denied
/// (`sessions.rs` tests that the watcher closes it).
async fn quarantine_cuts_off_an_open_session(mode: &str) {
    let arbiter = Arbiter::start().await;
    let tools = TestTools::default();
    let upstream = serve_mcp(tools.clone()).await;
    let decider = match mode {
        "in-process" => arbiter.in_process(),
        _ => arbiter.remote(),
    };
    let mut gateway_config = config(json!([{"name": "test", "url": upstream}]), 0);
    gateway_config.session_check_ms = 3_600_000;
    let client = connect(&serve_gateway(gateway_config, decider).await, COPILOT_TOKEN).await;
    assert_eq!(
        call(&client, "echo", json!({"text": "1"})).await.unwrap(),
        "1"
    );
    arbiter.quarantine("copilot").await;
    // The very next message of the same session is denied, and nothing is listed any more.
    let error = call(&client, "echo", json!({"text": "2"}))
        .await
        .unwrap_err();
    assert_eq!(error.code.0, DENIED, "{mode}");
    assert!(error.message.contains("quarantined"), "{mode}: {error:?}");
    assert!(tool_names(&client).await.is_empty(), "{mode}");
    assert_eq!(tools.reached(), 1, "{mode}");
}

#[tokio::test]
async fn quarantine_cuts_off_an_open_session_in_process() {
    tokio::time::timeout(BOUND, quarantine_cuts_off_an_open_session("in-process"))
        .await
        .unwrap();
}

#[tokio::test]
async fn quarantine_cuts_off_an_open_session_remote() {
    tokio::time::timeout(BOUND, quarantine_cuts_off_an_open_session("remote"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_credential_speaks_for_its_own_agent_only() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let gateway = serve_gateway(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter.in_process(),
        )
        .await;
        // The other agent has no permit: it sees nothing and may call nothing.
        let intruder = connect(&gateway, INTRUDER_TOKEN).await;
        assert!(tool_names(&intruder).await.is_empty());
        let error = call(&intruder, "echo", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED);
        // No credential, or an unknown one: refused before MCP starts.
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::ServiceExt;
        for token in [None, Some("arbgw_forged")] {
            let mut transport_config =
                StreamableHttpClientTransportConfig::with_uri(gateway.as_str());
            if let Some(token) = token {
                transport_config = transport_config.auth_header(token);
            }
            let transport =
                rmcp::transport::StreamableHttpClientTransport::from_config(transport_config);
            assert!(().serve(transport).await.is_err(), "{token:?}");
        }
        assert_eq!(tools.reached(), 0);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stdio_sessions_act_as_the_configured_identity_with_its_delegation_chain() {
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
        // The client's end and the gateway's end of a pipe, as stdin and stdout would be.
        let (client_end, gateway_end) = tokio::io::duplex(64 * 1024);
        let identity = AgentIdentity {
            subject: EntityRef::new("Agent", "copilot"),
            acts_for: vec![EntityRef::new("Human", "alice")],
        };
        tokio::spawn(async move {
            let (read, write) = tokio::io::split(gateway_end);
            let _ = arbiter_gateway::serve_session(&gateway, identity, (read, write)).await;
        });
        use rmcp::ServiceExt;
        let (read, write) = tokio::io::split(client_end);
        let client: Client = ().serve((read, write)).await.unwrap();
        assert_eq!(
            call(&client, "echo", json!({"text": "via stdio"}))
                .await
                .unwrap(),
            "via stdio"
        );
        // The decision names the chain: alice, then the agent.
        let logged = arbiter
            .logged_decisions("action=call_tool&entity=Human::%22alice%22")
            .await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(
            logged[0]["entry"]["request"]["context"]["delegation"],
            json!([{"type": "Human", "id": "alice"}])
        );
        assert_eq!(tools.reached(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn several_upstreams_are_told_apart_by_prefix() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let first = serve_mcp(TestTools::default()).await;
        let second = serve_mcp(TestTools::default()).await;
        let gateway = serve_gateway(
            config(
                json!([{"name": "test", "url": first}, {"name": "other", "url": second}]),
                0,
            ),
            arbiter.in_process(),
        )
        .await;
        let client = connect(&gateway, COPILOT_TOKEN).await;
        // Only the `test` server is permitted by the policies.
        assert_eq!(
            tool_names(&client).await,
            ["test__delete_record", "test__echo", "test__transfer"]
        );
        assert_eq!(
            call(&client, "test__echo", json!({"text": "a"}))
                .await
                .unwrap(),
            "a"
        );
        let error = call(&client, "other__echo", json!({"text": "a"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_held_call_that_a_person_denies_is_refused_naming_the_request() {
    tokio::time::timeout(BOUND, async {
        let (arbiter, tools, client) = setup("in-process", 20).await;
        let refuser = async {
            loop {
                let (_, pending) = arbiter
                    .send(
                        "GET",
                        "/admin/v1/approvals?state=pending",
                        arbiter_server::Role::Approver,
                        None,
                    )
                    .await;
                if let Some(id) = pending["approvals"][0]["id"].as_str() {
                    let (status, body) = arbiter
                        .send(
                            "POST",
                            &format!("/admin/v1/approvals/{id}/deny"),
                            arbiter_server::Role::Approver,
                            Some(json!({"reason": "not this customer"})),
                        )
                        .await;
                    assert_eq!(status, 200, "{body}");
                    return id.to_owned();
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        };
        let (answer, id) = tokio::join!(
            call(&client, "delete_record", json!({"id": "c-1"})),
            refuser
        );
        let error = answer.unwrap_err();
        assert_eq!(error.code.0, APPROVAL_REQUIRED, "{error:?}");
        assert!(
            error.message.contains(&format!("request {id} is denied")),
            "{error:?}"
        );
        assert_eq!(tools.reached(), 0);
    })
    .await
    .unwrap();
}

/// Filtering a list asks no person for anything, remotely too, even for a list of one item
/// (which once went to the single-evaluation endpoint, which always opens approval requests).
#[tokio::test]
async fn remote_list_filtering_opens_no_approval_request() {
    tokio::time::timeout(BOUND, async {
        let (arbiter, _tools, client) = setup("remote", 0).await;
        let (status, body) = arbiter
            .admin(
                "POST",
                "/admin/v1/controls",
                json!({"target": {"type": "Agent", "id": "copilot"}, "level": "require_approval",
                       "reason": "new agent: a person approves each use"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        // One prompt, three tools: shown, since a person may approve their use.
        assert_eq!(client.list_all_prompts().await.unwrap().len(), 1);
        assert_eq!(tool_names(&client).await.len(), 3);
        let (_, pending) = arbiter
            .send(
                "GET",
                "/admin/v1/approvals?state=pending",
                arbiter_server::Role::Approver,
                None,
            )
            .await;
        assert_eq!(pending["approvals"], json!([]), "{pending}");
    })
    .await
    .unwrap();
}
