//! Trust debt over the API: the report as JSON and HTML, computed by background runs with
//! progress (one at a time, a failed one leaving the last good report served), publishing the
//! figures that policies then read on the very next decision, and the automatic downgrade,
//! recorded and reversible.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::{json, Value};

const POLICIES: &str = r#"
@id("readers-read")
permit(principal in Role::"readers", action == Action::"read", resource);

@id("no-reads-on-unrotated-credentials")
forbid(principal, action == Action::"read", resource)
when { principal has debt && principal.debt.unrotated_days > 90 };
"#;

fn bundle(now: i64) -> Bundle {
    let day = 86_400;
    let inventory = json!({
        "groups": [{"type": "Role", "id": "readers"}],
        "resources": [{"type": "Dataset", "id": "docs", "sensitivity": "internal"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "fresh", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "readers"}]},
            {"id": "stale-keys", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "readers"}]},
            {"id": "old-key", "kind": "credential", "owner": "alice",
             "credential": {"holder": {"type": "Agent", "id": "stale-keys"}, "issued_at": now - 150 * day,
                            "expires_at": now + 30 * day, "last_used_at": now - day}},
            {"id": "orphan", "kind": "service_account"}
        ]
    });
    Bundle {
        policies: vec![("policies.cedar".into(), POLICIES.into())],
        inventory: Some(inventory.to_string()),
        cedar_entities: None,
        schema: None,
    }
}

