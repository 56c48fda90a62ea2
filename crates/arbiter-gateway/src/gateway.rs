//! The gateway: an MCP server to agents and an MCP client to the upstream servers, with a
//! decision between the two on every message that reaches a tool, a resource or a prompt.

use crate::config::{AgentConfig, AgentIdentity, GatewayConfig};
use crate::decider::{Decider, Outcome, Unavailable, Verdict};
use crate::mapping::{self, Target};
use crate::sessions::{Closer, OpenSession, Sessions, Version};
use crate::upstream::{Upstream, UpstreamError};
use arbiter_core::EntityRef;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ErrorCode, ErrorData, GetPromptRequestParams,
    GetPromptResponse, Implementation, ListPromptsResult, ListResourceTemplatesResult,
    ListResourcesResult, ListToolsResult, MetaObject, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::ServerHandler;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

/// JSON-RPC error code of a call Arbiter denied.
pub const DENIED: i32 = -32003;
/// JSON-RPC error code of a call that waits for a person's approval.
pub const APPROVAL_REQUIRED: i32 = -32004;
/// JSON-RPC error code of a call refused because no decision could be had (fail closed).
pub const UNAVAILABLE: i32 = -32005;
/// JSON-RPC error code of a message without a valid agent credential.
pub const UNAUTHENTICATED: i32 = -32001;

/// The `_meta` key of an allowed call's result that holds its decision id.
pub const DECISION_META_KEY: &str = "arbiter_decision_id";

/// Separates the server's name from a tool's or prompt's name when several servers are behind
/// the gateway (MCP names may not contain `/`, and `__` is rare in them).
const SEPARATOR: &str = "__";

/// The gateway, shared by every session. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

/// How often an open session's agent is checked again even when nothing was published: time
/// alone can contain it (a credential in the inventory expiring), and a remote server that
/// restarted may show the same versions with other contents.
const RECHECK_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug)]
struct Inner {
    config: GatewayConfig,
    decider: Decider,
    upstreams: Vec<Upstream>,
    /// Agents by the SHA-256 of their credential; replaced whole when the file is re-read.
    agents: RwLock<Arc<HashMap<String, AgentConfig>>>,
    /// The configuration file whose `agents` are re-read while running, if any.
    credentials_file: Mutex<Option<CredentialsFile>>,
    sessions: Sessions,
}

/// The file credentials are re-read from, and what was read last (the bytes, or the error), so
/// that an unchanged file is not parsed again and an error is logged once.
#[derive(Debug)]
struct CredentialsFile {
    path: PathBuf,
    last: Option<Result<Vec<u8>, String>>,
}

/// Why a session is not opened.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The agent is contained; the reason is for the gateway's log.
    Contained(String),
    /// Whether it is could not be told (fail closed).
    Unavailable(Unavailable),
}

fn agents_by_hash(agents: &[AgentConfig]) -> HashMap<String, AgentConfig> {
    agents
        .iter()
        .map(|agent| (agent.token_sha256.to_ascii_lowercase(), agent.clone()))
        .collect()
}

impl Gateway {
    /// Connects to every upstream server; fails if one cannot be reached.
    pub async fn start(config: GatewayConfig, decider: Decider) -> Result<Self, UpstreamError> {
        let mut upstreams = Vec::with_capacity(config.upstreams.len());
        for upstream in &config.upstreams {
            upstreams.push(
                Upstream::connect(upstream, Duration::from_millis(config.upstream_timeout_ms))
                    .await?,
            );
        }
        let agents = agents_by_hash(&config.agents);
        let tick = Duration::from_millis(config.session_check_ms.max(10));
        let inner = Arc::new(Inner {
            config,
            decider,
            upstreams,
            agents: RwLock::new(Arc::new(agents)),
            credentials_file: Mutex::new(None),
            sessions: Sessions::default(),
        });
        // The watcher holds the gateway weakly, so it ends with the gateway.
        tokio::spawn(watch(Arc::downgrade(&inner), tick));
        Ok(Self { inner })
    }

