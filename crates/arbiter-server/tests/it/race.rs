//! Issue 5, "on the next decision": while many deciders hammer requests that are allowed, an
//! administrator quarantines an agent, revokes one (with its credential and a delegation chain
//! through it), or rolls the policy set back, at a random moment. No decision that *started*
//! after the control call *returned* may be allowed.
//!
//! A decision's start is taken on the client just before its request is sent, and the control's
//! return just after its response arrived, so a decision counted as "after" really began after
//! the server had answered the control. Decisions in flight at that moment may go either way;
//! they are counted, not judged. The decision log is read back at the end to check that every
//! allow was recorded, and was decided against a state older than the control.
//!
//! The random moments come from a seed printed by each test; set `ARBITER_RACE_SEED` to repeat
//! a run. Nothing here asserts a timing: the figures printed (and the control call's latency in
//! the dev profile) are for the reader.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Trials per test (the issue's bar is at least 200).
const TRIALS: usize = 200;
/// Concurrent deciders per trial, each with its own loop over the trial's requests.
const DECIDERS: usize = 8;
/// A trial ends once this many decisions have started after the control returned.
const AFTER_PER_TRIAL: usize = 2 * DECIDERS;
/// The control fires at a uniformly random moment up to this long after the deciders start.
const MAX_DELAY: Duration = Duration::from_millis(10);
/// Only a stalled server takes this long; the trial then fails rather than hang.
const STALL: Duration = Duration::from_secs(30);

/// support-copilot calls a CRM tool: allowed by `support-agents-use-crm`.
const COPILOT_CALLS_CRM: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;
/// alice → support-copilot → triage-agent reads a public dataset: every hop is allowed.
const CHAIN_THROUGH_COPILOT: &str = r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"},"context":{"delegation":[{"type":"Human","id":"alice"},{"type":"Agent","id":"support-copilot"}]}}"#;
/// bob reads customer PII: denied by the demo policies (version 1), allowed by version 2.
const BOB_READS_PII: &str = r#"{"subject":{"type":"Human","id":"bob"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"customer-pii"}}"#;

/// The policies and inventory of the revoke race: no schema, so that credentials can be loaded.
const CREW_POLICIES: &str = r#"@id("crew-reads-docs")
permit(principal in Group::"crew", action == Action::"read", resource == Dataset::"docs");"#;
const CREW_INVENTORY: &str = r#"{
  "groups": [{"id": "crew"}],
  "identities": [
    {"id": "alice", "kind": "human", "member_of": [{"type": "Group", "id": "crew"}]},
    {"id": "worker", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Group", "id": "crew"}]}
  ],
  "resources": [{"type": "Dataset", "id": "docs", "sensitivity": "public"}]
}"#;

/// One answered decision, as the client saw it.
struct Observed {
    /// Index into the trial's requests.
    request: usize,
    started: Instant,
    answered: Instant,
    status: u16,
    allowed: bool,
    decision_id: String,
}

/// One trial: the control call and every decision made around it.
struct Trial {
    control_started: Instant,
    control_returned: Instant,
    control_answer: Value,
    observed: Vec<Observed>,
}

/// splitmix64: enough randomness for the moments, with a seed that can be printed and repeated.
struct Moments(u64);

