//! Where decisions come from: a remote `arbiter serve` over AuthZEN, or the server's state in
//! this process. Both decide with the same engine and record every decision in the decision
//! log before answering; both answer in AuthZEN's shape, read here into a [`Verdict`].
//!
//! Fail closed: anything but a well-formed answer (no server, an error status, a timeout, an
//! answer of the wrong length) is [`Unavailable`], which the gateway turns into a refused call.

use arbiter_core::DecisionRequest;
use arbiter_server::AppState;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The three outcomes, as the gateway acts on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forward the call (an approval's grant may have been spent for it).
    Allow,
    /// Refuse it.
    Deny,
    /// Refuse it until a person approves.
    ApprovalRequired,
}

/// One decision, as recorded.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// What to do.
    pub outcome: Outcome,
    /// The decision's id in the log (absent only when the server refused the request as
    /// malformed, which records nothing).
    pub decision_id: Option<String>,
    /// The reason for the user.
    pub reason_user: String,
    /// The approval request an `approval_required` decision opened, if any.
    pub approval_id: Option<String>,
}

impl Verdict {
    /// Reads AuthZEN's answer with Arbiter's context. An answer that says nothing clear is a deny.
    pub fn from_answer(answer: &Value) -> Self {
        let context = answer.get("context");
        let text = |field: &str| {
            context
                .and_then(|context| context.get(field))
                .and_then(|value| value.get("en").or(Some(value)))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let allowed = answer.get("decision").and_then(Value::as_bool) == Some(true);
        let outcome_text = context
            .and_then(|context| context.get("outcome"))
            .and_then(Value::as_str);
        let outcome = match (allowed, outcome_text) {
            (true, _) => Outcome::Allow,
            (false, Some("approval_required")) => Outcome::ApprovalRequired,
            (false, _) => Outcome::Deny,
        };
        Verdict {
            outcome,
            decision_id: text("id"),
            reason_user: text("reason_user").unwrap_or_else(|| "Access denied.".to_owned()),
            approval_id: context
                .and_then(|context| context.pointer("/approval/id"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }
}

/// No trustworthy decision could be had; the call is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("authorization unavailable: {0}")]
pub struct Unavailable(pub String);

/// Where decisions are made.
#[derive(Clone)]
pub enum Decider {
    /// A running `arbiter serve`, reached over its AuthZEN API with an enforcement-point key.
    Remote(RemoteArbiter),
    /// The server's state in this process (`AppState::open` plus `with_log`).
    InProcess(Arc<AppState>),
}

impl std::fmt::Debug for Decider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decider::Remote(remote) => write!(f, "Remote({})", remote.base),
            Decider::InProcess(_) => f.write_str("InProcess"),
        }
    }
}

/// A remote server: its base URL and the gateway's API key (kept out of `Debug`).
#[derive(Clone)]
pub struct RemoteArbiter {
    base: String,
    api_key: String,
    client: reqwest::Client,
}

impl RemoteArbiter {
    /// Decides `requests` with the batch endpoint, with Arbiter's context in each answer;
    /// `settle_approvals` false opens no approval request.
    async fn evaluations(
        &self,
        requests: Vec<Value>,
        settle_approvals: bool,
        timeout: Duration,
    ) -> Result<Vec<Value>, Unavailable> {
        let body = json!({
            "evaluations": requests,
            "options": {"arbiter_context": true, "arbiter_settle_approvals": settle_approvals},
        });
        let answer = self.post("/access/v1/evaluations", &body, timeout).await?;
        match answer.get("evaluations") {
            Some(Value::Array(items)) => Ok(items.clone()),
            _ => Err(Unavailable("answer without `evaluations`".into())),
        }
    }

    /// A client for the server at `base` (e.g. `http://127.0.0.1:8181`), authenticating with an
    /// `enforcement_point` API key.
    pub fn new(base: &str, api_key: &str) -> Result<Self, Unavailable> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|err| Unavailable(err.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
            client,
        })
    }

    async fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, Unavailable> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.api_key)
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|err| Unavailable(format!("cannot reach Arbiter: {err}")))?;
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> Result<Value, Unavailable> {
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|err| Unavailable(format!("unreadable answer from Arbiter: {err}")))?;
    if status.is_success() {
        return Ok(body);
    }
    let detail = body
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("no detail");
    Err(Unavailable(format!("Arbiter answered {status}: {detail}")))
}