    /// Re-reads the credentials (`agents`) from the configuration file at `path` while running,
    /// every `session_check_ms`: a credential removed (or expired, or changed to another agent)
    /// stops working for new requests and its open sessions are closed. A file that cannot be
    /// read or parsed accepts no credential at all until it can (fail closed). Only `agents` is
    /// re-read; the rest takes a restart.
    pub fn reload_credentials_from(&self, path: impl Into<PathBuf>) {
        *self
            .inner
            .credentials_file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(CredentialsFile {
            path: path.into(),
            last: None,
        });
    }

    /// How many sessions are open for the agent `subject` (over HTTP and stdio).
    pub fn open_sessions(&self, subject: &EntityRef) -> usize {
        self.inner.sessions.count(subject)
    }

    fn agents(&self) -> Arc<HashMap<String, AgentConfig>> {
        self.inner
            .agents
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The agent the credential with SHA-256 `credential` authenticates, unless unknown or
    /// expired.
    pub(crate) fn identity_for(&self, credential: &str, now: i64) -> Option<AgentIdentity> {
        let agents = self.agents();
        let agent = agents.get(credential)?;
        if agent.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return None;
        }
        Some(agent.identity())
    }

    /// Whether a new session may be opened for `identity`: not if it is contained, nor if that
    /// cannot be told. Returns the state it was checked in.
    pub(crate) async fn admit(&self, identity: &AgentIdentity) -> Result<Version, Refusal> {
        // The version is read first: a change published after it is caught by the watcher.
        let version = self
            .inner
            .decider
            .version(self.decision_timeout())
            .await
            .map_err(Refusal::Unavailable)?;
        match self.containment(identity).await {
            Ok(None) => Ok(version),
            Ok(Some(reason)) => Err(Refusal::Contained(reason)),
            Err(error) => Err(Refusal::Unavailable(error)),
        }
    }

    async fn containment(&self, identity: &AgentIdentity) -> Result<Option<String>, Unavailable> {
        let probes = crate::containment::probes(&self.inner.config.mapping, identity);
        let expected = probes.len();
        let answers = self
            .inner
            .decider
            .check(probes, self.decision_timeout())
            .await?;
        Ok(crate::containment::contained(&answers, expected))
    }

    /// Tracks an HTTP session opened with `credential` (its SHA-256) for `identity`.
    pub(crate) fn opened_http(
        &self,
        id: String,
        identity: AgentIdentity,
        credential: String,
        manager: Arc<LocalSessionManager>,
        version: Version,
    ) {
        self.inner.sessions.insert(
            id.clone(),
            OpenSession {
                identity,
                credential: Some(credential),
                closer: Closer::Http { manager, id },
                checked: (version, Instant::now()),
            },
        );
    }

    /// Whether HTTP session `id` is open and was opened with `credential`.
    pub(crate) fn is_session_of(&self, id: &str, credential: &str) -> bool {
        self.inner.sessions.opened_with(id, credential)
    }

    /// Forgets a session its client closed.
    pub(crate) fn forget(&self, key: &str) {
        self.inner.sessions.remove(key);
    }

    /// Tracks a stdio session; the receiver learns why it must end.
    pub(crate) fn opened_stdio(
        &self,
        identity: AgentIdentity,
        version: Version,
    ) -> (String, tokio::sync::watch::Receiver<Option<String>>) {
        let (sender, receiver) = tokio::sync::watch::channel(None);
        let key = self.inner.sessions.stdio_key();
        self.inner.sessions.insert(
            key.clone(),
            OpenSession {
                identity,
                credential: None,
                closer: Closer::Stdio(sender),
                checked: (version, Instant::now()),
            },
        );
        (key, receiver)
    }

    /// One round of the watcher: credentials first, then containment.
    async fn watch_once(&self) {
        self.reload_credentials();
        self.close_unauthenticated(crate::http::now()).await;
        self.forget_ended_http_sessions().await;
        self.close_contained().await;
    }

