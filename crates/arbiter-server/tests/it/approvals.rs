//! Human approvals over the API: who may approve, what a grant covers, how often it can be
//! used, and that every step is in the decision log.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::{json, Value};

const POLICIES: &str = r#"
@id("anyone-calls-tools")
permit(principal, action == Action::"call_tool", resource);

@id("destructive-needs-approval")
@approval("destructive tools need a person's approval for each use")
@approvers("Group::\"security\"")
forbid(principal, action == Action::"call_tool", resource) when { resource.destructive };
"#;

fn bundle() -> Bundle {
    let inventory = json!({
        "groups": [{"id": "security"}],
        "identities": [
            {"id": "alice", "kind": "human"},
            {"id": "bob", "kind": "human", "member_of": [{"type": "Group", "id": "security"}]},
            {"id": "dave", "kind": "human"},
            {"id": "erin", "kind": "human", "lifecycle": "suspended", "member_of": [{"type": "Group", "id": "security"}]},
            {"id": "bot", "kind": "ai_agent", "owner": "alice"},
            {"id": "helper", "kind": "ai_agent", "owner": "alice", "member_of": [{"type": "Group", "id": "security"}]}
        ],
        "resources": [
            {"type": "Tool", "id": "wipe", "attributes": {"destructive": true}},
            {"type": "Tool", "id": "read", "attributes": {"destructive": false}}
        ]
    });
    Bundle {
        policies: vec![("approvals.cedar".into(), POLICIES.into())],
        inventory: Some(inventory.to_string()),
        ..Bundle::default()
    }
}

fn wipe(subject: &str, context: Value) -> String {
    json!({
        "subject": {"type": if subject == "bot" { "Agent" } else { "Human" }, "id": subject},
        "action": {"name": "call_tool"},
        "resource": {"type": "Tool", "id": "wipe"},
        "context": context,
    })
    .to_string()
}

