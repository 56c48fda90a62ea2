//! Trust debt over the API: the report as JSON and HTML, publishing the figures that policies
//! then read on the very next decision, and the automatic downgrade, recorded and reversible.

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
    let (status, _, report) = server.send("GET", "/admin/v1/debt", auditor, None).await;
    assert_eq!(status, 200, "{report}");
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
    // per second: two publishes within the same second are one point).
    std::fs::remove_file(server.log_dir.path().join("debt.json")).unwrap();
    let (_, _, again) = server
        .send("POST", "/admin/v1/debt/publish", operator, body)
        .await;
    assert_eq!(again["published"], json!(0), "{again}");
    let (_, _, report) = server
        .send("GET", "/admin/v1/debt?suggestions=0", auditor, None)
        .await;
    let history = report["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 2, "{history:?}");
    assert_eq!(history.last().unwrap()["findings"], json!(2), "{history:?}");
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
    let (status, _, report) = server.send("GET", "/admin/v1/debt", operator, None).await;
    assert_eq!(status, 200, "{report}");
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