    fn reload_credentials(&self) {
        let mut file = self
            .inner
            .credentials_file
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some(file) = file.as_mut() else {
            return;
        };
        let read = std::fs::read(&file.path).map_err(|err| err.to_string());
        if file.last.as_ref() == Some(&read) {
            return;
        }
        let parsed = match &read {
            Ok(bytes) => std::str::from_utf8(bytes)
                .map_err(|err| err.to_string())
                .and_then(GatewayConfig::parse),
            Err(reason) => Err(reason.clone()),
        };
        let agents = match parsed {
            Ok(config) => {
                tracing::info!(
                    path = %file.path.display(),
                    credentials = config.agents.len(),
                    "credentials re-read"
                );
                agents_by_hash(&config.agents)
            }
            Err(reason) => {
                tracing::error!(
                    path = %file.path.display(),
                    %reason,
                    "credentials cannot be re-read: no credential is accepted until they can (fail closed)"
                );
                HashMap::new()
            }
        };
        *self
            .inner
            .agents
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(agents);
        file.last = Some(read);
    }

    /// Closes the sessions whose credential is gone, expired, or now names another agent.
    async fn close_unauthenticated(&self, now: i64) {
        let closing = self.inner.sessions.take_where(|session| {
            session.credential.as_deref().is_some_and(|credential| {
                self.identity_for(credential, now).as_ref() != Some(&session.identity)
            })
        });
        for session in closing {
            session
                .close("its credential was removed, expired or changed")
                .await;
        }
    }

    /// Forgets HTTP sessions that ended on their own (closed by the client, expired).
    async fn forget_ended_http_sessions(&self) {
        for (key, manager) in self.inner.sessions.http() {
            let open = manager
                .has_session(&key.clone().into())
                .await
                .unwrap_or(false);
            if !open {
                self.inner.sessions.remove(&key);
            }
        }
    }

    /// Checks the agents of open sessions again when Arbiter published a change (or every
    /// `RECHECK_EVERY`), and closes the sessions of those now contained.
    async fn close_contained(&self) {
        // Nothing to close: an idle gateway does not poll Arbiter.
        if self.inner.sessions.is_empty() {
            return;
        }
        let version = match self.inner.decider.version(self.decision_timeout()).await {
            Ok(version) => version,
            Err(error) => {
                // Every message is still decided, so nothing passes meanwhile (fail closed).
                tracing::warn!(%error, "cannot tell whether Arbiter changed");
                return;
            }
        };
        let since = Instant::now()
            .checked_sub(RECHECK_EVERY)
            .unwrap_or_else(Instant::now);
        for identity in self.inner.sessions.due(version, since) {
            match self.containment(&identity).await {
                Ok(None) => self
                    .inner
                    .sessions
                    .checked(&identity, version, Instant::now()),
                Ok(Some(reason)) => {
                    let closing = self
                        .inner
                        .sessions
                        .take_where(|session| session.identity == identity);
                    for session in closing {
                        session
                            .close(&format!("the agent is contained: {reason}"))
                            .await;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, subject = %identity.subject, "cannot check the agent");
                }
            }
        }
    }

    /// A session handler. `identity` fixes who the session acts as (stdio); without it, every
    /// message must carry its own credential (Streamable HTTP, see [`crate::http`]).
    pub fn session(&self, identity: Option<AgentIdentity>) -> Session {
        Session {
            gateway: self.clone(),
            fixed: identity,
        }
    }

    /// The agent a bearer credential authenticates, unless unknown or expired.
    pub fn authenticate(&self, token: &str, now: i64) -> Option<AgentIdentity> {
        self.identity_for(&crate::config::token_hash(token), now)
    }

