//! The gateway's configuration: upstream MCP servers, how agents are identified, how MCP
//! messages map to decisions, and how approvals are waited for. Read from one JSON file.

use arbiter_core::EntityRef;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The MCP servers behind the gateway. Names must be unique; they become part of resource ids.
    pub upstreams: Vec<UpstreamConfig>,
    /// Agents that connect over Streamable HTTP, each with a bearer credential.
    #[serde(default)]
    pub agents: Vec<AgentConfig>,
    /// The identity a stdio launch acts as (`arbiter gateway --stdio`).
    #[serde(default)]
    pub stdio_agent: Option<AgentIdentity>,
    /// How MCP messages become decision requests.
    #[serde(default)]
    pub mapping: Mapping,
    /// How `approval_required` is handled.
    #[serde(default)]
    pub approvals: ApprovalConfig,
    /// Host names (or `host:port`) the HTTP endpoint answers to; empty, the default, means
    /// loopback only (`localhost`, `127.0.0.1`, `::1`), which guards against DNS rebinding.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How long a decision may take (the server round trip included) before the call is denied.
    #[serde(default = "default_decision_timeout_ms")]
    pub decision_timeout_ms: u64,
    /// How long a forwarded call may take before it fails.
    #[serde(default = "default_upstream_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// How often open sessions are checked: whether Arbiter published a change that contains
    /// their agent, and whether their credential is still configured. This bounds how long a
    /// contained agent's or a removed credential's open session outlives the change.
    #[serde(default = "default_session_check_ms")]
    pub session_check_ms: u64,
}

fn default_decision_timeout_ms() -> u64 {
    5_000
}

fn default_session_check_ms() -> u64 {
    250
}

fn default_upstream_timeout_ms() -> u64 {
    60_000
}

/// One MCP server behind the gateway: a command to run (stdio) or a Streamable HTTP URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The server's name: the id of its `McpServer` entity and the prefix of its tools' ids.
    pub name: String,
    /// Program and arguments to run; the gateway speaks MCP over its stdin and stdout.
    #[serde(default)]
    pub command: Vec<String>,
    /// Extra environment for `command`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A Streamable HTTP endpoint instead of a command.
    #[serde(default)]
    pub url: Option<String>,
}

/// An agent that connects over HTTP with a bearer credential.
///
/// Only the SHA-256 of the credential is configured; the secret itself is shown once by
/// `arbiter gateway token` and never stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Hex SHA-256 of the bearer credential.
    pub token_sha256: String,
    /// The agent the credential speaks for.
    pub subject: EntityRef,
    /// Who the agent acts for, origin first.
    #[serde(default)]
    pub acts_for: Vec<EntityRef>,
    /// When the credential stops working (seconds since the Unix epoch).
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl AgentConfig {
    /// The identity this credential authenticates.
    pub fn identity(&self) -> AgentIdentity {
        AgentIdentity {
            subject: self.subject.clone(),
            acts_for: self.acts_for.clone(),
        }
    }
}

/// Who a session acts as: the subject of every decision and, when it acts for someone, the
/// delegation chain (origin first), which is part of every request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentIdentity {
    /// The agent, e.g. `{"type": "Agent", "id": "support-copilot"}`.
    pub subject: EntityRef,
    /// Who the agent acts for, origin first, e.g. `[{"type": "Human", "id": "alice"}]`.
    #[serde(default)]
    pub acts_for: Vec<EntityRef>,
}

/// How MCP messages map to decision requests. Every field has a default (see docs/gateway.md).
///
/// Id templates may use `{server}` and `{tool}`, `{uri}` or `{prompt}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mapping {
    /// Action for `tools/call` (and for filtering `tools/list`).
    pub tool_action: String,
    /// Entity type of a tool.
    pub tool_type: String,
    /// Id of a tool.
    pub tool_id: String,
    /// Action for `resources/read` (and for filtering `resources/list`).
    pub resource_action: String,
    /// Entity type of a resource.
    pub resource_type: String,
    /// Id of a resource.
    pub resource_id: String,
    /// Action for `prompts/get` (and for filtering `prompts/list`).
    pub prompt_action: String,
    /// Entity type of a prompt.
    pub prompt_type: String,
    /// Id of a prompt.
    pub prompt_id: String,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            tool_action: "call_tool".into(),
            tool_type: "Tool".into(),
            tool_id: "{server}/{tool}".into(),
            resource_action: "read_resource".into(),
            resource_type: "McpResource".into(),
            resource_id: "{server}/{uri}".into(),
            prompt_action: "get_prompt".into(),
            prompt_type: "McpPrompt".into(),
            prompt_id: "{server}/{prompt}".into(),
        }
    }
}

/// What an `approval_required` call does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalConfig {
    /// Hold the call up to this many seconds for a person to decide, then decide it again (which
    /// spends the grant). 0, the default, answers at once with an error naming the request.
    #[serde(default)]
    pub wait_seconds: u64,
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("`{path}`: {reason}")]
    Invalid {
        /// The file (or `config`).
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl GatewayConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|reason| ConfigError::Invalid {
            path: path.display().to_string(),
            reason,
        })
    }

    /// Parses and checks a configuration.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = serde_json::from_str(text).map_err(|err| err.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Refuses what would make the gateway ambiguous or open.
    pub fn check(&self) -> Result<(), String> {
        if self.upstreams.is_empty() {
            return Err("`upstreams`: name at least one MCP server".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for (idx, upstream) in self.upstreams.iter().enumerate() {
            let valid = !upstream.name.is_empty()
                && upstream
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !valid {
                return Err(format!(
                    "`upstreams[{idx}].name`: `{}` must be letters, digits, `-` or `_`",
                    upstream.name
                ));
            }
            if !names.insert(upstream.name.as_str()) {
                return Err(format!(
                    "`upstreams[{idx}].name`: `{}` is used twice",
                    upstream.name
                ));
            }
            if upstream.command.is_empty() == upstream.url.is_none() {
                return Err(format!(
                    "`upstreams[{idx}]`: give either `command` or `url`"
                ));
            }
        }
        for (idx, agent) in self.agents.iter().enumerate() {
            let valid = agent.token_sha256.len() == 64
                && agent.token_sha256.chars().all(|c| c.is_ascii_hexdigit());
            if !valid {
                return Err(format!(
                    "`agents[{idx}].token_sha256`: must be 64 hex digits (the SHA-256 of the token)"
                ));
            }
        }
        Ok(())
    }
}

/// Hex SHA-256 of a bearer credential, as configured in `token_sha256`.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh bearer credential: `arbgw_` and 32 random bytes in hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("arbgw_{}", hex::encode(bytes)))
}