/// Follows run `id` until it is no longer running, and returns its status.
async fn wait_for_run(server: &TestServer, key: Option<&str>, id: &str) -> Value {
    // A guard against hanging, not a timing assertion: a report over a handful of decisions.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let (status, _, run) = server
            .send("GET", &format!("/admin/v1/debt/runs/{id}"), key, None)
            .await;
        assert_eq!(status, 200, "{run}");
        if run["status"] != "running" {
            return run;
        }
        assert!(std::time::Instant::now() < deadline, "still running: {run}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The report `GET /admin/v1/debt` serves; when the first run is still computing (a 202), the
/// run is followed until it finishes and its report fetched.
async fn fetch_report(server: &TestServer, key: Option<&str>, query: &str) -> Value {
    let (status, _, body) = server
        .send("GET", &format!("/admin/v1/debt{query}"), key, None)
        .await;
    if status == 200 {
        return body;
    }
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let run = wait_for_run(server, key, &id).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let (status, _, body) = server
        .send("GET", &format!("/admin/v1/debt?run={id}"), key, None)
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Starts a run as `key` and follows it to its end; its final status.
async fn run_to_end(server: &TestServer, key: Option<&str>, body: &str) -> Value {
    let (status, _, run) = server
        .send("POST", "/admin/v1/debt/runs", key, Some(body.to_owned()))
        .await;
    assert_eq!(status, 202, "{run}");
    wait_for_run(server, key, run["id"].as_str().unwrap()).await
}

fn read(agent: &str) -> String {
    json!({"subject": {"type": "Agent", "id": agent}, "action": {"name": "read"},
           "resource": {"type": "Dataset", "id": "docs"}})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debt_report_publish_policy_input_and_downgrade_over_the_api() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let server = TestServer::start(bundle(now)).await;
    for agent in ["fresh", "stale-keys"] {
        let (status, answer) = server.decide(&read(agent)).await;
        assert_eq!(
            (status, answer["decision"].clone()),
            (200, json!(true)),
            "{agent}"
        );
    }

    let auditor = Some(server.key(Role::Auditor));
    // No report yet: the read starts the first run itself.
    let report = fetch_report(&server, auditor, "").await;
    assert_eq!(report["run"]["trigger"], "on_demand", "{report}");
    let kinds: Vec<(String, String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|finding| {
            (
                finding["identity"].as_str().unwrap().to_owned(),
                finding["kind"].as_str().unwrap().to_owned(),
                finding["owasp"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&(
            "ServiceAccount::\"orphan\"".into(),
            "orphaned".into(),
            "NHI1".into()
        )),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(
            "Credential::\"old-key\"".into(),
            "unrotated".into(),
            "NHI7".into()
        )),
        "{kinds:?}"
    );
    assert!(
        !kinds
            .iter()
            .any(|(identity, _, _)| identity == "Agent::\"fresh\""),
        "{kinds:?}"
    );

    let (status, headers, _) = server
        .send("GET", "/admin/v1/debt/report.html", auditor, None)
        .await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));

    // An auditor reads but does not publish.
    let body = Some(r#"{"reason":"weekly trust-debt review"}"#.to_owned());
    let (status, _, _) = server
        .send("POST", "/admin/v1/debt/publish", auditor, body.clone())
        .await;
    assert_eq!(status, 403);

    // Downgrade at 25 points: the orphan (one high finding) is suspended.
    std::fs::write(
        server.log_dir.path().join("debt.json"),
        r#"{"downgrade_score": 25}"#,
    )
    .unwrap();
    let operator = Some(server.key(Role::Operator));
    let (status, _, published) = server
        .send("POST", "/admin/v1/debt/publish", operator, body.clone())
        .await;
    assert_eq!(status, 200, "{published}");
    assert!(published["published"].as_u64().unwrap() >= 4, "{published}");
    assert_eq!(
        published["downgraded"],
        json!([{"identity": "ServiceAccount::\"orphan\"", "score": 25, "lifecycle": "suspended"}])
    );

    // The figures are on the identity, and the very next decision reads them.
    let (_, _, agent) = server
        .send(
            "GET",
            "/admin/v1/identities/ai_agent/stale-keys",
            operator,
            None,
        )
        .await;
    assert_eq!(
        agent["attributes"]["debt"]["unrotated_days"],
        json!(150),
        "{agent}"
    );
    let (_, answer) = server.decide(&read("stale-keys")).await;
    assert_eq!(answer["decision"], json!(false), "{answer}");
    let (_, answer) = server.decide(&read("fresh")).await;
    assert_eq!(answer["decision"], json!(true), "{answer}");

    // The downgrade is in the change feed with its reason, and is reversible.
    let (_, _, changes) = server
        .send("GET", "/admin/v1/changes?limit=1000", operator, None)
        .await;
    let suspended = changes
        .as_array()
        .unwrap()
        .iter()
        .find(|change: &&Value| {
            change["kind"] == "identity.lifecycle"
                && change["subject"] == "ServiceAccount::\"orphan\""
        })
        .cloned()
        .unwrap_or_else(|| panic!("no lifecycle change in {changes}"));
    assert!(
        suspended["reason"]
            .as_str()
            .unwrap()
            .contains("trust debt score 25"),
        "{suspended}"
    );
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/identities/service_account/orphan/lifecycle",
            operator,
            Some(r#"{"lifecycle":"active","reason":"owner assigned, debt paid"}"#.to_owned()),
        )
        .await;
    assert_eq!(status, 200);

    // Publishing again writes nothing new, and the trend keeps what was published (one point
    // per second: two publishes within the same second are one point). The report served is
    // the last run's, so a new run shows the published points.
    std::fs::remove_file(server.log_dir.path().join("debt.json")).unwrap();
    let (_, _, again) = server
        .send("POST", "/admin/v1/debt/publish", operator, body)
        .await;
    assert_eq!(again["published"], json!(0), "{again}");
    let run = run_to_end(&server, operator, r#"{"suggestions":0}"#).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let report = fetch_report(&server, auditor, "?suggestions=0").await;
    assert_eq!(report["run"]["id"], run["id"]);
    let history = report["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 2, "{history:?}");
    assert_eq!(history.last().unwrap()["findings"], json!(2), "{history:?}");

    // A finished run's report can be published as it is (nothing to compute in the request):
    // only the latest good one, and an unknown run is not found.
    let by_run =
        |id: &Value| Some(json!({"reason": "publish the weekly run", "run": id}).to_string());
    let (status, _, published) = server
        .send(
            "POST",
            "/admin/v1/debt/publish",
            operator,
            by_run(&run["id"]),
        )
        .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["published"], json!(0), "{published}");
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/debt/publish",
            operator,
            by_run(&json!("dr_none")),
        )
        .await;
    assert_eq!(status, 404);
    let newer = run_to_end(&server, operator, r#"{"suggestions":0}"#).await;
    assert_eq!(newer["status"], "succeeded", "{newer}");
    let (status, _, refused) = server
        .send(
            "POST",
            "/admin/v1/debt/publish",
            operator,
            by_run(&run["id"]),
        )
        .await;
    assert_eq!(status, 409, "{refused}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debt_downgrade_can_be_a_control_with_an_overlay_and_is_lifted_to_undo() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let policies = r#"
@id("readers-read")
permit(principal in Role::"readers", action == Action::"read", resource);

@id("debt-restricted")
@overlay("debt-restricted")
forbid(principal, action == Action::"read", resource);
"#;
    let inventory = json!({
        "groups": [{"type": "Role", "id": "readers"}],
        "resources": [{"type": "Dataset", "id": "docs", "sensitivity": "internal"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "fresh", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "readers"}]},
            {"id": "borrowed", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Role", "id": "readers"}]}
        ],
        "signals": [{"subject": {"type": "Agent", "id": "borrowed"}, "name": "interactive_login", "value": true,
                     "source": "idp", "observed_at": now - 60, "ttl_seconds": 86_400}]
    });
    let server = TestServer::start(Bundle {
        policies: vec![("policies.cedar".into(), policies.into())],
        inventory: Some(inventory.to_string()),
        cedar_entities: None,
        schema: None,
    })
    .await;
    for agent in ["fresh", "borrowed"] {
        let (_, answer) = server.decide(&read(agent)).await;
        assert_eq!(answer["decision"], json!(true), "{agent}: {answer}");
    }
    std::fs::write(
        server.log_dir.path().join("debt.json"),
        r#"{"downgrade_score": 25, "downgrade_overlay": "debt-restricted"}"#,
    )
    .unwrap();
    let operator = Some(server.key(Role::Operator));
    let body = Some(r#"{"reason":"weekly trust-debt review"}"#.to_owned());
    let (status, _, published) = server
        .send("POST", "/admin/v1/debt/publish", operator, body.clone())
        .await;
    assert_eq!(status, 200, "{published}");
    let downgraded = published["downgraded"].as_array().unwrap();
    assert_eq!(downgraded.len(), 1, "{published}");
    assert_eq!(downgraded[0]["identity"], "Agent::\"borrowed\"");
    assert_eq!(downgraded[0]["overlay"], "debt-restricted");
    let control = downgraded[0]["control"].as_str().unwrap().to_owned();

    // The overlay applies to the downgraded agent only, from the next decision on.
    let (_, answer) = server.decide(&read("borrowed")).await;
    assert_eq!(answer["decision"], json!(false), "{answer}");
    let (_, answer) = server.decide(&read("fresh")).await;
    assert_eq!(answer["decision"], json!(true), "{answer}");
    // Publishing again while it is in force places no second control.
    let (_, _, again) = server
        .send("POST", "/admin/v1/debt/publish", operator, body)
        .await;
    assert_eq!(again["downgraded"], json!([]), "{again}");

    // Lifted with a reason, the agent is back to what its policies allow.
    let (status, _, lifted) = server
        .send(
            "POST",
            &format!("/admin/v1/controls/{control}/lift"),
            operator,
            Some(r#"{"reason":"the person now has their own account"}"#.to_owned()),
        )
        .await;
    assert_eq!(status, 200, "{lifted}");
    let (_, answer) = server.decide(&read("borrowed")).await;
    assert_eq!(answer["decision"], json!(true), "{answer}");
    server.stop().await;
}

const MEMBERSHIP_POLICIES: &str = r#"
@id("readers-read")
permit(principal in Role::"readers", action == Action::"read", resource);

@id("admins-delete")
permit(principal in Role::"admins", action == Action::"delete", resource);

@id("contractors-write")
permit(principal in Role::"contractors", action == Action::"write", resource);

@id("contractors-read")
permit(principal, action == Action::"read", resource)
when { principal in Role::"contractors" };
"#;

fn membership_bundle() -> Bundle {
    let inventory = json!({
        "groups": [{"type": "Role", "id": "readers"}, {"type": "Role", "id": "admins"},
                   {"type": "Role", "id": "contractors"}],
        "resources": [{"type": "Dataset", "id": "docs", "sensitivity": "internal"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "hoarder", "kind": "ai_agent", "owner": "alice",
             "member_of": [{"type": "Role", "id": "readers"}, {"type": "Role", "id": "admins"}]},
            {"id": "temp", "kind": "ai_agent", "owner": "alice",
             "member_of": [{"type": "Role", "id": "contractors"}]}
        ]
    });
    Bundle {
        policies: vec![("policies.cedar".into(), MEMBERSHIP_POLICIES.into())],
        inventory: Some(inventory.to_string()),
        cedar_entities: None,
        schema: None,
    }
}

fn act(agent: &str, action: &str) -> String {
    json!({"subject": {"type": "Agent", "id": agent}, "action": {"name": action},
           "resource": {"type": "Dataset", "id": "docs"}})
    .to_string()
}

/// The membership suggestion for `identity` in `report`.
fn membership_suggestion(report: &Value, identity: &str) -> Value {
    report["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|suggestion| suggestion["kind"] == "membership" && suggestion["identity"] == identity)
        .unwrap_or_else(|| panic!("no membership suggestion for {identity}: {report:#}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_suggestion_is_applied_as_one_identity_change_and_refused_when_it_breaks() {
    let server = TestServer::start(membership_bundle()).await;
    for agent in ["hoarder", "temp", "hoarder", "temp"] {
        let (status, answer) = server.decide(&act(agent, "read")).await;
        assert_eq!(
            (status, answer["decision"].clone()),
            (200, json!(true)),
            "{agent}"
        );
    }
    let operator = Some(server.key(Role::Operator));
    let report = fetch_report(&server, operator, "").await;
    // Nothing kept before this report: no previous points, the trend is now alone.
    let owner = &report["scores"]["owners"][0];
    assert_eq!(owner["key"], "Human::\"alice\"");
    assert_eq!(
        (owner["previous"].clone(), owner["delta"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(owner["trend"].as_array().unwrap().len(), 1);

    // hoarder never deleted: leaving `admins` changes none of the 4 recorded decisions.
    let hoarder = membership_suggestion(&report, "Agent::\"hoarder\"");
    assert_eq!(hoarder["removes"], json!(["member of Role::\"admins\""]));
    assert_eq!(hoarder["check"]["changed"], 0, "{hoarder:#}");
    assert_eq!(hoarder["check"]["evaluated"], 4);
    // temp's reads were allowed because it is a contractor, although no grant of the role was
    // used: the replay finds the 2 reads the removal would deny.
    let temp = membership_suggestion(&report, "Agent::\"temp\"");
    assert_eq!(temp["removes"], json!(["member of Role::\"contractors\""]));
    assert_eq!(temp["check"]["changed"], 2, "{temp:#}");
    // The same report, served with fewer suggestions: only the most indebted identity's, or none.
    let first = report["ranking"]
        .as_array()
        .unwrap()
        .iter()
        .find(|debt| {
            debt["kinds"]
                .as_array()
                .unwrap()
                .contains(&json!("over_privileged"))
        })
        .unwrap()["identity"]
        .clone();
    let fewer = fetch_report(&server, operator, "?suggestions=1").await;
    let identities: Vec<&Value> = fewer["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|suggestion| &suggestion["identity"])
        .collect();
    assert!(
        !identities.is_empty() && identities.iter().all(|identity| **identity == first),
        "{identities:?}"
    );
    assert_eq!(fewer["run"]["id"], report["run"]["id"]);
    let none = fetch_report(&server, operator, "?suggestions=0").await;
    assert_eq!(none["suggestions"], json!([]));

    let path = |suggestion: &Value| {
        format!(
            "/admin/v1/debt/suggestions/{}/apply",
            suggestion["id"].as_str().unwrap()
        )
    };
    let body =
        |reason: &str, force: bool| Some(json!({"reason": reason, "force": force}).to_string());
    let (status, _, _) = server
        .send(
            "POST",
            &path(&hoarder),
            Some(server.key(Role::Auditor)),
            body("review", false),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, problem) = server
        .send("POST", &path(&hoarder), operator, body(" ", false))
        .await;
    assert_eq!(status, 400, "{problem}");
    let (status, _, problem) = server
        .send("POST", &path(&temp), operator, body("review", false))
        .await;
    assert_eq!(status, 409, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("would change 2 recorded decisions"),
        "{problem}"
    );
    let policy = report["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|suggestion| suggestion["kind"] == "policies")
        .unwrap();
    let (status, _, problem) = server
        .send("POST", &path(policy), operator, body("review", false))
        .await;
    assert_eq!(status, 400, "{problem}");

    // Applied: one identity change with the reason and the suggestion id.
    let (status, _, applied) = server
        .send(
            "POST",
            &path(&hoarder),
            operator,
            body("quarterly review", false),
        )
        .await;
    assert_eq!(status, 200, "{applied}");
    assert_eq!(
        applied["applied"]["member_of"],
        json!([{"type": "Role", "id": "readers"}])
    );
    let (_, _, identity) = server
        .send(
            "GET",
            "/admin/v1/identities/ai_agent/hoarder",
            operator,
            None,
        )
        .await;
    assert_eq!(
        identity["member_of"],
        json!([{"type": "Role", "id": "readers"}])
    );
    let (_, _, changes) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            operator,
            None,
        )
        .await;
    let change = changes.as_array().unwrap().last().unwrap();
    assert_eq!(change["kind"], "identity.put");
    let reason = change["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("quarterly review") && reason.contains(hoarder["id"].as_str().unwrap()),
        "{reason}"
    );
    // The next decision sees it; what hoarder used still works.
    let (_, answer) = server.decide(&act("hoarder", "read")).await;
    assert_eq!(answer["decision"], json!(true));
    let (_, answer) = server.decide(&act("hoarder", "delete")).await;
    assert_eq!(answer["decision"], json!(false));
    // The same suggestion again: the state moved on, so it is no longer current.
    let (status, _, problem) = server
        .send("POST", &path(&hoarder), operator, body("again", false))
        .await;
    assert_eq!(status, 409, "{problem}");

    // Forced, the breaking one applies, and temp's reads are denied from then on.
    let (status, _, applied) = server
        .send("POST", &path(&temp), operator, body("contract ended", true))
        .await;
    assert_eq!(status, 200, "{applied}");
    let (_, answer) = server.decide(&act("temp", "read")).await;
    assert_eq!(answer["decision"], json!(false));
}

/// `debt.json` as a named pipe holds a run at its first step (reading the thresholds) until the
/// test writes them, so "while it runs" is certain rather than a race with a fast computation.
#[cfg(unix)]
fn hold_runs_at_thresholds(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo {}", path.display());
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debt_runs_compute_in_the_background_one_at_a_time_with_progress_and_fail_closed() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let server = TestServer::start(bundle(now)).await;
    for agent in ["fresh", "stale-keys"] {
        let (status, _) = server.decide(&read(agent)).await;
        assert_eq!(status, 200);
    }
    let auditor = server.key(Role::Auditor);
    let operator = server.key(Role::Operator);
    let (status, _, _) = server
        .send("GET", "/admin/v1/debt/runs/latest", Some(auditor), None)
        .await;
    assert_eq!(status, 404, "no run yet");
    // An auditor follows runs but does not start them.
    let (status, _, _) = server
        .send("POST", "/admin/v1/debt/runs", Some(auditor), None)
        .await;
    assert_eq!(status, 403);

    let thresholds = server.log_dir.path().join("debt.json");
    hold_runs_at_thresholds(&thresholds);
    let (status, headers, run) = server
        .send(
            "POST",
            "/admin/v1/debt/runs",
            Some(operator),
            Some(r#"{"suggestions":0}"#.to_owned()),
        )
        .await;
    assert_eq!(status, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/admin/v1/debt/runs/{id}")
    );
    assert_eq!(
        (&run["status"], &run["trigger"], &run["suggestions"]),
        (&json!("running"), &json!("api"), &json!(0)),
        "{run}"
    );
    // Its progress, by id and as the latest run.
    let (status, _, seen) = server
        .send(
            "GET",
            &format!("/admin/v1/debt/runs/{id}"),
            Some(auditor),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(seen["status"], "running", "{seen}");
    assert_eq!(seen["progress"]["phase"], "starting", "{seen}");
    assert_eq!(seen["finished_at"], Value::Null);
    let (_, _, latest) = server
        .send("GET", "/admin/v1/debt/runs/latest", Some(auditor), None)
        .await;
    assert_eq!(latest["id"], json!(id));
    // A second start while it runs is refused, naming the running one; nothing new starts.
    let (status, headers, conflict) = server
        .send("POST", "/admin/v1/debt/runs", Some(operator), None)
        .await;
    assert_eq!(status, 409, "{conflict}");
    assert_eq!(conflict["run"]["id"], json!(id), "{conflict}");
    assert_eq!(
        headers["location"].to_str().unwrap(),
        format!("/admin/v1/debt/runs/{id}")
    );
    // With no report yet, a read joins the running run: its progress, and no second run.
    let (status, _, pending) = server
        .send("GET", "/admin/v1/debt?wait=0", Some(auditor), None)
        .await;
    assert_eq!(status, 202, "{pending}");
    assert_eq!(pending["id"], json!(id));
    let response = server
        .client
        .get(format!("{}/admin/v1/debt/report.html?wait=0", server.base))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let page = response.text().await.unwrap();
    assert!(
        page.contains(r#"http-equiv="refresh""#) && page.contains(&id),
        "{page}"
    );

    // Released: the run reads the thresholds and finishes.
    let pipe = thresholds.clone();
    tokio::task::spawn_blocking(move || std::fs::write(pipe, "{}"))
        .await
        .unwrap()
        .unwrap();
    let finished = wait_for_run(&server, Some(auditor), &id).await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["progress"]["phase"], "history", "{finished}");
    assert_eq!(finished["progress"]["percent"], json!(100.0), "{finished}");
    assert_eq!(
        finished["report"],
        json!(format!("/admin/v1/debt?run={id}"))
    );
    let (status, _, report) = server
        .send("GET", "/admin/v1/debt", Some(auditor), None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["run"]["id"], json!(id));
    assert_eq!(report["computed_at"], finished["finished_at"]);
    assert!(report["age_seconds"].as_i64().unwrap() >= 0, "{report}");
    assert_eq!(report["suggestions"], json!([]));
    assert!(report.get("latest_run").is_none(), "{report}");
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(
                |finding| finding["identity"] == "ServiceAccount::\"orphan\""
                    && finding["kind"] == "orphaned"
            ),
        "{report}"
    );

    // A run that fails reports its error; the last good report stays served, with its age and
    // the failure beside it.
    std::fs::remove_file(&thresholds).unwrap();
    std::fs::write(&thresholds, "not json").unwrap();
    let failed = run_to_end(&server, Some(operator), "{}").await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("invalid thresholds"),
        "{failed}"
    );
    let (status, _, report) = server
        .send("GET", "/admin/v1/debt", Some(auditor), None)
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["run"]["id"], json!(id));
    assert_eq!(report["latest_run"]["id"], failed["id"]);
    assert_eq!(report["latest_run"]["status"], "failed");
    let (status, _, problem) = server
        .send(
            "GET",
            &format!("/admin/v1/debt?run={}", failed["id"].as_str().unwrap()),
            Some(auditor),
            None,
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    let page = server
        .client
        .get(format!("{}/admin/v1/debt/report.html", server.base))
        .bearer_auth(auditor)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(&id)
            && page.contains(failed["id"].as_str().unwrap())
            && page.contains("failed"),
        "{page}"
    );

    // Fixed, the next run's report replaces it, and the old one is no longer kept.
    std::fs::remove_file(&thresholds).unwrap();
    let next = run_to_end(&server, Some(operator), "").await;
    assert_eq!(next["status"], "succeeded", "{next}");
    let (_, _, report) = server
        .send("GET", "/admin/v1/debt", Some(auditor), None)
        .await;
    assert_eq!(report["run"]["id"], next["id"]);
    assert_eq!(report["run"]["suggestions"], json!(10));
    assert!(report.get("latest_run").is_none(), "{report}");
    let (status, _, _) = server
        .send(
            "GET",
            &format!("/admin/v1/debt?run={id}"),
            Some(auditor),
            None,
        )
        .await;
    assert_eq!(status, 409);
    server.stop().await;
}