    /// The host names the HTTP endpoint answers to (empty: loopback only).
    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.config.allowed_hosts
    }

    fn prefixed(&self) -> bool {
        self.inner.upstreams.len() > 1
    }

    /// The name a client sees for `name` on `server`.
    fn exposed(&self, server: &str, name: &str) -> String {
        if self.prefixed() {
            format!("{server}{SEPARATOR}{name}")
        } else {
            name.to_owned()
        }
    }

    /// The upstream and its own name for a name the client sent.
    fn route<'a>(&'a self, exposed: &'a str) -> Option<(&'a Upstream, &'a str)> {
        if !self.prefixed() {
            return self
                .inner
                .upstreams
                .first()
                .map(|upstream| (upstream, exposed));
        }
        let (server, name) = exposed.split_once(SEPARATOR)?;
        self.inner
            .upstreams
            .iter()
            .find(|upstream| upstream.name == server)
            .map(|upstream| (upstream, name))
    }

    /// The server an exposed name points at, if it names one (empty if not), and that server's
    /// own name for it: where a name no upstream lists is recorded.
    fn server_and_name<'a>(&'a self, exposed: &'a str) -> (&'a str, &'a str) {
        match self.route(exposed) {
            Some((upstream, name)) => (upstream.name.as_str(), name),
            None => exposed.split_once(SEPARATOR).unwrap_or(("", exposed)),
        }
    }

    fn decision_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.decision_timeout_ms)
    }

    fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.inner.config.upstream_timeout_ms)
    }

    /// Decides one call; on `approval_required`, waits for a person if configured, then decides
    /// again (which spends the grant). Returns the verdict that allowed it, or the MCP error.
    async fn authorize(&self, request: Value) -> Result<Verdict, ErrorData> {
        let verdict = self.decide_one(request.clone()).await?;
        let wait = self.inner.config.approvals.wait_seconds;
        match (verdict.outcome, &verdict.approval_id) {
            (Outcome::Allow, _) => Ok(verdict),
            (Outcome::Deny, _) => Err(denied(&verdict)),
            (Outcome::ApprovalRequired, Some(approval_id)) if wait > 0 => {
                let state = self
                    .inner
                    .decider
                    .approval_state(approval_id, Duration::from_secs(wait))
                    .await
                    .map_err(|err| unavailable(&err))?;
                if state != "approved" {
                    return Err(approval_required(&verdict, &state));
                }
                let retried = self.decide_one(request).await?;
                match retried.outcome {
                    Outcome::Allow => Ok(retried),
                    Outcome::Deny => Err(denied(&retried)),
                    Outcome::ApprovalRequired => Err(approval_required(&retried, "pending")),
                }
            }
            (Outcome::ApprovalRequired, _) => Err(approval_required(&verdict, "pending")),
        }
    }

    async fn decide_one(&self, request: Value) -> Result<Verdict, ErrorData> {
        let verdicts = self
            .inner
            .decider
            .decide(vec![request], true, self.decision_timeout())
            .await
            .map_err(|err| unavailable(&err))?;
        verdicts
            .into_iter()
            .next()
            .ok_or_else(|| unavailable(&Unavailable("no answer".into())))
    }

    /// Which list items the agent may use (allowed, or allowed with a person's approval).
    async fn filter(&self, requests: Vec<Value>) -> Result<Vec<bool>, ErrorData> {
        let verdicts = self
            .inner
            .decider
            .decide(requests, false, self.decision_timeout())
            .await
            .map_err(|err| unavailable(&err))?;
        Ok(verdicts
            .iter()
            .map(|verdict| verdict.outcome != Outcome::Deny)
            .collect())
    }
}

/// Checks open sessions every `tick` until the gateway is dropped.
async fn watch(inner: Weak<Inner>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Gateway { inner }.watch_once().await;
    }
}

/// One client session: who it acts as (fixed for stdio, per message for HTTP).
#[derive(Clone, Debug)]
pub struct Session {
    gateway: Gateway,
    fixed: Option<AgentIdentity>,
}

impl Session {
    fn identity(&self, context: &RequestContext<RoleServer>) -> Result<AgentIdentity, ErrorData> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<AgentIdentity>())
            .cloned()
            .ok_or_else(|| {
                ErrorData::new(
                    ErrorCode(UNAUTHENTICATED),
                    "unauthenticated: send the agent's bearer credential",
                    None,
                )
            })
    }

    fn mapping(&self) -> &crate::config::Mapping {
        &self.gateway.inner.config.mapping
    }

    fn upstreams(&self) -> &[Upstream] {
        &self.gateway.inner.upstreams
    }
}

