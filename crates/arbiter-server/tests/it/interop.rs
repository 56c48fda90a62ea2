//! The OpenID AuthZEN interop suites (Todo, API gateway, search, IdP) and the AuthZEN 1.0
//! certification cases, run case by case against a real server over loopback.
//!
//! The data is read from `shared/authzen-interop/` beside the repository and never copied into
//! it; its README states the rules, the traps and how results are compared. The Cedar policies
//! and inventories that encode each scenario are fixtures in `tests/interop/<suite>/`, and each
//! test first checks that its inventory is exactly the scenario's dataset. Every case is sent
//! with `Content-Type: application/json`, the enforcement point's key and an `X-Request-ID`
//! (the certification cases send the headers they list), and must answer 200 with
//! `application/json` before its result is compared. Each suite prints its PASS / FAIL count
//! and every failure with its request.

mod certification;
mod harness;

use crate::support::TestServer;
use harness::{data, entity, entity_ref, result_set, Call, Fixture, Report};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_1_0_02() {
    let fixture = Fixture::load("todo");
    fixture.assert_inventory("todo", todo_users("user"));
    let server = TestServer::start(fixture.bundle()).await;
    let cases = data("todo/decisions-authorization-api-1_0-02.json");
    let mut report = Report::new("todo 1.0-02");
    run_decisions(&server, &mut report, "todo", &cases["evaluation"]).await;
    for (idx, case) in cases["evaluations"].as_array().unwrap().iter().enumerate() {
        let call = Call::post_json(
            "/access/v1/evaluations",
            &case["request"],
            &format!("todo-batch-{idx}"),
        );
        let exchange = call.send(&server).await;
        let mut problems = Vec::new();
        match exchange.ok_json() {
            // The upstream runner compares the array as a string, so each item must be exactly
            // `{"decision": ...}`: nothing more than the expected value may be there.
            Ok(body) if body["evaluations"] == case["expected"] => {}
            Ok(body) => problems.push(format!(
                "evaluations {}, expected exactly {}",
                body["evaluations"], case["expected"]
            )),
            Err(problem) => problems.push(problem),
        }
        exchange.check_request_id(&call, &mut problems);
        report.record(&format!("evaluations[{idx}]"), &call, &exchange, problems);
    }
    server.stop().await;
    report.finish(43);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_gateway() {
    let fixture = Fixture::load("api-gateway");
    fixture.assert_inventory("api-gateway", todo_users("identity"));
    let server = TestServer::start(fixture.bundle()).await;
    let cases = data("api-gateway/decisions.json");
    let mut report = Report::new("api-gateway");
    run_decisions(&server, &mut report, "gateway", &cases["evaluation"]).await;
    server.stop().await;
    report.finish(25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_subject() {
    run_search_suite("subject", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_resource() {
    run_search_suite("resource", 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_action() {
    run_search_suite("action", 120).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp() {
    let fixture = Fixture::load("idp");
    let mut derived = search_users();
    for record in data("idp/data/records.json").as_array().unwrap() {
        let owner = record["owner"].as_str().unwrap();
        derived.push(entity(
            "record",
            &id_string(&record["id"]),
            json!({"owner": entity_ref("user", owner)}),
        ));
    }
    fixture.assert_inventory("idp", derived);
    let server = TestServer::start(fixture.bundle()).await;
    let mut report = Report::new("idp");
    // The IdP file keeps its cases under `search`; they are resource searches.
    let cases = data("idp/results.json");
    run_searches(
        &server,
        &mut report,
        "idp",
        "/access/v1/search/resource",
        &cases["search"],
    )
    .await;
    server.stop().await;
    report.finish(6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certification() {
    let file = data("certification/cases.json");
    let fixture = Fixture::load("certification");
    let mut derived = Vec::new();
    for kind in ["subjects", "resources"] {
        for item in file["fixture"][kind].as_array().unwrap() {
            let properties = item.get("properties").cloned().unwrap_or_else(|| json!({}));
            derived.push(entity(
                item["type"].as_str().unwrap(),
                item["id"].as_str().unwrap(),
                properties,
            ));
        }
    }
    fixture.assert_inventory("certification", derived);
    let server = TestServer::start(fixture.bundle()).await;
    let mut report = Report::new("certification");
    certification::run(&server, &mut report, file["cases"].as_array().unwrap()).await;
    server.stop().await;
    report.finish(57);
}

/// Single evaluations: the answer's `decision` must be a JSON boolean equal to `expected`.
async fn run_decisions(server: &TestServer, report: &mut Report, tag: &str, cases: &Value) {
    for (idx, case) in cases.as_array().unwrap().iter().enumerate() {
        let request = &case["request"];
        let call = Call::post_json("/access/v1/evaluation", request, &format!("{tag}-{idx}"));
        let exchange = call.send(server).await;
        let mut problems = Vec::new();
        match exchange.ok_json() {
            Ok(body) => match body.get("decision") {
                Some(Value::Bool(decision)) if Some(*decision) == case["expected"].as_bool() => {}
                other => {
                    problems.push(format!("decision {other:?}, expected {}", case["expected"]))
                }
            },
            Err(problem) => problems.push(problem),
        }
        exchange.check_request_id(&call, &mut problems);
        let name = format!(
            "evaluation[{idx}] {} {}:{}",
            request["action"]["name"].as_str().unwrap_or("?"),
            request["resource"]["type"].as_str().unwrap_or("?"),
            request["resource"]["id"].as_str().unwrap_or("?"),
        );
        report.record(&name, &call, &exchange, problems);
    }
}

async fn run_search_suite(endpoint: &'static str, expected_cases: usize) {
    let fixture = Fixture::load("search");
    let mut derived = search_users();
    for record in data("search/data/records.json").as_array().unwrap() {
        let attrs = json!({
            "title": record["title"],
            "department": record["department"],
            "owner": entity_ref("user", record["owner"].as_str().unwrap()),
        });
        derived.push(entity("record", &id_string(&record["id"]), attrs));
    }
    fixture.assert_inventory("search", derived);
    let server = TestServer::start(fixture.bundle()).await;
    let suite: &'static str = match endpoint {
        "subject" => "search/subject",
        "resource" => "search/resource",
        _ => "search/action",
    };
    let mut report = Report::new(suite);
    let cases = data(&format!("search/{endpoint}/results.json"));
    let path = format!("/access/v1/search/{endpoint}");
    run_searches(&server, &mut report, suite, &path, &cases["evaluation"]).await;
    server.stop().await;
    report.finish(expected_cases);
}

/// Searches: `results` must equal the expected results as a set (README §6).
async fn run_searches(
    server: &TestServer,
    report: &mut Report,
    tag: &str,
    path: &str,
    cases: &Value,
) {
    for (idx, case) in cases.as_array().unwrap().iter().enumerate() {
        let request = &case["request"];
        let call = Call::post_json(path, request, &format!("{}-{idx}", tag.replace('/', "-")));
        let exchange = call.send(server).await;
        let mut problems = Vec::new();
        match exchange.ok_json() {
            Ok(body) => {
                let expected = result_set(&case["expected"]["results"]).unwrap();
                match result_set(&body["results"]) {
                    Ok(actual) if actual == expected => {}
                    Ok(actual) => problems.push(format!(
                        "results differ: missing {:?}, unexpected {:?}",
                        expected
                            .iter()
                            .filter(|item| !actual.contains(item))
                            .collect::<Vec<_>>(),
                        actual
                            .iter()
                            .filter(|item| !expected.contains(item))
                            .collect::<Vec<_>>(),
                    )),
                    Err(problem) => problems.push(problem),
                }
            }
            Err(problem) => problems.push(problem),
        }
        exchange.check_request_id(&call, &mut problems);
        let name = format!(
            "[{idx}] subject {} action {} resource {}",
            request["subject"]["id"].as_str().unwrap_or("?"),
            request["action"]["name"].as_str().unwrap_or("?"),
            request["resource"]["id"].as_str().unwrap_or("?"),
        );
        report.record(&name, &call, &exchange, problems);
    }
}

/// The Todo and gateway users (`todo/users.json`), keyed by PID, as `user` or `identity`.
fn todo_users(entity_type: &str) -> Vec<Value> {
    data("todo/users.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|user| {
            let attrs =
                json!({"name": user["name"], "email": user["email"], "roles": user["roles"]});
            entity(entity_type, user["pid"].as_str().unwrap(), attrs)
        })
        .collect()
}

/// The search and IdP users (`search/data/users.json`).
fn search_users() -> Vec<Value> {
    data("search/data/users.json")
        .as_array()
        .unwrap()
        .iter()
        .map(|user| {
            let attrs = json!({"role": user["role"], "department": user["department"]});
            entity("user", user["id"].as_str().unwrap(), attrs)
        })
        .collect()
}

/// Record ids are numbers in `search/data/records.json` and strings everywhere else.
fn id_string(id: &Value) -> String {
    match id {
        Value::String(id) => id.clone(),
        Value::Number(id) => id.to_string(),
        other => panic!("record id {other} is neither a string nor a number"),
    }
}
