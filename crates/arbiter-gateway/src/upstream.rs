//! The MCP servers behind the gateway, reached as an MCP client over stdio (a child process)
//! or Streamable HTTP, and what each one lists.
//!
//! The gateway keeps the server's own list of tools: a call's annotations are read from it,
//! never from the client. The list is fetched again on every `tools/list` and when a call names
//! a tool it does not hold.

use crate::config::UpstreamConfig;
use rmcp::model::{Prompt, Resource, Tool};
use rmcp::service::{RoleClient, RunningService};
use rmcp::ServiceExt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// An upstream server could not be reached or answered with an error.
#[derive(Debug, thiserror::Error)]
#[error("MCP server `{server}`: {reason}")]
pub struct UpstreamError {
    /// Which server.
    pub server: String,
    /// What went wrong.
    pub reason: String,
}

/// One connected MCP server.
pub(crate) struct Upstream {
    pub(crate) name: String,
    client: RunningService<RoleClient, ()>,
    /// Bounds every list fetched from this server.
    timeout: Duration,
    tools: RwLock<Arc<Vec<Tool>>>,
    resources: RwLock<Arc<Vec<Resource>>>,
    prompts: RwLock<Arc<Vec<Prompt>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upstream({})", self.name)
    }
}

impl Upstream {
    /// Starts the command or connects to the URL, and runs MCP's initialisation.
    pub(crate) async fn connect(
        config: &UpstreamConfig,
        timeout: Duration,
    ) -> Result<Self, UpstreamError> {
        match tokio::time::timeout(timeout, Self::start(config, timeout)).await {
            Ok(started) => started,
            Err(_) => Err(UpstreamError {
                server: config.name.clone(),
                reason: format!("not initialised within {} ms", timeout.as_millis()),
            }),
        }
    }

    async fn start(config: &UpstreamConfig, timeout: Duration) -> Result<Self, UpstreamError> {
        let failed = |reason: String| UpstreamError {
            server: config.name.clone(),
            reason,
        };
        let client = match (&config.url, config.command.split_first()) {
            (Some(url), _) => {
                let transport =
                    rmcp::transport::StreamableHttpClientTransport::from_uri(url.as_str());
                ().serve(transport)
                    .await
                    .map_err(|err| failed(format!("cannot initialise over `{url}`: {err}")))?
            }
            (None, Some((program, args))) => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).envs(&config.env);
                let (transport, _) = rmcp::transport::TokioChildProcess::builder(command)
                    .stderr(std::process::Stdio::inherit())
                    .spawn()
                    .map_err(|err| failed(format!("cannot start `{program}`: {err}")))?;
                ().serve(transport)
                    .await
                    .map_err(|err| failed(format!("cannot initialise `{program}`: {err}")))?
            }
            (None, None) => return Err(failed("neither `command` nor `url`".into())),
        };
        Ok(Self {
            name: config.name.clone(),
            client,
            timeout,
            tools: RwLock::default(),
            resources: RwLock::default(),
            prompts: RwLock::default(),
        })
    }

    /// The client side of the session with this server.
    pub(crate) fn peer(&self) -> &rmcp::Peer<RoleClient> {
        self.client.peer()
    }

    fn error(&self, reason: impl std::fmt::Display) -> UpstreamError {
        UpstreamError {
            server: self.name.clone(),
            reason: reason.to_string(),
        }
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, rmcp::ServiceError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer.map_err(|err| self.error(err)),
            Err(_) => Err(self.error(format!("no answer within {} ms", self.timeout.as_millis()))),
        }
    }

    fn capabilities(&self) -> Option<rmcp::model::ServerCapabilities> {
        self.peer()
            .peer_info()
            .map(|info| info.capabilities.clone())
    }

    /// The server's tools, fetched now.
    pub(crate) async fn refresh_tools(&self) -> Result<Arc<Vec<Tool>>, UpstreamError> {
        if self.capabilities().is_some_and(|caps| caps.tools.is_none()) {
            return Ok(Arc::default());
        }
        let tools = Arc::new(self.bounded(self.peer().list_all_tools()).await?);
        *self
            .tools
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = tools.clone();
        Ok(tools)
    }

    /// The server's tool `name` as it last listed it, fetching the list again if it is missing.
    pub(crate) async fn tool(&self, name: &str) -> Result<Option<Tool>, UpstreamError> {
        let cached = self
            .tools
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(tool) = cached.iter().find(|tool| tool.name == name) {
            return Ok(Some(tool.clone()));
        }
        let fresh = self.refresh_tools().await?;
        Ok(fresh.iter().find(|tool| tool.name == name).cloned())
    }

    /// The server's resources, fetched now.
    pub(crate) async fn refresh_resources(&self) -> Result<Arc<Vec<Resource>>, UpstreamError> {
        if self
            .capabilities()
            .is_some_and(|caps| caps.resources.is_none())
        {
            return Ok(Arc::default());
        }
        let resources = Arc::new(self.bounded(self.peer().list_all_resources()).await?);
        *self
            .resources
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = resources.clone();
        Ok(resources)
    }

    /// Whether this server listed resource `uri` (fetching the list again if not).
    pub(crate) async fn has_resource(&self, uri: &str) -> Result<bool, UpstreamError> {
        let cached = self
            .resources
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if cached.iter().any(|resource| resource.uri == uri) {
            return Ok(true);
        }
        let fresh = self.refresh_resources().await?;
        Ok(fresh.iter().any(|resource| resource.uri == uri))
    }

    /// The server's prompts, fetched now.
    pub(crate) async fn refresh_prompts(&self) -> Result<Arc<Vec<Prompt>>, UpstreamError> {
        if self
            .capabilities()
            .is_some_and(|caps| caps.prompts.is_none())
        {
            return Ok(Arc::default());
        }
        let prompts = Arc::new(self.bounded(self.peer().list_all_prompts()).await?);
        *self
            .prompts
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = prompts.clone();
        Ok(prompts)
    }

    /// Whether this server lists prompt `name` (fetching the list again if not).
    pub(crate) async fn has_prompt(&self, name: &str) -> Result<bool, UpstreamError> {
        let cached = self
            .prompts
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if cached.iter().any(|prompt| prompt.name == name) {
            return Ok(true);
        }
        let fresh = self.refresh_prompts().await?;
        Ok(fresh.iter().any(|prompt| prompt.name == name))
    }
}