impl Moments {
    fn seeded(test: &str) -> Self {
        let seed = std::env::var("ARBITER_RACE_SEED")
            .ok()
            .and_then(|seed| seed.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{test}: ARBITER_RACE_SEED={seed}");
        Moments(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn delay(&mut self) -> Duration {
        Duration::from_micros(self.next() % MAX_DELAY.as_micros() as u64)
    }
}

/// Posts a decision request; the start is read just before the request is handed to the client.
async fn decide_at(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &str,
) -> (Instant, u16, Value) {
    let request = client
        .post(url)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.to_owned());
    let started = Instant::now();
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let answer = response.json::<Value>().await.unwrap_or(Value::Null);
    (started, status, answer)
}

/// Posts an administration call; its return is read as soon as the response has arrived.
async fn control_at(server: &TestServer, path: &str, body: Value) -> (Instant, Value) {
    let response = server
        .client
        .post(format!("{}{path}", server.base))
        .header(
            "authorization",
            format!("Bearer {}", server.key(Role::Admin)),
        )
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let returned = Instant::now();
    let status = response.status().as_u16();
    let answer = response.json::<Value>().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{path}: {answer}");
    (returned, answer)
}

/// Sends an administration call that is not raced, and expects `expected`.
async fn admin(server: &TestServer, path: &str, body: Value, expected: u16) -> Value {
    let (status, _, answer) = server
        .send(
            "POST",
            path,
            Some(server.key(Role::Admin)),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(status, expected, "{path}: {answer}");
    answer
}

/// Decides each request once and expects it allowed; returns the decision ids. Run right after
/// the state was restored, so it also checks that a restore takes effect on the next decision.
async fn expect_allowed(server: &TestServer, requests: &[String]) -> Vec<String> {
    let mut ids = Vec::new();
    for request in requests {
        let (status, answer) = server.decide(request).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["decision"], true,
            "not allowed before the control: {request}: {answer}"
        );
        ids.push(answer["context"]["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Hammers `requests` with [`DECIDERS`] concurrent loops, fires `control` after `delay`, and
/// stops once [`AFTER_PER_TRIAL`] decisions have started after the control returned.
async fn run_trial<Fut>(
    server: &TestServer,
    deciders: &reqwest::Client,
    requests: &Arc<Vec<String>>,
    delay: Duration,
    control: Fut,
) -> Trial
where
    Fut: Future<Output = (Instant, Value)>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let returned: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let after = Arc::new(AtomicUsize::new(0));
    let url = format!("{}/access/v1/evaluation", server.base);
    let key = server.key(Role::EnforcementPoint).to_owned();
    let tasks: Vec<_> = (0..DECIDERS)
        .map(|decider| {
            let (client, url, key, requests) =
                (deciders.clone(), url.clone(), key.clone(), requests.clone());
            let (stop, returned, after) = (stop.clone(), returned.clone(), after.clone());
            tokio::spawn(async move {
                let mut observed = Vec::new();
                let mut turn = decider;
                while !stop.load(Ordering::Acquire) {
                    let request = turn % requests.len();
                    turn += 1;
                    let (started, status, answer) =
                        decide_at(&client, &url, &key, &requests[request]).await;
                    let answered = Instant::now();
                    if returned.get().is_some_and(|returned| started > *returned) {
                        after.fetch_add(1, Ordering::AcqRel);
                    }
                    observed.push(Observed {
                        request,
                        started,
                        answered,
                        status,
                        allowed: answer["decision"] == true,
                        decision_id: answer["context"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    });
                }
                observed
            })
        })
        .collect();
    tokio::time::sleep(delay).await;
    let control_started = Instant::now();
    let (control_returned, control_answer) = control.await;
    returned.set(control_returned).unwrap();
    let deadline = Instant::now() + STALL;
    while after.load(Ordering::Acquire) < AFTER_PER_TRIAL {
        assert!(Instant::now() < deadline, "deciders stalled");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    stop.store(true, Ordering::Release);
    let mut observed = Vec::new();
    for task in tasks {
        observed.extend(task.await.unwrap());
    }
    Trial {
        control_started,
        control_returned,
        control_answer,
        observed,
    }
}

/// What the trials of one test saw, by request.
struct Tally {
    names: Vec<&'static str>,
    trials: usize,
    decisions: usize,
    not_ok: Vec<String>,
    /// Per request: allowed and denied among decisions answered before the control returned.
    allows_before: Vec<usize>,
    denies_before: Vec<usize>,
    /// Per request: started before the control returned, answered after (and of those, allowed).
    in_flight: Vec<usize>,
    in_flight_allowed: Vec<usize>,
    /// Per request: started after the control returned.
    denies_after: Vec<usize>,
    allows_after: Vec<(usize, String)>,
    /// Answered allows (the decisions made to check each trial's starting state included), by
    /// decision id, with their trial.
    allowed_ids: HashMap<String, usize>,
    control_latency: Vec<Duration>,
}

impl Tally {
    fn new(names: Vec<&'static str>) -> Self {
        let n = names.len();
        Tally {
            names,
            trials: 0,
            decisions: 0,
            not_ok: Vec::new(),
            allows_before: vec![0; n],
            denies_before: vec![0; n],
            in_flight: vec![0; n],
            in_flight_allowed: vec![0; n],
            denies_after: vec![0; n],
            allows_after: Vec::new(),
            allowed_ids: HashMap::new(),
            control_latency: Vec::new(),
        }
    }

    fn add(&mut self, trial_idx: usize, checked: Vec<String>, trial: &Trial) {
        self.trials += 1;
        self.control_latency
            .push(trial.control_returned - trial.control_started);
        for id in checked {
            self.allowed_ids.insert(id, trial_idx);
        }
        for seen in &trial.observed {
            self.decisions += 1;
            let request = seen.request;
            if seen.status != 200 || seen.decision_id.is_empty() {
                self.not_ok.push(format!(
                    "trial {trial_idx}, {}: status {}",
                    self.names[request], seen.status
                ));
                continue;
            }
            if seen.allowed {
                self.allowed_ids.insert(seen.decision_id.clone(), trial_idx);
            }
            if seen.started > trial.control_returned {
                if seen.allowed {
                    self.allows_after.push((
                        request,
                        format!(
                            "trial {trial_idx}, {}: decision {} started {:?} after the control returned and was allowed",
                            self.names[request],
                            seen.decision_id,
                            seen.started - trial.control_returned
                        ),
                    ));
                } else {
                    self.denies_after[request] += 1;
                }
            } else if seen.answered > trial.control_returned {
                self.in_flight[request] += 1;
                self.in_flight_allowed[request] += usize::from(seen.allowed);
            } else if seen.allowed {
                self.allows_before[request] += 1;
            } else {
                self.denies_before[request] += 1;
            }
        }
    }

    fn report(&self, test: &str) {
        let mut latency = self.control_latency.clone();
        latency.sort_unstable();
        let at = |percent: usize| latency[(latency.len() * percent / 100).min(latency.len() - 1)];
        println!(
            "{test}: {} trials, {} decisions, {DECIDERS} deciders; control call over HTTP (dev profile) p50 {:?}, p99 {:?}",
            self.trials,
            self.decisions,
            at(50),
            at(99)
        );
        for (idx, name) in self.names.iter().enumerate() {
            println!(
                "  {name}: answered before the control returned: {} allowed, {} denied (already in effect); in flight at the return: {} ({} allowed); started after the return: {} denied, {} allowed",
                self.allows_before[idx],
                self.denies_before[idx],
                self.in_flight[idx],
                self.in_flight_allowed[idx],
                self.denies_after[idx],
                self.allows_after.iter().filter(|(request, _)| *request == idx).count(),
            );
        }
    }

    fn check(&self) {
        assert!(
            self.not_ok.is_empty(),
            "decisions not answered 200:\n{}",
            self.not_ok.join("\n")
        );
        assert!(
            self.allows_after.is_empty(),
            "{} allow(s) started after the control returned:\n{}",
            self.allows_after.len(),
            self.allows_after
                .iter()
                .map(|(_, line)| line.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        );
        for (idx, name) in self.names.iter().enumerate() {
            assert!(
                self.allows_before[idx] > 0,
                "{name} was never allowed while the deciders ran: the race tested nothing"
            );
            assert!(
                self.denies_after[idx] > 0,
                "{name} was never decided after a control returned"
            );
        }
    }
}

/// Every allow in the decision log, as `(decision id, policy version, change seq)`.
async fn logged_allows(server: &TestServer) -> Vec<(String, u64, u64)> {
    let mut allows = Vec::new();
    let mut after = 0u64;
    loop {
        let (status, _, page) = server
            .send(
                "GET",
                &format!(
                    "/admin/v1/decisions?kind=decision&outcome=allow&limit=1000&after={after}"
                ),
                Some(server.key(Role::Auditor)),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let entries = page["entries"].as_array().unwrap();
        let Some(last) = entries.last() else {
            return allows;
        };
        after = last["seq"].as_u64().unwrap();
        for entry in entries {
            let decision = &entry["entry"]["decision"];
            allows.push((
                decision["id"].as_str().unwrap().to_owned(),
                decision["snapshot"]["policy_version"].as_u64().unwrap(),
                decision["snapshot"]["change_seq"].as_u64().unwrap(),
            ));
        }
    }
}

/// The log holds exactly the allows that were answered, and `before_control` holds for each of
/// them given its trial: it was decided against a state older than that trial's control.
async fn check_log(
    server: &TestServer,
    tally: &Tally,
    before_control: impl Fn(usize, u64, u64) -> bool,
) -> usize {
    let logged = logged_allows(server).await;
    let logged_ids: HashSet<&str> = logged.iter().map(|(id, _, _)| id.as_str()).collect();
    let missing: Vec<&String> = tally
        .allowed_ids
        .keys()
        .filter(|id| !logged_ids.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "answered allows not in the log: {missing:?}"
    );
    let mut unexpected = Vec::new();
    for (id, policy_version, change_seq) in &logged {
        match tally.allowed_ids.get(id) {
            None => unexpected.push(format!("{id}: logged as allowed, never answered allowed")),
            Some(trial) if !before_control(*trial, *policy_version, *change_seq) => {
                unexpected.push(format!(
                    "{id} (trial {trial}): allowed against policy version {policy_version}, change {change_seq}, which includes the control"
                ))
            }
            Some(_) => {}
        }
    }
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
    logged.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantine_race_no_decision_started_after_the_call_is_allowed() {
    let test = "quarantine race";
    let mut moments = Moments::seeded(test);
    let server = TestServer::start(Bundle::demo()).await;
    let deciders = reqwest::Client::new();
    let requests = Arc::new(vec![
        COPILOT_CALLS_CRM.to_owned(),
        CHAIN_THROUGH_COPILOT.to_owned(),
    ]);
    let mut tally = Tally::new(vec![
        "support-copilot itself",
        "chain alice → support-copilot → triage-agent",
    ]);
    let lifecycle = "/admin/v1/identities/ai_agent/support-copilot/lifecycle";
    let mut control_seqs = Vec::with_capacity(TRIALS);
    for trial_idx in 0..TRIALS {
        let checked = expect_allowed(&server, &requests).await;
        let body = json!({"lifecycle": "quarantined", "reason": format!("race trial {trial_idx}")});
        let trial = run_trial(
            &server,
            &deciders,
            &requests,
            moments.delay(),
            control_at(&server, lifecycle, body),
        )
        .await;
        control_seqs.push(trial.control_answer["change_seq"].as_u64().unwrap());
        tally.add(trial_idx, checked, &trial);
        admin(
            &server,
            lifecycle,
            json!({"lifecycle": "active", "reason": format!("race trial {trial_idx} over")}),
            200,
        )
        .await;
    }
    tally.report(test);
    tally.check();
    let logged = check_log(&server, &tally, |trial, _, change_seq| {
        change_seq < control_seqs[trial]
    })
    .await;
    println!("  decision log: {logged} allows, each decided against a state before its trial's quarantine");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_race_denies_the_identity_its_credential_and_chains_through_it() {
    let test = "revoke race";
    let mut moments = Moments::seeded(test);
    let server = TestServer::start(Bundle {
        policies: vec![("crew.cedar".to_owned(), CREW_POLICIES.to_owned())],
        inventory: Some(CREW_INVENTORY.to_owned()),
        ..Bundle::default()
    })
    .await;
    let deciders = reqwest::Client::new();
    let mut tally = Tally::new(vec![
        "the agent itself",
        "its credential",
        "chain alice → agent → worker",
    ]);
    let mut control_seqs = Vec::with_capacity(TRIALS);
    for trial_idx in 0..TRIALS {
        // Revocation is permanent, so every trial revokes an agent of its own.
        let agent = format!("racer-{trial_idx}");
        let token = format!("{agent}-token");
        let crew = json!([{"type": "Group", "id": "crew"}]);
        admin(
            &server,
            "/admin/v1/identities",
            json!({"id": agent, "kind": "ai_agent", "owner": "alice", "member_of": crew}),
            201,
        )
        .await;
        admin(
            &server,
            "/admin/v1/identities",
            json!({"id": token, "kind": "credential", "owner": "alice", "member_of": crew,
                   "credential": {"holder": {"type": "Agent", "id": agent}}}),
            201,
        )
        .await;
        let read_docs = |subject: Value, context: Value| {
            json!({"subject": subject, "action": {"name": "read"},
                   "resource": {"type": "Dataset", "id": "docs"}, "context": context})
            .to_string()
        };
        let requests = Arc::new(vec![
            read_docs(json!({"type": "Agent", "id": agent}), json!({})),
            read_docs(json!({"type": "Credential", "id": token}), json!({})),
            read_docs(
                json!({"type": "Agent", "id": "worker"}),
                json!({"delegation": [{"type": "Human", "id": "alice"}, {"type": "Agent", "id": agent}]}),
            ),
        ]);
        let checked = expect_allowed(&server, &requests).await;
        let path = format!("/admin/v1/identities/ai_agent/{agent}/lifecycle");
        let body = json!({"lifecycle": "revoked", "reason": format!("race trial {trial_idx}")});
        let trial = run_trial(
            &server,
            &deciders,
            &requests,
            moments.delay(),
            control_at(&server, &path, body),
        )
        .await;
        control_seqs.push(trial.control_answer["change_seq"].as_u64().unwrap());
        tally.add(trial_idx, checked, &trial);
    }
    tally.report(test);
    tally.check();
    let logged = check_log(&server, &tally, |trial, _, change_seq| {
        change_seq < control_seqs[trial]
    })
    .await;
    println!("  decision log: {logged} allows, each decided against a state before its trial's revocation");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_race_no_decision_started_after_the_call_is_allowed() {
    let test = "rollback race";
    let mut moments = Moments::seeded(test);
    let server = TestServer::start(Bundle::demo()).await;
    let demo = Bundle::demo().policies[0].1.clone();
    let grant = "\n@id(\"incident-bob-reads-pii\")\n\
                 permit(principal == Human::\"bob\", action == Action::\"read\", resource == Dataset::\"customer-pii\");\n";
    let uploaded = admin(
        &server,
        "/admin/v1/policies",
        json!({"sources": [{"name": "policies.cedar", "text": format!("{demo}{grant}")}],
               "reason": "temporary grant for an incident"}),
        201,
    )
    .await;
    assert_eq!(uploaded["version"], 2, "{uploaded}");
    let deciders = reqwest::Client::new();
    let requests = Arc::new(vec![BOB_READS_PII.to_owned()]);
    let mut tally = Tally::new(vec!["bob reads customer-pii"]);
    for trial_idx in 0..TRIALS {
        admin(
            &server,
            "/admin/v1/policies/2/activate",
            json!({"reason": format!("race trial {trial_idx}")}),
            200,
        )
        .await;
        let checked = expect_allowed(&server, &requests).await;
        let body = json!({"reason": format!("race trial {trial_idx}: roll back")});
        let trial = run_trial(
            &server,
            &deciders,
            &requests,
            moments.delay(),
            control_at(&server, "/admin/v1/policies/rollback", body),
        )
        .await;
        assert_eq!(trial.control_answer["active_version"], 1);
        tally.add(trial_idx, checked, &trial);
    }
    tally.report(test);
    tally.check();
    let logged = check_log(&server, &tally, |_, policy_version, _| policy_version == 2).await;
    println!("  decision log: {logged} allows, each decided by policy version 2");
    server.stop().await;
}