impl Session {
    /// A call to a tool no upstream lists: decided and recorded like any call (with
    /// `context.mcp.listed` false and no annotations), so that probing for hidden tools is in
    /// the log, then refused whatever the decision, since there is nothing to forward it to.
    async fn unlisted_tool(
        &self,
        who: &AgentIdentity,
        exposed: &str,
        arguments: &Map<String, Value>,
    ) -> ErrorData {
        let (server, name) = self.gateway.server_and_name(exposed);
        let target = Target::Tool {
            name,
            annotations: &Map::new(),
            listed: false,
        };
        self.unlisted(who, server, target, arguments).await
    }

    /// A tool call, resource read or prompt request naming something no upstream lists
    /// (`target` has `listed` false): decided and recorded, then refused whatever the decision.
    async fn unlisted(
        &self,
        who: &AgentIdentity,
        server: &str,
        target: Target<'_>,
        arguments: &Map<String, Value>,
    ) -> ErrorData {
        let (what, name) = match target {
            Target::Tool { name, .. } => ("tool", name),
            Target::Resource { uri, .. } => ("resource", uri),
            Target::Prompt { name, .. } => ("prompt", name),
        };
        let request = mapping::request(self.mapping(), who, server, target, Some(arguments));
        // No approval is asked for a call that cannot be forwarded.
        let verdict = match self
            .gateway
            .inner
            .decider
            .decide(vec![request], false, self.gateway.decision_timeout())
            .await
            .map(|verdicts| verdicts.into_iter().next())
        {
            Ok(Some(verdict)) => verdict,
            Ok(None) => return unavailable(&Unavailable("no answer".into())),
            Err(error) => return unavailable(&error),
        };
        let shown = if server.is_empty() || what == "resource" {
            name.to_owned()
        } else {
            self.gateway.exposed(server, name)
        };
        let reason = format!("no upstream server lists {what} `{shown}`, so nothing was forwarded");
        ErrorData::new(
            ErrorCode(DENIED),
            format!("denied: {reason}{}", decision_ref(&verdict)),
            Some(json!({
                "outcome": "deny",
                "reason": reason,
                "decision_id": verdict.decision_id,
                "arbiter": {"outcome": outcome_name(verdict.outcome), "reason": verdict.reason_user},
            })),
        )
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Allow => "allow",
        Outcome::Deny => "deny",
        Outcome::ApprovalRequired => "approval_required",
    }
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_prompts()
                .enable_resources()
                .enable_tools()
                .build(),
        )
        .with_server_info(Implementation::new(
            "arbiter-gateway",
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let who = self.identity(&context)?;
        let mut candidates = Vec::new();
        let mut requests = Vec::new();
        for upstream in self.upstreams() {
            let tools = match upstream.refresh_tools().await {
                Ok(tools) => tools,
                Err(error) => {
                    tracing::warn!(%error, "left out of tools/list");
                    continue;
                }
            };
            for tool in tools.iter() {
                let annotations = annotations(tool);
                requests.push(mapping::request(
                    self.mapping(),
                    &who,
                    &upstream.name,
                    Target::Tool {
                        name: &tool.name,
                        annotations: &annotations,
                        listed: true,
                    },
                    None,
                ));
                let mut exposed = tool.clone();
                exposed.name = self.gateway.exposed(&upstream.name, &tool.name).into();
                candidates.push(exposed);
            }
        }
        let keep = self.gateway.filter(requests).await?;
        let tools = candidates
            .into_iter()
            .zip(keep)
            .filter_map(|(tool, keep)| keep.then_some(tool))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let who = self.identity(&context)?;
        let arguments = request.arguments.clone().unwrap_or_default();
        let routed = self.gateway.route(&request.name);
        let listed = match routed {
            Some((upstream, name)) => upstream
                .tool(name)
                .await
                .map_err(|err| upstream_error(&err))?,
            None => None,
        };
        let (Some((upstream, name)), Some(tool)) = (routed, listed) else {
            return Err(self.unlisted_tool(&who, &request.name, &arguments).await);
        };
        let annotations = annotations(&tool);
        let decision = mapping::request(
            self.mapping(),
            &who,
            &upstream.name,
            Target::Tool {
                name,
                annotations: &annotations,
                listed: true,
            },
            Some(&arguments),
        );
        let verdict = self.gateway.authorize(decision).await?;
        let mut forwarded = request.clone();
        forwarded.name = name.to_owned().into();
        let mut answer = forward(
            self.gateway.upstream_timeout(),
            upstream,
            upstream.peer().call_tool_once(forwarded),
        )
        .await?;
        // The allowed call's decision, so that the agent's side can cite it too.
        if let (CallToolResponse::Complete(result), Some(id)) = (&mut answer, &verdict.decision_id)
        {
            result
                .meta
                .get_or_insert_with(MetaObject::new)
                .0
                .insert(DECISION_META_KEY.into(), json!(id));
        }
        Ok(answer)
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let who = self.identity(&context)?;
        let mut candidates = Vec::new();
        let mut requests = Vec::new();
        for upstream in self.upstreams() {
            let resources = match upstream.refresh_resources().await {
                Ok(resources) => resources,
                Err(error) => {
                    tracing::warn!(%error, "left out of resources/list");
                    continue;
                }
            };
            for resource in resources.iter() {
                requests.push(mapping::request(
                    self.mapping(),
                    &who,
                    &upstream.name,
                    Target::Resource {
                        uri: &resource.uri,
                        listed: true,
                    },
                    None,
                ));
                candidates.push(resource.clone());
            }
        }
        let keep = self.gateway.filter(requests).await?;
        let resources = candidates
            .into_iter()
            .zip(keep)
            .filter_map(|(resource, keep)| keep.then_some(resource))
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        // Templates name no resource that could be decided; reads of listed resources are.
        Ok(ListResourceTemplatesResult::default())
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let who = self.identity(&context)?;
        let mut found = None;
        for upstream in self.upstreams() {
            if upstream
                .has_resource(&request.uri)
                .await
                .map_err(|err| upstream_error(&err))?
            {
                found = Some(upstream);
                break;
            }
        }
        let Some(upstream) = found else {
            let target = Target::Resource {
                uri: &request.uri,
                listed: false,
            };
            return Err(self.unlisted(&who, "", target, &Map::new()).await);
        };
        let decision = mapping::request(
            self.mapping(),
            &who,
            &upstream.name,
            Target::Resource {
                uri: &request.uri,
                listed: true,
            },
            Some(&Map::new()),
        );
        self.gateway.authorize(decision).await?;
        forward(
            self.gateway.upstream_timeout(),
            upstream,
            upstream.peer().read_resource_once(request),
        )
        .await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let who = self.identity(&context)?;
        let mut candidates = Vec::new();
        let mut requests = Vec::new();
        for upstream in self.upstreams() {
            let prompts = match upstream.refresh_prompts().await {
                Ok(prompts) => prompts,
                Err(error) => {
                    tracing::warn!(%error, "left out of prompts/list");
                    continue;
                }
            };
            for prompt in prompts.iter() {
                requests.push(mapping::request(
                    self.mapping(),
                    &who,
                    &upstream.name,
                    Target::Prompt {
                        name: &prompt.name,
                        listed: true,
                    },
                    None,
                ));
                let mut exposed = prompt.clone();
                exposed.name = self.gateway.exposed(&upstream.name, &prompt.name);
                candidates.push(exposed);
            }
        }
        let keep = self.gateway.filter(requests).await?;
        let prompts = candidates
            .into_iter()
            .zip(keep)
            .filter_map(|(prompt, keep)| keep.then_some(prompt))
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let who = self.identity(&context)?;
        let arguments = request.arguments.clone().unwrap_or_default();
        let routed = self.gateway.route(&request.name);
        let listed = match routed {
            Some((upstream, name)) => upstream
                .has_prompt(name)
                .await
                .map_err(|err| upstream_error(&err))?,
            None => false,
        };
        let Some((upstream, name)) = routed.filter(|_| listed) else {
            let (server, name) = self.gateway.server_and_name(&request.name);
            let target = Target::Prompt {
                name,
                listed: false,
            };
            return Err(self.unlisted(&who, server, target, &arguments).await);
        };
        let decision = mapping::request(
            self.mapping(),
            &who,
            &upstream.name,
            Target::Prompt { name, listed: true },
            Some(&arguments),
        );
        self.gateway.authorize(decision).await?;
        let mut forwarded = request.clone();
        forwarded.name = name.to_owned();
        forward(
            self.gateway.upstream_timeout(),
            upstream,
            upstream.peer().get_prompt_once(forwarded),
        )
        .await
    }
}

