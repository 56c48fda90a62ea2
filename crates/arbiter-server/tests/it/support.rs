//! A real server on 127.0.0.1:0 over a real SQLite store, and a small HTTP client for tests.

use arbiter_core::InventoryDocument;
use arbiter_engine::{PolicySource, Schema};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Role, ServerConfig};
use arbiter_store::{SqliteStore, Store};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A running server; dropped at the end of the test (its runtime shuts it down).
pub(crate) struct TestServer {
    pub(crate) base: String,
    /// Keys minted at start, by role.
    pub(crate) keys: HashMap<Role, String>,
    pub(crate) client: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// The decision log's folder (every test server keeps a durable log).
    pub(crate) log_dir: Arc<tempfile::TempDir>,
}

/// What to load.
#[derive(Default)]
pub(crate) struct Bundle {
    pub(crate) policies: Vec<(String, String)>,
    pub(crate) inventory: Option<String>,
    pub(crate) cedar_entities: Option<String>,
    pub(crate) schema: Option<String>,
}

impl Bundle {
    pub(crate) fn demo() -> Self {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo");
        let read = |name: &str| std::fs::read_to_string(format!("{root}/{name}")).unwrap();
        // Rebase the demo's signals to now, so they are fresh.
        let mut inventory: InventoryDocument =
            serde_json::from_str(&read("inventory.json")).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for signal in &mut inventory.signals {
            signal.observed_at = now - 60;
        }
        Bundle {
            policies: vec![("policies.cedar".into(), read("policies.cedar"))],
            inventory: Some(serde_json::to_string(&inventory).unwrap()),
            cedar_entities: None,
            schema: Some(read("schema.cedarschema")),
        }
    }
}

impl TestServer {
    /// Starts a server over an in-memory store.
    pub(crate) async fn start(bundle: Bundle) -> Self {
        Self::start_with(Arc::new(SqliteStore::open_in_memory().unwrap()), bundle).await
    }

    /// Starts a server over an in-memory store with a non-default configuration.
    pub(crate) async fn start_configured(bundle: Bundle, config: ServerConfig) -> Self {
        Self::start_full(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            bundle,
            config,
        )
        .await
    }

    /// Starts a server over a database file (for restart tests).
    pub(crate) async fn start_at(path: &Path, bundle: Bundle) -> Self {
        Self::start_with(Arc::new(SqliteStore::open(path).unwrap()), bundle).await
    }

    async fn start_with(store: Arc<dyn Store>, bundle: Bundle) -> Self {
        Self::start_full(store, bundle, ServerConfig::default()).await
    }

    async fn start_full(store: Arc<dyn Store>, bundle: Bundle, config: ServerConfig) -> Self {
        let schema = bundle
            .schema
            .as_ref()
            .map(|text| Schema::parse("schema", text).unwrap());
        let mut bootstrap = Bootstrap {
            policies: bundle
                .policies
                .iter()
                .map(|(name, text)| PolicySource {
                    name: name.clone(),
                    text: text.clone(),
                })
                .collect(),
            extra_keys: Role::ALL
                .into_iter()
                .filter(|role| *role != Role::Admin)
                .map(|role| (format!("test-{role}"), role))
                .collect(),
            ..Bootstrap::default()
        };
        if let Some(inventory) = &bundle.inventory {
            bootstrap
                .inventory
                .push(serde_json::from_str(inventory).unwrap());
        }
        if let Some(entities) = &bundle.cedar_entities {
            bootstrap
                .cedar_entities
                .push(serde_json::from_str(entities).unwrap());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let (state, new_keys) =
            AppState::open(store, schema, bootstrap, config, metrics_handle(), now).unwrap();
        let log_dir = Arc::new(tempfile::tempdir().unwrap());
        let log_path = log_dir.path().join("decisions.sqlite3");
        let mut log_config = arbiter_log::LogConfig::new(
            log_path.clone(),
            log_dir.path().join("log-key/ed25519.key"),
        );
        log_config.witness_path = Some(log_dir.path().join("checkpoints.jsonl"));
        let (log, _writer) = arbiter_log::DecisionLog::open(log_config).unwrap();
        let state = state
            .with_log(log, log_path, arbiter_server::Redaction::default())
            .unwrap();
        let keys = new_keys
            .keys
            .into_iter()
            .map(|(_, role, key)| (role, key))
            .collect();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            arbiter_server::serve(listener, Arc::new(state), async {
                let _ = signal.await;
            })
            .await
            .unwrap();
        });
        TestServer {
            base,
            keys,
            client: reqwest::Client::new(),
            shutdown: Some(shutdown),
            task: Some(task),
            log_dir,
        }
    }

    /// Stops the server and waits for it to finish.
    pub(crate) async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }

    pub(crate) fn key(&self, role: Role) -> &str {
        &self.keys[&role]
    }

    /// Sends a request; returns status, headers and the body as JSON (or `Value::Null`).
    pub(crate) async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        self.send_with(&self.client, method, path, key, body).await
    }

    /// Like [`send`](Self::send), on a connection of its own: for a request after which the
    /// server closes the connection (an oversized body is refused unread), so that the shared
    /// pool never reuses a connection the server is closing.
    pub(crate) async fn send_alone(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        self.send_with(&client, method, path, key, body).await
    }

    async fn send_with(
        &self,
        client: &reqwest::Client,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<String>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub(crate) async fn decide(&self, body: &str) -> (u16, Value) {
        let (status, _, json) = self
            .send(
                "POST",
                "/access/v1/evaluation",
                Some(self.key(Role::EnforcementPoint)),
                Some(body.to_owned()),
            )
            .await;
        (status, json)
    }
}