/// An approver key acting for `person`.
async fn approver(server: &TestServer, person: Option<&str>) -> String {
    let mut body = json!({"name": format!("approver-{person:?}"), "role": "approver"});
    if let Some(person) = person {
        body["acts_for"] = json!({"type": "Human", "id": person});
    }
    let (status, _, key) = server
        .send(
            "POST",
            "/admin/v1/keys",
            Some(server.key(Role::Admin)),
            Some(body.to_string()),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    key["key"].as_str().unwrap().to_owned()
}

async fn verdict(
    server: &TestServer,
    key: &str,
    id: &str,
    verb: &str,
    body: Value,
) -> (u16, Value) {
    let (status, _, answer) = server
        .send(
            "POST",
            &format!("/admin/v1/approvals/{id}/{verb}"),
            Some(key),
            Some(body.to_string()),
        )
        .await;
    (status, answer)
}

fn approval_id(answer: &Value) -> String {
    answer["context"]["approval"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no approval in {answer}"))
        .to_owned()
}

#[tokio::test]
async fn only_eligible_people_approve_and_a_grant_covers_one_request_once() {
    let server = TestServer::start(bundle()).await;
    let (_, first) = server.decide(&wipe("bot", json!({"ticket": 7}))).await;
    assert_eq!(first["decision"], false);
    assert_eq!(first["context"]["outcome"], "approval_required");
    assert_eq!(first["context"]["approval"]["status"], "requested");
    let id = approval_id(&first);
    let (_, again) = server.decide(&wipe("bot", json!({"ticket": 7}))).await;
    assert_eq!(
        approval_id(&again),
        id,
        "the same request waits on the same approval"
    );

    // The queue shows what is asked, why, and who may approve.
    let (status, _, queue) = server
        .send(
            "GET",
            "/admin/v1/approvals?state=pending",
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let pending = &queue["approvals"][0];
    assert_eq!(pending["id"], id.as_str());
    assert_eq!(pending["asked"]["approvers"]["owner"], r#"Human::"alice""#);
    assert_eq!(
        pending["asked"]["approvers"]["groups"][0],
        r#"Group::"security""#
    );
    assert_eq!(
        pending["asked"]["why"][0]["policy"],
        "destructive-needs-approval"
    );

    // A key acting for an agent cannot even be made; one acting for nobody cannot approve.
    let (status, _, _) = server
        .send(
            "POST",
            "/admin/v1/keys",
            Some(server.key(Role::Admin)),
            Some(json!({"name": "bot-key", "role": "approver", "acts_for": {"type": "Agent", "id": "helper"}}).to_string()),
        )
        .await;
    assert_eq!(status, 400, "only people approve");
    let nobody = approver(&server, None).await;
    let reason = json!({"reason": "looks fine"});
    assert_eq!(
        verdict(&server, &nobody, &id, "approve", reason.clone())
            .await
            .0,
        403
    );
    // Not the owner, not in the named group; suspended; and an enforcement point.
    let dave = approver(&server, Some("dave")).await;
    assert_eq!(
        verdict(&server, &dave, &id, "approve", reason.clone())
            .await
            .0,
        403
    );
    let erin = approver(&server, Some("erin")).await;
    assert_eq!(
        verdict(&server, &erin, &id, "approve", reason.clone())
            .await
            .0,
        403
    );
    assert_eq!(
        verdict(
            &server,
            server.key(Role::EnforcementPoint),
            &id,
            "approve",
            reason.clone()
        )
        .await
        .0,
        403
    );

    // Bob, in the security group, approves one use.
    let bob = approver(&server, Some("bob")).await;
    let (status, approved) = verdict(
        &server,
        &bob,
        &id,
        "approve",
        json!({"reason": "ticket 7 checked"}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["state"], "approved");
    assert_eq!(approved["decided_by"], r#"Human::"bob""#);
    let (status, _) = verdict(
        &server,
        &bob,
        &id,
        "deny",
        json!({"reason": "changed my mind"}),
    )
    .await;
    assert_eq!(status, 409, "a decided request is never revived");

    // A changed argument is not covered.
    let (_, other) = server.decide(&wipe("bot", json!({"ticket": 8}))).await;
    assert_eq!(other["context"]["outcome"], "approval_required");
    assert_ne!(approval_id(&other), id);

    // 100 concurrent retries: exactly one is allowed, and it cites the approval.
    let retries: Vec<_> = (0..100)
        .map(|_| {
            let (client, base, key) = (
                server.client.clone(),
                server.base.clone(),
                server.key(Role::EnforcementPoint).to_owned(),
            );
            tokio::spawn(async move {
                let answer: Value = client
                    .post(format!("{base}/access/v1/evaluation"))
                    .bearer_auth(key)
                    .header("content-type", "application/json")
                    .body(wipe("bot", json!({"ticket": 7})))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer
            })
        })
        .collect();
    let mut allowed = Vec::new();
    for retry in retries {
        let answer = retry.await.unwrap();
        if answer["decision"] == true {
            allowed.push(answer);
        }
    }
    assert_eq!(allowed.len(), 1, "a one-use grant is used once");
    let used = &allowed[0];
    assert_eq!(used["context"]["approval"]["status"], "used");
    assert_eq!(used["context"]["approval"]["id"], id.as_str());
    assert!(used["context"]["reason_admin"]["en"]
        .as_str()
        .unwrap()
        .contains(&id));

    // The log has the decision that used it, and every step of the approval.
    let (_, _, entries) = server
        .send(
            "GET",
            "/admin/v1/decisions?outcome=allow&kind=decision",
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    let logged = entries["entries"].as_array().unwrap();
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0]["entry"]["approval"]["id"], id.as_str());
    assert_eq!(
        logged[0]["entry"]["decision"]["outcome"],
        "approval_required"
    );
    let mut kinds = Vec::new();
    for _ in 0..50 {
        let (_, _, changes) = server
            .send(
                "GET",
                &format!("/admin/v1/decisions?kind=change&entity={id}&limit=100"),
                Some(server.key(Role::Auditor)),
                None,
            )
            .await;
        kinds = changes["entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["entry"]["kind"].as_str().unwrap().to_owned())
            .collect();
        if kinds.len() >= 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        kinds,
        ["approval.request", "approval.decide", "approval.use"],
        "every step is logged"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_one_approves_their_own_request_or_one_they_are_a_hop_of() {
    let server = TestServer::start(bundle()).await;
    // Bob asks for himself: he may not approve it, though he is in the security group.
    let (_, own) = server.decide(&wipe("bob", json!({}))).await;
    let own_id = approval_id(&own);
    let bob = approver(&server, Some("bob")).await;
    let (status, problem) =
        verdict(&server, &bob, &own_id, "approve", json!({"reason": "mine"})).await;
    assert_eq!(status, 403, "{problem}");

    // The agent acts for Alice: Alice owns it, but she is a hop of the chain.
    let (_, delegated) = server
        .decide(&wipe(
            "bot",
            json!({"delegation": [{"type": "Human", "id": "alice"}]}),
        ))
        .await;
    assert_eq!(
        delegated["context"]["outcome"], "approval_required",
        "{delegated}"
    );
    let chain_id = approval_id(&delegated);
    let alice = approver(&server, Some("alice")).await;
    let (status, problem) = verdict(
        &server,
        &alice,
        &chain_id,
        "approve",
        json!({"reason": "mine"}),
    )
    .await;
    assert_eq!(status, 403, "{problem}");
    // Bob may approve the delegated one.
    let (status, _) = verdict(&server, &bob, &chain_id, "approve", json!({"reason": "ok"})).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn denied_and_expired_approvals_allow_nothing_and_waiters_learn_the_outcome() {
    let server = TestServer::start(bundle()).await;
    let bob = approver(&server, Some("bob")).await;

    // An enforcement point waits on the request while a person denies it.
    let (_, asked) = server.decide(&wipe("bot", json!({"n": 1}))).await;
    let id = approval_id(&asked);
    let waiter = {
        let (client, base, key, id) = (
            server.client.clone(),
            server.base.clone(),
            server.key(Role::EnforcementPoint).to_owned(),
            id.clone(),
        );
        tokio::spawn(async move {
            let answer: Value = client
                .get(format!("{base}/admin/v1/approvals/{id}?wait=20"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (status, _) = verdict(&server, &bob, &id, "deny", json!({"reason": "no ticket"})).await;
    assert_eq!(status, 200);
    let waited = waiter.await.unwrap();
    assert_eq!(waited["state"], "denied");
    let (_, retried) = server.decide(&wipe("bot", json!({"n": 1}))).await;
    assert_eq!(retried["decision"], false);

    // A grant that has expired allows nothing.
    let (_, asked) = server.decide(&wipe("bot", json!({"n": 2}))).await;
    let id = approval_id(&asked);
    let (status, _) = verdict(
        &server,
        &bob,
        &id,
        "approve",
        json!({"reason": "briefly", "valid_for_seconds": 1}),
    )
    .await;
    assert_eq!(status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (_, late) = server.decide(&wipe("bot", json!({"n": 2}))).await;
    assert_eq!(late["decision"], false, "{late}");
    assert_eq!(late["context"]["outcome"], "approval_required");
    server.stop().await;
}

/// A require-approval control on a tool makes an otherwise allowed call wait for the owner; the
/// request cites the control, and the approved retry is allowed once.
#[tokio::test]
async fn a_require_approval_control_sends_allowed_calls_to_a_person() {
    let server = TestServer::start(bundle()).await;
    let read = json!({
        "subject": {"type": "Agent", "id": "bot"},
        "action": {"name": "call_tool"},
        "resource": {"type": "Tool", "id": "read"},
    })
    .to_string();
    assert_eq!(server.decide(&read).await.1["decision"], true);
    let (status, _, placed) = server
        .send(
            "POST",
            "/admin/v1/controls",
            Some(server.key(Role::Admin)),
            Some(r#"{"target":{"type":"Tool","id":"read"},"level":"require_approval","reason":"reads are being audited"}"#.into()),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    let control = placed["control"]["id"].as_str().unwrap().to_owned();
    let (_, asked) = server.decide(&read).await;
    assert_eq!(asked["context"]["outcome"], "approval_required");
    let id = approval_id(&asked);
    let (_, _, request) = server
        .send(
            "GET",
            &format!("/admin/v1/approvals/{id}"),
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    assert_eq!(
        request["asked"]["why"][0]["control"],
        control.as_str(),
        "{request}"
    );
    let alice = approver(&server, Some("alice")).await;
    let (status, answer) =
        verdict(&server, &alice, &id, "approve", json!({"reason": "fine"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(server.decide(&read).await.1["decision"], true);
    assert_eq!(
        server.decide(&read).await.1["context"]["outcome"],
        "approval_required",
        "one use"
    );
    server.stop().await;
}

async fn pending(server: &TestServer) -> usize {
    let (_, _, queue) = server
        .send(
            "GET",
            "/admin/v1/approvals?state=pending",
            Some(server.key(Role::Auditor)),
            None,
        )
        .await;
    queue["approvals"].as_array().map_or(0, Vec::len)
}

/// A batch that asks not to settle approvals (a gateway filtering a tool list) opens none.
#[tokio::test]
async fn a_batch_can_ask_not_to_open_approval_requests() {
    let server = TestServer::start(bundle()).await;
    let batch = |settle: bool| {
        json!({
            "subject": {"type": "Agent", "id": "bot"},
            "action": {"name": "call_tool"},
            "evaluations": [{"resource": {"type": "Tool", "id": "wipe"}}],
            "options": {"arbiter_context": true, "arbiter_settle_approvals": settle},
        })
        .to_string()
    };
    let (status, _, answer) = server
        .send(
            "POST",
            "/access/v1/evaluations",
            Some(server.key(Role::EnforcementPoint)),
            Some(batch(false)),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["evaluations"][0]["context"]["outcome"],
        "approval_required"
    );
    assert_eq!(pending(&server).await, 0);
    server
        .send(
            "POST",
            "/access/v1/evaluations",
            Some(server.key(Role::EnforcementPoint)),
            Some(batch(true)),
        )
        .await;
    assert_eq!(pending(&server).await, 1);
    server.stop().await;
}