/// A tool's annotations as its server listed them, as a JSON object (empty when none).
fn annotations(tool: &rmcp::model::Tool) -> Map<String, Value> {
    tool.annotations
        .as_ref()
        .and_then(|annotations| serde_json::to_value(annotations).ok())
        .and_then(|value| match value {
            Value::Object(object) => Some(object),
            _ => None,
        })
        .unwrap_or_default()
}

/// Forwards an allowed message, bounded in time; an upstream's own MCP error passes through.
async fn forward<T>(
    timeout: Duration,
    upstream: &Upstream,
    call: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
) -> Result<T, ErrorData> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(rmcp::ServiceError::McpError(error))) => Err(error),
        Ok(Err(error)) => Err(upstream_error(&UpstreamError {
            server: upstream.name.clone(),
            reason: error.to_string(),
        })),
        Err(_) => Err(upstream_error(&UpstreamError {
            server: upstream.name.clone(),
            reason: format!("no answer within {} ms", timeout.as_millis()),
        })),
    }
}

fn decision_ref(verdict: &Verdict) -> String {
    verdict
        .decision_id
        .as_deref()
        .map_or_else(String::new, |id| format!(" (decision {id})"))
}

fn denied(verdict: &Verdict) -> ErrorData {
    ErrorData::new(
        ErrorCode(DENIED),
        format!(
            "denied by Arbiter: {}{}",
            verdict.reason_user,
            decision_ref(verdict)
        ),
        Some(json!({
            "outcome": "deny",
            "reason": verdict.reason_user,
            "decision_id": verdict.decision_id,
        })),
    )
}

