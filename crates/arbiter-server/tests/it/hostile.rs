//! Hostile input: malformed, oversized, deeply nested, duplicated and mistyped requests. Each
//! gets a 4xx problem naming what is wrong, none is ever an allow, and nothing stored changes.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::Value;

const VALID: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;

fn hostile_decision_bodies() -> Vec<(String, &'static str)> {
    let mut bodies: Vec<(String, &'static str)> = Vec::new();
    // Every proper prefix of a valid request is malformed JSON (or an empty body).
    for cut in 0..VALID.len() {
        bodies.push((VALID[..cut].to_owned(), "$"));
    }
    // Wrong types, field by field.
    for (field, replacement) in [
        ("subject", r#""subject":"alice""#),
        ("subject", r#""subject":5"#),
        ("subject", r#""subject":[]"#),
        ("subject", r#""subject":null"#),
        ("subject.id", r#""subject":{"type":"Agent","id":7}"#),
        ("subject.id", r#""subject":{"type":"Agent","id":""}"#),
        ("subject.id", r#""subject":{"type":"Agent","id":null}"#),
        ("subject.type", r#""subject":{"type":true,"id":"a"}"#),
        ("subject.type", r#""subject":{"id":"a"}"#),
        (
            "subject.properties",
            r#""subject":{"type":"Agent","id":"a","properties":[1]}"#,
        ),
    ] {
        let body = VALID.replace(
            r#""subject":{"type":"Agent","id":"support-copilot"}"#,
            replacement,
        );
        bodies.push((body, field));
    }
    for (field, replacement) in [
        ("action", r#""action":"read""#),
        ("action.name", r#""action":{"name":123}"#),
        ("action.name", r#""action":{}"#),
        (
            "action.properties",
            r#""action":{"name":"read","properties":"x"}"#,
        ),
    ] {
        bodies.push((
            VALID.replace(r#""action":{"name":"call_tool"}"#, replacement),
            field,
        ));
    }
    for (field, replacement) in [
        ("resource", r#""resource":1.5"#),
        ("resource.id", r#""resource":{"type":"Tool","id":["x"]}"#),
        ("resource.type", r#""resource":{"type":{},"id":"x"}"#),
    ] {
        bodies.push((
            VALID.replace(
                r#""resource":{"type":"Tool","id":"crm.lookup_customer"}"#,
                replacement,
            ),
            field,
        ));
    }
    let with_context =
        |context: &str| format!("{},\"context\":{context}}}", &VALID[..VALID.len() - 1]);
    bodies.push((with_context("[]"), "context"));
    bodies.push((with_context("\"x\""), "context"));
    bodies.push((with_context(r#"{"arbiter":{"now":0}}"#), "context.arbiter"));
    bodies.push((
        with_context(r#"{"delegation":"alice"}"#),
        "context.delegation",
    ));
    bodies.push((
        with_context(r#"{"delegation":[{"type":"Human"}]}"#),
        "context.delegation[0].id",
    ));
    bodies.push((with_context(r#"{"score":0.5}"#), "context"));
    // Duplicate keys, at every level.
    bodies.push((
        VALID.replace(
            r#""id":"support-copilot""#,
            r#""id":"support-copilot","id":"research-agent""#,
        ),
        "$",
    ));
    bodies.push((
        format!(
            "{},\"subject\":{{\"type\":\"Agent\",\"id\":\"x\"}}}}",
            &VALID[..VALID.len() - 1]
        ),
        "$",
    ));
    bodies.push((
        VALID.replace(
            r#""name":"call_tool""#,
            r#""name":"call_tool","name":"read""#,
        ),
        "$",
    ));
    // Deep nesting.
    for depth in [33, 64, 200, 5000] {
        bodies.push((
            with_context(&format!(
                "{{\"x\":{}1{}}}",
                "[".repeat(depth),
                "]".repeat(depth)
            )),
            "$",
        ));
    }
    // Unknown or malformed entity types.
    for bad_type in [
        "Dataset",
        "Not A Type",
        "Agent::",
        "::Agent",
        "1Agent",
        "Agent\"",
        "",
    ] {
        let body = VALID.replace(
            r#""type":"Agent""#,
            &format!(r#""type":{}"#, Value::from(bad_type)),
        );
        bodies.push((body, "subject.type"));
    }
    // Not JSON at all.
    for junk in [
        "null",
        "true",
        "[]",
        "\"string\"",
        "42",
        "{}{}",
        "\u{0}",
        "{\"subject\":\u{7f}}",
    ] {
        bodies.push((junk.to_owned(), "$"));
    }
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_a_4xx_naming_the_problem_and_change_nothing() {
    let server = TestServer::start(Bundle::demo()).await;
    let admin = server.key(Role::Admin).to_owned();
    let gateway = server.key(Role::EnforcementPoint).to_owned();
    let (_, _, before) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            Some(&admin),
            None,
        )
        .await;
    let (_, _, identities_before) = server
        .send("GET", "/admin/v1/identities?limit=1000", Some(&admin), None)
        .await;

    let mut failures = Vec::new();
    let mut sent = 0;
    for (body, field) in hostile_decision_bodies() {
        for endpoint in ["/access/v1/evaluation", "/access/v1/evaluations"] {
            let body = if endpoint.ends_with('s')
                && body.starts_with('{')
                && body.ends_with('}')
                && field != "$"
            {
                format!(r#"{{"evaluations":[{body}]}}"#)
            } else {
                body.clone()
            };
            let (status, _, problem) = server
                .send("POST", endpoint, Some(&gateway), Some(body.clone()))
                .await;
            sent += 1;
            // A batch item that is invalid is `decision: false` inside a 200 (AuthZEN 1.0).
            let batch_item_denied = endpoint.ends_with('s')
                && status == 200
                && problem["evaluations"]
                    .as_array()
                    .is_some_and(|items| items.iter().all(|item| item["decision"] == false));
            if batch_item_denied {
                continue;
            }
            let names_it = problem["detail"]
                .as_str()
                .is_some_and(|detail| !detail.is_empty())
                && problem["status"].as_u64() == Some(u64::from(status));
            if !(400..500).contains(&status) || !names_it || problem["decision"] == true {
                failures.push(format!(
                    "{endpoint} {status} {problem} <- {}",
                    body.chars().take(120).collect::<String>()
                ));
            }
            if endpoint.ends_with('n') && field != "$" && problem["field"].as_str() != Some(field) {
                failures.push(format!(
                    "{endpoint}: expected field `{field}`, got {problem}"
                ));
            }
        }
    }
    // A huge body.
    let huge = format!(
        r#"{{"subject":{{"type":"Agent","id":"{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let (status, _, problem) = server
        .send_alone("POST", "/access/v1/evaluation", Some(&gateway), Some(huge))
        .await;
    sent += 1;
    if status != 413 || problem["status"] != 413 {
        failures.push(format!("huge body: {status} {problem}"));
    }
    // Administration writes with bad bodies.
    for (method, path, body) in [
        (
            "POST",
            "/admin/v1/identities",
            r#"{"id":"x","kind":"robot"}"#,
        ),
        (
            "POST",
            "/admin/v1/identities",
            r#"{"id":5,"kind":"ai_agent"}"#,
        ),
        (
            "POST",
            "/admin/v1/identities",
            r#"{"id":"x","kind":"ai_agent","attributes":{"lifecycle":"active"}}"#,
        ),
        (
            "POST",
            "/admin/v1/identities",
            r#"{"id":"x","kind":"ai_agent","member_of":[{"type":"Not A Type","id":"g"}]}"#,
        ),
        (
            "POST",
            "/admin/v1/identities",
            r#"{"id":"x","kind":"ai_agent","surprise":1}"#,
        ),
        (
            "PUT",
            "/admin/v1/identities/ai_agent/support-copilot",
            r#"{"id":"other","kind":"ai_agent"}"#,
        ),
        (
            "PUT",
            "/admin/v1/identities/robot/x",
            r#"{"id":"x","kind":"ai_agent"}"#,
        ),
        (
            "POST",
            "/admin/v1/identities/ai_agent/support-copilot/lifecycle",
            r#"{"lifecycle":"gone","reason":"x"}"#,
        ),
        (
            "PUT",
            "/admin/v1/signals",
            r#"{"subject":{"type":"Agent","id":"a"},"name":"s","value":0.5,"source":"x","observed_at":0,"ttl_seconds":5}"#,
        ),
        (
            "PUT",
            "/admin/v1/signals",
            r#"{"subject":{"type":"Agent","id":"a"},"name":"s","value":1,"source":"x","observed_at":0,"ttl_seconds":0}"#,
        ),
        (
            "PUT",
            "/admin/v1/resources",
            r#"{"type":"Dataset","id":"d","sensitivity":"secret"}"#,
        ),
        (
            "PUT",
            "/admin/v1/groups",
            r#"{"id":"g","parents":[{"type":"Group","id":"g"}]}"#,
        ),
        (
            "POST",
            "/admin/v1/policies",
            r#"{"sources":[{"name":"p","text":"permit(principal"}],"reason":"x"}"#,
        ),
        ("POST", "/admin/v1/policies", r#"{"sources":"permit"}"#),
        (
            "POST",
            "/admin/v1/keys",
            r#"{"name":"k","role":"superuser"}"#,
        ),
        ("POST", "/admin/v1/policies/1/activate", r#"{"reason":""}"#),
    ] {
        let (status, _, problem) = server
            .send(method, path, Some(&admin), Some(body.to_owned()))
            .await;
        sent += 1;
        if !(400..500).contains(&status) || problem["detail"].as_str().is_none_or(str::is_empty) {
            failures.push(format!("{method} {path} {status} {problem} <- {body}"));
        }
    }
    // Policy text nested deep enough to overflow a worker thread's stack in Cedar's parser (1,000
    // brackets) or in a walk over the compiled policy (a chain of 5,000 conditions): refused.
    let terms: Vec<String> = (0..5_000).map(|i| format!("context.n != {i}")).collect();
    for text in [
        format!(
            "permit(principal, action, resource) when {{ {}context.mfa{} }};",
            "(".repeat(1_000),
            ")".repeat(1_000)
        ),
        format!(
            "permit(principal, action, resource) when {{ {} }};",
            terms.join(" && ")
        ),
    ] {
        let body =
            serde_json::json!({"sources": [{"name": "deep.cedar", "text": text}], "reason": "x"});
        let (status, _, problem) = server
            .send(
                "POST",
                "/admin/v1/policies",
                Some(&admin),
                Some(body.to_string()),
            )
            .await;
        sent += 1;
        if !(400..500).contains(&status) || problem["detail"].as_str().is_none_or(str::is_empty) {
            failures.push(format!(
                "POST /admin/v1/policies {status} {problem} <- deep policy"
            ));
        }
    }
    println!("hostile requests sent: {sent}");
    assert!(sent >= 200, "only {sent} hostile requests");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Nothing stored changed, and the server still decides.
    let (_, _, after) = server
        .send(
            "GET",
            "/admin/v1/changes?since=0&limit=1000",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(before, after);
    let (_, _, identities_after) = server
        .send("GET", "/admin/v1/identities?limit=1000", Some(&admin), None)
        .await;
    assert_eq!(identities_before, identities_after);
    assert_eq!(server.decide(VALID).await.1["decision"], true);
    server.stop().await;
}
