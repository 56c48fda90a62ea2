//! Real parts on loopback: an Arbiter server over SQLite with a durable decision log, an MCP
//! server written for the tests with rmcp, the gateway in front of it, and rmcp clients.

use arbiter_core::InventoryDocument;
use arbiter_engine::PolicySource;
use arbiter_gateway::{Decider, Gateway, GatewayConfig, RemoteArbiter};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Role, ServerConfig};
use arbiter_store::SqliteStore;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    GetPromptRequestParams, GetPromptResponse, GetPromptResult, ListPromptsResult,
    ListResourcesResult, ListToolsResult, PaginatedRequestParams, Prompt, PromptMessage,
    ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Resource,
    ResourceContents, Role as PromptRole, ServerCapabilities, ServerConfig as McpServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::{ServerHandler, ServiceExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Every test is bounded: nothing here may hang a run.
pub(crate) const BOUND: Duration = Duration::from_secs(60);

/// The tests' policies: the agent may use the test server, except `secret`; transfers over 100
/// are forbidden (an argument decides); tools the server marks destructive need a person.
pub(crate) const POLICIES: &str = r#"
@id("copilot-uses-test-tools")
permit(principal == Agent::"copilot", action in [Action::"call_tool", Action::"read_resource", Action::"get_prompt"], resource)
when { context.mcp.server == "test" || context.mcp.server == "fs" };

@id("alice-acts-through-her-agents")
permit(principal == Human::"alice", action == Action::"call_tool", resource)
when { context.mcp.server == "test" };

@id("secret-is-off-limits")
@reason("the secret tool is off-limits to agents")
forbid(principal, action == Action::"call_tool", resource == Tool::"test/secret");

@id("private-resources-are-off-limits")
@reason("private resources are off-limits to agents")
forbid(principal, action == Action::"read_resource", resource == McpResource::"test/test://private");

@id("no-big-transfers")
@reason("transfers over 100 need a different channel")
forbid(principal, action == Action::"call_tool", resource == Tool::"test/transfer")
when { context.mcp has arguments && context.mcp.arguments has amount && context.mcp.arguments.amount > 100 };

@id("fs-reads-only-in-public")
@reason("only files under public/ may be read")
forbid(principal, action == Action::"call_tool", resource)
when { context.mcp.server == "fs" && context.mcp has arguments && context.mcp.arguments has path
       && !(context.mcp.arguments.path like "*/public/*") };

@id("unlisted-tools-are-refused")
@reason("tools the server does not list cannot be called")
forbid(principal, action == Action::"call_tool", resource)
when { context.mcp has listed && !context.mcp.listed };

@id("fs-no-moves")
@reason("agents may not move files")
forbid(principal, action == Action::"call_tool", resource == Tool::"fs/move_file");

@id("destructive-needs-approval")
@approval("tools the server marks destructive need a person's approval for each use")
@approvers("Group::\"security\"")
forbid(principal, action == Action::"call_tool", resource)
when { context.mcp.annotations has destructiveHint && context.mcp.annotations.destructiveHint };
"#;

pub(crate) fn inventory() -> Value {
    json!({
        "groups": [{"id": "security"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "bob", "kind": "human", "member_of": [{"type": "Group", "id": "security"}]},
            {"id": "copilot", "kind": "ai_agent", "owner": "alice"},
            {"id": "intruder", "kind": "ai_agent", "owner": "alice"}
        ]
    })
}

/// A running Arbiter server: its state (for the in-process mode) and its loopback URL (for the
/// remote mode and the administration API).
pub(crate) struct Arbiter {
    pub(crate) state: Arc<AppState>,
    pub(crate) base: String,
    pub(crate) keys: HashMap<Role, String>,
    pub(crate) log_dir: tempfile::TempDir,
    http: reqwest::Client,
    /// The HTTP server runs on a runtime of its own, so that stopping it closes every
    /// connection (aborting the accept loop alone would leave kept-alive ones answering).
    runtime: std::sync::Mutex<Option<tokio::runtime::Runtime>>,
}

impl Arbiter {
    pub(crate) async fn start() -> Self {
        let mut bootstrap = Bootstrap {
            policies: vec![PolicySource {
                name: "gateway-tests.cedar".into(),
                text: POLICIES.into(),
            }],
            extra_keys: vec![
                ("gateway".into(), Role::EnforcementPoint),
                ("auditor".into(), Role::Auditor),
            ],
            ..Bootstrap::default()
        };
        let document: InventoryDocument = serde_json::from_value(inventory()).unwrap();
        bootstrap.inventory.push(document);
        let store = Arc::new(SqliteStore::open_in_memory().unwrap());
        let (state, new_keys) = AppState::open(
            store,
            None,
            bootstrap,
            ServerConfig::default(),
            metrics_handle(),
            now(),
        )
        .unwrap();
        let log_dir = tempfile::tempdir().unwrap();
        let log_path = log_dir.path().join("decisions.sqlite3");
        let log_config = arbiter_log::LogConfig::new(
            log_path.clone(),
            log_dir.path().join("log-key/ed25519.key"),
        );
        let (log, _writer) = arbiter_log::DecisionLog::open(log_config).unwrap();
        let state = Arc::new(
            state
                .with_log(log, log_path, arbiter_server::Redaction::default())
                .unwrap(),
        );
        let keys = new_keys
            .keys
            .into_iter()
            .map(|(_, role, key)| (role, key))
            .collect();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = state.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let _ = arbiter_server::serve(listener, served, std::future::pending()).await;
        });
        let arbiter = Arbiter {
            state,
            base,
            keys,
            log_dir,
            http: reqwest::Client::new(),
            runtime: std::sync::Mutex::new(Some(runtime)),
        };
        // An approver acting for bob (security group) decides approval requests.
        let (status, key) = arbiter
            .admin(
                "POST",
                "/admin/v1/keys",
                json!({"name": "bob-approves", "role": "approver", "acts_for": {"type": "Human", "id": "bob"}}),
            )
            .await;
        assert_eq!(status, 201, "{key}");
        let mut arbiter = arbiter;
        arbiter
            .keys
            .insert(Role::Approver, key["key"].as_str().unwrap().to_owned());
        arbiter
    }

    /// Stops serving HTTP (the remote mode then has no server).
    pub(crate) fn stop_http(&self) {
        if let Some(runtime) = self.runtime.lock().unwrap().take() {
            runtime.shutdown_background();
        }
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        role: Role,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url),
        };
        let mut request = request.bearer_auth(&self.keys[&role]);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn admin(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(method, path, Role::Admin, Some(body)).await
    }

    pub(crate) async fn quarantine(&self, agent: &str) {
        let (status, body) = self
            .admin(
                "POST",
                &format!("/admin/v1/identities/ai_agent/{agent}/lifecycle"),
                json!({"lifecycle": "quarantined", "reason": "prompt injection suspected"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub(crate) async fn approve(&self, approval_id: &str) {
        let (status, body) = self
            .send(
                "POST",
                &format!("/admin/v1/approvals/{approval_id}/approve"),
                Role::Approver,
                Some(json!({"reason": "checked with the customer"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// The decision's entry in the log.
    pub(crate) async fn logged(&self, decision_id: &str) -> Value {
        let (status, entry) = self
            .send(
                "GET",
                &format!("/admin/v1/decisions/{decision_id}"),
                Role::Auditor,
                None,
            )
            .await;
        assert_eq!(
            status, 200,
            "decision {decision_id} is not in the log: {entry}"
        );
        entry
    }

    /// Decisions in the log for an action, oldest first.
    pub(crate) async fn logged_decisions(&self, query: &str) -> Vec<Value> {
        let (status, found) = self
            .send(
                "GET",
                &format!("/admin/v1/decisions?kind=decision&{query}"),
                Role::Auditor,
                None,
            )
            .await;
        assert_eq!(status, 200, "{found}");
        found["entries"].as_array().unwrap().clone()
    }

    pub(crate) fn in_process(&self) -> Decider {
        Decider::InProcess(self.state.clone())
    }

    pub(crate) fn remote(&self) -> Decider {
        Decider::Remote(
            RemoteArbiter::new(&self.base, &self.keys[&Role::EnforcementPoint]).unwrap(),
        )
    }
}

impl Drop for Arbiter {
    fn drop(&mut self) {
        self.stop_http();
    }
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The MCP server written for the tests: four tools (one read-only, one whose argument matters,
/// one the server marks destructive, one forbidden), two resources and a prompt. It counts the
/// calls that reach it, so a test can prove that a refused call never did.
#[derive(Clone, Default)]
pub(crate) struct TestTools {
    pub(crate) calls: Arc<AtomicUsize>,
}

fn schema(properties: Value) -> Arc<serde_json::Map<String, Value>> {
    Arc::new(
        json!({"type": "object", "properties": properties})
            .as_object()
            .unwrap()
            .clone(),
    )
}

impl TestTools {
    pub(crate) fn tools() -> Vec<Tool> {
        vec![
            Tool::new(
                "echo",
                "Echo text back",
                schema(json!({"text": {"type": "string"}})),
            )
            .annotate(ToolAnnotations::new().read_only(true)),
            Tool::new(
                "transfer",
                "Move money",
                schema(json!({"amount": {"type": "integer"}})),
            ),
            Tool::new(
                "delete_record",
                "Delete a record",
                schema(json!({"id": {"type": "string"}})),
            )
            .annotate(ToolAnnotations::new().read_only(false).destructive(true)),
            Tool::new("secret", "Reveal the secret", schema(json!({}))),
        ]
    }

    pub(crate) fn reached(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl ServerHandler for TestTools {
    fn get_info(&self) -> McpServerConfig {
        McpServerConfig::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(Self::tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let arguments = Value::Object(request.arguments.unwrap_or_default());
        let text = match request.name.as_ref() {
            "echo" => arguments["text"].as_str().unwrap_or_default().to_owned(),
            "transfer" => format!("sent {}", arguments["amount"]),
            "delete_record" => format!("deleted {}", arguments["id"]),
            "secret" => "the secret".to_owned(),
            other => return Err(ErrorData::invalid_params(format!("no tool {other}"), None)),
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(vec![
            Resource::new("test://public", "public"),
            Resource::new("test://private", "private"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            format!("contents of {}", request.uri),
            request.uri.clone(),
        )])
        .into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "greet",
            Some("Greets someone"),
            None,
        )]))
    }

    async fn get_prompt(
        &self,
        _request: GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(GetPromptResult::new(vec![PromptMessage::new_text(PromptRole::User, "Hello!")]).into())
    }
}

/// Serves `handler` over Streamable HTTP on loopback; returns its `/mcp` URL.
pub(crate) async fn serve_mcp<H: ServerHandler + Clone + Send + Sync + 'static>(
    handler: H,
) -> String {
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

/// The bearer credential the tests' agent connects with, and another agent's.
pub(crate) const COPILOT_TOKEN: &str = "arbgw_test_copilot";
pub(crate) const INTRUDER_TOKEN: &str = "arbgw_test_intruder";

/// A gateway configuration with `upstreams` and both test agents.
pub(crate) fn config(upstreams: Value, approval_wait_seconds: u64) -> GatewayConfig {
    let text = json!({
        "upstreams": upstreams,
        "agents": [
            {"token_sha256": arbiter_gateway::config::token_hash(COPILOT_TOKEN),
             "subject": {"type": "Agent", "id": "copilot"}},
            {"token_sha256": arbiter_gateway::config::token_hash(INTRUDER_TOKEN),
             "subject": {"type": "Agent", "id": "intruder"}}
        ],
        "approvals": {"wait_seconds": approval_wait_seconds},
        "decision_timeout_ms": 2000,
        "upstream_timeout_ms": 10000
    })
    .to_string();
    GatewayConfig::parse(&text).unwrap()
}

/// Starts the gateway over Streamable HTTP on loopback; returns its `/mcp` URL.
pub(crate) async fn serve_gateway(config: GatewayConfig, decider: Decider) -> String {
    serve_started(Gateway::start(config, decider).await.unwrap()).await
}

/// Serves a started gateway over Streamable HTTP on loopback; returns its `/mcp` URL.
pub(crate) async fn serve_started(gateway: Gateway) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(arbiter_gateway::http::serve(
        listener,
        gateway,
        std::future::pending(),
    ));
    url
}

/// The MCP protocol version the raw sessions below speak.
const PROTOCOL: &str = "2025-06-18";

/// An MCP session over plain HTTP, to see what the gateway does to it without sending anything:
/// initialised, with the server's stream (`GET`) open.
pub(crate) struct RawSession {
    pub(crate) id: String,
    url: String,
    stream: reqwest::Response,
}

/// `initialize` over plain HTTP with `token`: the response, whatever its status.
pub(crate) async fn raw_initialize(url: &str, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": PROTOCOL, "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"}}}),
        )
        .send()
        .await
        .unwrap()
}

impl RawSession {
    pub(crate) async fn open(url: &str, token: &str) -> Self {
        let init = raw_initialize(url, token).await;
        assert_eq!(init.status(), 200, "initialize refused");
        let id = init.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        init.bytes().await.unwrap();
        let status = Self::post_in(
            url,
            &id,
            token,
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        assert!((200..300).contains(&status), "initialized: {status}");
        let stream = reqwest::Client::new()
            .get(url)
            .bearer_auth(token)
            .header("accept", "text/event-stream")
            .header("mcp-session-id", &id)
            .header("mcp-protocol-version", PROTOCOL)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200, "the session's stream");
        RawSession {
            id,
            url: url.to_owned(),
            stream,
        }
    }

    /// A message into session `id` with `token`: the HTTP status.
    pub(crate) async fn post_in(url: &str, id: &str, token: &str, message: Value) -> u16 {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-session-id", id)
            .header("mcp-protocol-version", PROTOCOL)
            .json(&message)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `tools/list` in this session with `token`: the HTTP status.
    pub(crate) async fn list_tools_status(&self, token: &str) -> u16 {
        Self::post_in(
            &self.url,
            &self.id,
            token,
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
        )
        .await
    }

    /// Returns once the gateway ends the session's stream. The client sends nothing meanwhile,
    /// so only the gateway can end it; the test's bound fails it if the gateway never does.
    pub(crate) async fn ended(&mut self) {
        while let Ok(Some(_)) = self.stream.chunk().await {}
    }
}

/// Waits (within the test's bound) until `done` holds, checking every 20 ms.
pub(crate) async fn eventually(mut done: impl FnMut() -> bool) {
    while !done() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) type Client = RunningService<RoleClient, ()>;

/// An MCP client over Streamable HTTP, with a bearer credential.
pub(crate) async fn connect(url: &str, token: &str) -> Client {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::transport::StreamableHttpClientTransport;
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(token),
    );
    ().serve(transport).await.unwrap()
}

/// The tools a client sees, by name.
pub(crate) async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    names.sort();
    names
}

/// Calls a tool: its text on success, the MCP error otherwise.
pub(crate) async fn call(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<String, ErrorData> {
    let params = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    match client.peer().call_tool(params).await {
        Ok(result) => Ok(result
            .content
            .iter()
            .filter_map(|block| block.as_text().map(|text| text.text.clone()))
            .collect::<Vec<_>>()
            .join("")),
        Err(rmcp::ServiceError::McpError(error)) => Err(error),
        Err(other) => panic!("transport failure: {other}"),
    }
}

/// The decision id an MCP error names.
pub(crate) fn decision_id(error: &ErrorData) -> String {
    error.data.as_ref().unwrap()["decision_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision id in {error:?}"))
        .to_owned()
}