fn approval_required(verdict: &Verdict, state: &str) -> ErrorData {
    let message = match &verdict.approval_id {
        Some(id) if state == "pending" => format!(
            "approval required: request {id} waits for a person; call again once it is approved{}",
            decision_ref(verdict)
        ),
        Some(id) => format!(
            "approval required: request {id} is {state}{}",
            decision_ref(verdict)
        ),
        None => format!(
            "approval required, but no approval request could be opened{}",
            decision_ref(verdict)
        ),
    };
    ErrorData::new(
        ErrorCode(APPROVAL_REQUIRED),
        message,
        Some(json!({
            "outcome": "approval_required",
            "reason": verdict.reason_user,
            "decision_id": verdict.decision_id,
            "approval": verdict.approval_id.as_ref().map(|id| json!({
                "id": id,
                "state": state,
                "status_url": format!("/admin/v1/approvals/{id}"),
            })),
        })),
    )
}

fn unavailable(error: &Unavailable) -> ErrorData {
    tracing::error!(%error, "call refused: no decision");
    ErrorData::new(
        ErrorCode(UNAVAILABLE),
        format!("denied: {error}; nothing was forwarded (fail closed)"),
        Some(json!({"outcome": "deny", "reason": error.to_string()})),
    )
}

fn upstream_error(error: &UpstreamError) -> ErrorData {
    ErrorData::new(ErrorCode::INTERNAL_ERROR, error.to_string(), None)
}
