//! What the gateway adds to a tool call, measured in one run on loopback: an MCP client calls an
//! rmcp server's `echo` tool directly, then through the gateway (decisions in process, and
//! through a remote `arbiter serve`), with the decision log durable (fsync per commit group)
//! and buffered. Prints p50/p90/p99 per call and calls per second (1 client, then 8 at once).
//!
//! Run: `cargo bench -p arbiter-gateway --bench gateway_latency` (figures in docs/benchmarks.md).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a benchmark binary fails loudly by design"
)]

use arbiter_engine::PolicySource;
use arbiter_gateway::{Decider, Gateway, GatewayConfig, RemoteArbiter};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Role, ServerConfig};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig as McpServerConfig,
    Tool, ToolAnnotations,
};
use rmcp::service::{RequestContext, RoleClient, RoleServer, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ServerHandler, ServiceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WARMUP: usize = 300;
const CALLS: usize = 3000;
const CONCURRENT_CLIENTS: usize = 8;
const TOKEN: &str = "arbgw_bench";

#[derive(Clone)]
struct Echo;

impl ServerHandler for Echo {
    fn get_info(&self) -> McpServerConfig {
        McpServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({"type": "object", "properties": {"text": {"type": "string"}}});
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "echo",
            "Echo text back",
            Arc::new(schema.as_object().unwrap().clone()),
        )
        .annotate(ToolAnnotations::new().read_only(true))]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let text = request
            .arguments
            .and_then(|arguments| arguments.get("text").cloned())
            .unwrap_or_default();
        Ok(CallToolResult::success(vec![ContentBlock::text(text.to_string())]).into())
    }
}

async fn listen(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

async fn serve_echo() -> String {
    let service = StreamableHttpService::new(
        || Ok(Echo),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    listen(axum::Router::new().nest_service("/mcp", service)).await
}

/// An Arbiter server with one permit, its log in `dir`; returns its state and its URL and
/// enforcement-point key.
async fn arbiter(
    dir: &std::path::Path,
    durability: arbiter_log::Durability,
) -> (Arc<AppState>, String, String) {
    let inventory = json!({"identities": [
        {"id": "alice", "kind": "human"},
        {"id": "copilot", "kind": "ai_agent", "owner": "alice"}
    ]});
    let bootstrap = Bootstrap {
        policies: vec![PolicySource {
            name: "bench.cedar".into(),
            text: r#"permit(principal == Agent::"copilot", action == Action::"call_tool", resource)
                     when { context.mcp.annotations has readOnlyHint && context.mcp.annotations.readOnlyHint };"#
                .into(),
        }],
        inventory: vec![serde_json::from_value(inventory).unwrap()],
        extra_keys: vec![("gateway".into(), Role::EnforcementPoint)],
        ..Bootstrap::default()
    };
    let store = Arc::new(arbiter_store::SqliteStore::open_in_memory().unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (state, keys) = AppState::open(
        store,
        None,
        bootstrap,
        ServerConfig::default(),
        metrics_handle(),
        now,
    )
    .unwrap();
    let log_path = dir.join("decisions.sqlite3");
    let mut log_config =
        arbiter_log::LogConfig::new(log_path.clone(), dir.join("log-key/ed25519.key"));
    log_config.durability = durability;
    let (log, _writer) = arbiter_log::DecisionLog::open(log_config).unwrap();
    let state = Arc::new(
        state
            .with_log(log, log_path, arbiter_server::Redaction::default())
            .unwrap(),
    );
    let key = keys
        .keys
        .into_iter()
        .find(|(_, role, _)| *role == Role::EnforcementPoint)
        .unwrap()
        .2;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let served = state.clone();
    tokio::spawn(async move {
        let _ = arbiter_server::serve(listener, served, std::future::pending()).await;
    });
    (state, base, key)
}

async fn gateway(upstream: &str, decider: Decider) -> String {
    let config = GatewayConfig::parse(
        &json!({
            "upstreams": [{"name": "bench", "url": upstream}],
            "agents": [{"token_sha256": arbiter_gateway::config::token_hash(TOKEN),
                        "subject": {"type": "Agent", "id": "copilot"}}]
        })
        .to_string(),
    )
    .unwrap();
    let gateway = Gateway::start(config, decider).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(arbiter_gateway::http::serve(
        listener,
        gateway,
        std::future::pending(),
    ));
    url
}

async fn client(url: &str) -> RunningService<RoleClient, ()> {
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).auth_header(TOKEN),
    );
    ().serve(transport).await.unwrap()
}

async fn one_call(client: &RunningService<RoleClient, ()>) {
    let arguments = json!({"text": "hello"}).as_object().unwrap().clone();
    let result = client
        .peer()
        .call_tool(CallToolRequestParams::new("echo").with_arguments(arguments))
        .await
        .unwrap();
    assert!(result.is_error != Some(true));
}

struct Figures {
    p50: Duration,
    p90: Duration,
    p99: Duration,
    sequential_per_second: f64,
    concurrent_per_second: f64,
}

async fn measure(url: &str) -> Figures {
    let single = client(url).await;
    for _ in 0..WARMUP {
        one_call(&single).await;
    }
    let mut samples = Vec::with_capacity(CALLS);
    let started = Instant::now();
    for _ in 0..CALLS {
        let call_started = Instant::now();
        one_call(&single).await;
        samples.push(call_started.elapsed());
    }
    let sequential_per_second = CALLS as f64 / started.elapsed().as_secs_f64();
    samples.sort();
    let at = |quantile: f64| {
        samples[((samples.len() as f64 * quantile) as usize).min(samples.len() - 1)]
    };

    let mut clients = Vec::new();
    for _ in 0..CONCURRENT_CLIENTS {
        clients.push(Arc::new(client(url).await));
    }
    let per_client = CALLS / CONCURRENT_CLIENTS;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for client in &clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..per_client {
                one_call(&client).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let concurrent_per_second =
        (per_client * CONCURRENT_CLIENTS) as f64 / started.elapsed().as_secs_f64();
    Figures {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        sequential_per_second,
        concurrent_per_second,
    }
}

fn micros(duration: Duration) -> String {
    format!("{:.0} µs", duration.as_secs_f64() * 1e6)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let upstream = serve_echo().await;
        let direct = measure(&upstream).await;
        println!(
            "{:<44} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10}",
            "path",
            "p50",
            "p90",
            "p99",
            "added p50",
            "calls/s 1",
            format!("calls/s {CONCURRENT_CLIENTS}")
        );
        let row = |name: &str, figures: &Figures| {
            let added = figures.p50.saturating_sub(direct.p50);
            println!(
                "{:<44} {:>8} {:>8} {:>8} {:>9} {:>9.0} {:>10.0}",
                name,
                micros(figures.p50),
                micros(figures.p90),
                micros(figures.p99),
                micros(added),
                figures.sequential_per_second,
                figures.concurrent_per_second
            );
        };
        row("direct (client -> MCP server)", &direct);
        for (label, durability) in [
            ("durable", arbiter_log::Durability::Durable),
            ("buffered", arbiter_log::Durability::Buffered),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let (state, base, key) = arbiter(dir.path(), durability).await;
            let in_process = gateway(&upstream, Decider::InProcess(state)).await;
            row(
                &format!("gateway, in process, log {label}"),
                &measure(&in_process).await,
            );
            let remote = gateway(
                &upstream,
                Decider::Remote(RemoteArbiter::new(&base, &key).unwrap()),
            )
            .await;
            row(
                &format!("gateway, remote arbiter serve, log {label}"),
                &measure(&remote).await,
            );
        }
    });
}