impl Decider {
    /// Decides and records `requests`, one verdict each, in order. `settle_approvals` is for
    /// calls: an `approval_required` decision opens (or spends) an approval. Lists pass `false`
    /// (remotely `options.arbiter_settle_approvals`, which the batch endpoint honours).
    pub async fn decide(
        &self,
        requests: Vec<Value>,
        settle_approvals: bool,
        timeout: Duration,
    ) -> Result<Vec<Verdict>, Unavailable> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let expected = requests.len();
        let answers =
            match tokio::time::timeout(timeout, self.answers(requests, settle_approvals, timeout))
                .await
            {
                Ok(answers) => answers?,
                Err(_) => {
                    return Err(Unavailable(format!(
                        "no decision within {} ms",
                        timeout.as_millis()
                    )))
                }
            };
        if answers.len() != expected {
            return Err(Unavailable(format!(
                "{} answers for {expected} requests",
                answers.len()
            )));
        }
        Ok(answers.iter().map(Verdict::from_answer).collect())
    }

    async fn answers(
        &self,
        requests: Vec<Value>,
        settle_approvals: bool,
        timeout: Duration,
    ) -> Result<Vec<Value>, Unavailable> {
        match self {
            Decider::InProcess(state) => {
                let mut parsed = Vec::with_capacity(requests.len());
                for request in requests {
                    match arbiter_core::request_from_value(request) {
                        Ok(request) => parsed.push(request),
                        Err(err) => return Err(Unavailable(format!("invalid request {err}"))),
                    }
                }
                Ok(evaluate(state, parsed, settle_approvals).await)
            }
            Decider::Remote(remote) => {
                // The single endpoint always settles approvals: a list of one item (or an
                // unlisted tool's call) must not open an approval request, so it goes as a batch.
                if let ([single], true) = (requests.as_slice(), settle_approvals) {
                    return remote
                        .post("/access/v1/evaluation", single, timeout)
                        .await
                        .map(|answer| vec![answer]);
                }
                // `arbiter_settle_approvals: false` keeps a list from opening approval requests.
                remote
                    .evaluations(requests, settle_approvals, timeout)
                    .await
            }
        }
    }

    /// Which state decisions are made against now: the active policy version and the
    /// inventory's version, which every change moves (lifecycle, controls, signals). In process
    /// it is read from the published snapshot; remotely from `GET /ready`, which is not a
    /// decision and records nothing.
    pub async fn version(&self, timeout: Duration) -> Result<(u64, u64), Unavailable> {
        match self {
            Decider::InProcess(state) => {
                let snapshot = arbiter_server::decide_api::snapshot(state);
                Ok((
                    snapshot.policies().version(),
                    snapshot.inventory().version(),
                ))
            }
            Decider::Remote(remote) => {
                let response = remote
                    .client
                    .get(format!("{}/ready", remote.base))
                    .bearer_auth(&remote.api_key)
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|err| Unavailable(format!("cannot reach Arbiter: {err}")))?;
                // A server that is not ready (its log failing) still names its versions.
                let body: Value = response
                    .json()
                    .await
                    .map_err(|err| Unavailable(format!("unreadable answer from Arbiter: {err}")))?;
                let field = |name: &str| {
                    body.get(name)
                        .and_then(Value::as_u64)
                        .ok_or_else(|| Unavailable(format!("`/ready` without `{name}`")))
                };
                Ok((field("policy_version")?, field("inventory_version")?))
            }
        }
    }

    /// Answers `probes` (see `containment`) in AuthZEN's shape with `context.guards`, without
    /// opening approvals. In process nothing is recorded: the answer closes sessions, it never
    /// lets anything through. Remotely they are ordinary recorded decisions, the only ones the
    /// server answers an enforcement point.
    pub(crate) async fn check(
        &self,
        probes: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<Value>, Unavailable> {
        match self {
            Decider::InProcess(state) => {
                let snapshot = arbiter_server::decide_api::snapshot(state);
                let options = arbiter_engine::DecideOptions {
                    now: unix_now(),
                    decision_id: "session-check".to_owned(),
                    explain: false,
                };
                let mut answers = Vec::with_capacity(probes.len());
                for probe in probes {
                    let request = arbiter_core::request_from_value(probe)
                        .map_err(|err| Unavailable(format!("invalid request {err}")))?;
                    let decision = snapshot.decide(&request, &options);
                    let guards: Vec<_> = decision
                        .hops
                        .iter()
                        .filter_map(|hop| hop.guard.as_ref())
                        .collect();
                    answers.push(json!({
                        "decision": decision.is_allowed(),
                        "context": {
                            "reason_admin": {"en": decision.reason_admin},
                            "guards": guards,
                        }
                    }));
                }
                Ok(answers)
            }
            Decider::Remote(remote) => remote.evaluations(probes, false, timeout).await,
        }
    }

    /// The state of approval request `id` (`pending`, `approved`, `denied`, `expired`), waiting
    /// up to `wait` for it to leave `pending`.
    pub async fn approval_state(&self, id: &str, wait: Duration) -> Result<String, Unavailable> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let state = match self {
                Decider::InProcess(state) => arbiter_server::decide_api::approval_state(state, id)
                    .await
                    .map_err(Unavailable)?,
                Decider::Remote(remote) => {
                    // The server holds the request up to 60 s at a time.
                    let seconds = left.as_secs().min(60);
                    let response = remote
                        .client
                        .get(format!(
                            "{}/admin/v1/approvals/{id}?wait={seconds}",
                            remote.base
                        ))
                        .bearer_auth(&remote.api_key)
                        .timeout(Duration::from_secs(seconds + 5))
                        .send()
                        .await
                        .map_err(|err| Unavailable(format!("cannot reach Arbiter: {err}")))?;
                    let body = read(response).await?;
                    body.get("state")
                        .and_then(Value::as_str)
                        .unwrap_or("unknown")
                        .to_owned()
                }
            };
            if state != "pending" || left.is_zero() {
                return Ok(state);
            }
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn evaluate(
    state: &Arc<AppState>,
    requests: Vec<DecisionRequest>,
    settle_approvals: bool,
) -> Vec<Value> {
    arbiter_server::decide_api::evaluate(state, "mcp-gateway", requests, settle_approvals).await
}
