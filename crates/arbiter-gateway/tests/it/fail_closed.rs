//! No decision, no call: when Arbiter or its decision log is unavailable, calls are refused
//! with an MCP error and never reach the tool.

use crate::support::*;
use arbiter_gateway::gateway::{DENIED, UNAVAILABLE};
use serde_json::json;

#[tokio::test]
async fn calls_are_refused_when_the_remote_server_is_gone() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let gateway = serve_gateway(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter.remote(),
        )
        .await;
        let client = connect(&gateway, COPILOT_TOKEN).await;
        assert_eq!(
            call(&client, "echo", json!({"text": "up"})).await.unwrap(),
            "up"
        );

        arbiter.stop_http();
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let error = call(&client, "echo", json!({"text": "down"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, UNAVAILABLE, "{error:?}");
        assert!(error.message.contains("nothing was forwarded"), "{error:?}");
        // Lists are refused too rather than shown unfiltered.
        assert!(client.list_all_tools().await.is_err());
        assert_eq!(
            tools.reached(),
            1,
            "the refused call never reached the tool"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn calls_are_refused_when_the_remote_server_does_not_answer_in_time() {
    tokio::time::timeout(BOUND, async {
        // A listener that accepts and never answers stands in for a hung server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hung = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let decider = arbiter_gateway::Decider::Remote(
            arbiter_gateway::RemoteArbiter::new(&base, "arb_not_needed").unwrap(),
        );
        let gateway = serve_gateway(
            config(json!([{"name": "test", "url": upstream}]), 0),
            decider,
        )
        .await;
        // Whether the agent is contained cannot be told, so no session is opened.
        let refused = raw_initialize(&gateway, COPILOT_TOKEN).await;
        assert_eq!(refused.status(), 503);
        assert_eq!(tools.reached(), 0);
        hung.abort();
    })
    .await
    .unwrap();
}

/// Another writer holds the log database's write lock: the log cannot commit, so the decision
/// cannot be recorded, so it is a deny (in process, through the server's own recording path).
#[tokio::test]
async fn calls_are_refused_when_the_decision_log_cannot_be_written() {
    tokio::time::timeout(BOUND, async {
        let arbiter = Arbiter::start().await;
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        // Longer than the log's 5 s busy timeout, so the log's own failure is what answers.
        let mut gateway_config = config(json!([{"name": "test", "url": upstream}]), 0);
        gateway_config.decision_timeout_ms = 20_000;
        let gateway = serve_gateway(gateway_config, arbiter.in_process()).await;
        let client = connect(&gateway, COPILOT_TOKEN).await;
        assert_eq!(
            call(&client, "echo", json!({"text": "up"})).await.unwrap(),
            "up"
        );

        let lock =
            rusqlite::Connection::open(arbiter.log_dir.path().join("decisions.sqlite3")).unwrap();
        lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let error = call(&client, "echo", json!({"text": "unrecorded"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        assert!(
            error.message.contains("cannot be recorded"),
            "the user is told why: {error:?}"
        );
        assert_eq!(
            tools.reached(),
            1,
            "the unrecorded call never reached the tool"
        );
        lock.execute_batch("ROLLBACK").unwrap();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_in_process_state_without_a_log_decides_nothing() {
    tokio::time::timeout(BOUND, async {
        use arbiter_server::{metrics_handle, AppState, Bootstrap, ServerConfig};
        let store = std::sync::Arc::new(arbiter_store::SqliteStore::open_in_memory().unwrap());
        let (state, _) = AppState::open(
            store,
            None,
            Bootstrap {
                policies: vec![arbiter_engine::PolicySource {
                    name: "all.cedar".into(),
                    text: "permit(principal, action, resource);".into(),
                }],
                inventory: vec![serde_json::from_value(inventory()).unwrap()],
                ..Bootstrap::default()
            },
            ServerConfig::default(),
            metrics_handle(),
            now(),
        )
        .unwrap();
        let tools = TestTools::default();
        let upstream = serve_mcp(tools.clone()).await;
        let gateway = serve_gateway(
            config(json!([{"name": "test", "url": upstream}]), 0),
            arbiter_gateway::Decider::InProcess(std::sync::Arc::new(state)),
        )
        .await;
        let client = connect(&gateway, COPILOT_TOKEN).await;
        let error = call(&client, "echo", json!({"text": "x"}))
            .await
            .unwrap_err();
        assert_eq!(error.code.0, DENIED, "{error:?}");
        assert_eq!(tools.reached(), 0);
    })
    .await
    .unwrap();
}
