//! The AuthZEN 1.0 certification cases (`certification/cases.json`): each case carries its own
//! request and an `expect` object, whose every field is checked. A field the harness does not
//! know fails the run, so a new kind of expectation is never passed silently.

use super::harness::{result_set, Call, Exchange, Report};
use crate::support::TestServer;
use serde_json::{Map, Value};
use std::collections::HashMap;

const CASE_FIELDS: [&str; 11] = [
    "id",
    "level",
    "title",
    "method",
    "path",
    "headers",
    "body",
    "raw_body",
    "repeat",
    "token_from",
    "expect",
];

const EXPECT_FIELDS: [&str; 14] = [
    "status",
    "decision",
    "evaluations",
    "evaluations_count",
    "results_include",
    "results_exact",
    "results_type",
    "results_is_array",
    "page_if_present",
    "page_required",
    "response_headers",
    "content_type",
    "required_keys",
    "policy_decision_point_equals_base_url",
];

pub(super) async fn run(server: &TestServer, report: &mut Report, cases: &[Value]) {
    for case in cases {
        let case = case.as_object().unwrap();
        let unknown: Vec<&String> = case
            .keys()
            .filter(|key| !CASE_FIELDS.contains(&key.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "case {}: unknown case fields {unknown:?}",
            case["id"]
        );
        let unknown: Vec<&String> = case["expect"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|key| !EXPECT_FIELDS.contains(&key.as_str()))
            .collect();
        assert!(
            unknown.is_empty(),
            "case {}: unknown expectations {unknown:?}",
            case["id"]
        );
    }
    // `next_token` of each case that returned a non-empty one, for the cases that follow it.
    let mut next_tokens: HashMap<String, String> = HashMap::new();
    for case in cases {
        let case = case.as_object().unwrap();
        let id = case["id"].as_str().unwrap();
        let name = format!("{id} {}", case["title"].as_str().unwrap_or_default());
        let token = match case.get("token_from").and_then(Value::as_str) {
            None => None,
            Some(from) => match next_tokens.get(from) {
                Some(token) => Some(token.clone()),
                None => {
                    report.skip(
                        &name,
                        &format!("{from} returned no non-empty page.next_token"),
                    );
                    continue;
                }
            },
        };
        let call = call_for(case, token.as_deref());
        let repeat = case.get("repeat").and_then(Value::as_u64).unwrap_or(1);
        let mut problems = Vec::new();
        // The response shown on failure: the first failing attempt's, else the last one.
        let mut shown: Option<Exchange> = None;
        let mut shown_failed = false;
        for attempt in 1..=repeat {
            let exchange = call.send(server).await;
            let attempt_problems = check(&case["expect"], &call, &exchange, &server.base);
            if let Some(Value::String(token)) = exchange
                .json
                .as_ref()
                .and_then(|body| body.pointer("/page/next_token"))
            {
                if !token.is_empty() {
                    next_tokens.insert(id.to_owned(), token.clone());
                }
            }
            let failed = !attempt_problems.is_empty();
            if repeat > 1 {
                problems.extend(
                    attempt_problems
                        .into_iter()
                        .map(|problem| format!("attempt {attempt}: {problem}")),
                );
            } else {
                problems.extend(attempt_problems);
            }
            if !shown_failed {
                shown_failed = failed;
                shown = Some(exchange);
            }
        }
        let exchange = shown.unwrap();
        report.record(&name, &call, &exchange, problems);
    }
}

/// The request a case describes: its `raw_body` verbatim or its `body` as JSON, with
/// `Content-Type: application/json` unless the case's own `headers` say otherwise.
fn call_for(case: &Map<String, Value>, token: Option<&str>) -> Call {
    let body = match (case.get("raw_body"), case.get("body")) {
        (Some(raw), _) => Some(raw.as_str().unwrap().to_owned()),
        (None, Some(body)) => {
            let mut body = body.clone();
            if let Some(token) = token {
                body["page"]["token"] = Value::String(token.to_owned());
            }
            Some(body.to_string())
        }
        (None, None) => None,
    };
    let mut headers = Vec::new();
    if body.is_some() {
        headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
    }
    for (name, value) in case
        .get("headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.as_str().unwrap().to_owned()));
    }
    Call {
        method: case["method"].as_str().unwrap().to_owned(),
        path: case["path"].as_str().unwrap().to_owned(),
        headers,
        body,
    }
}

/// Every field of `expect`, in the order the README lists them.
fn check(expect: &Value, call: &Call, exchange: &Exchange, base: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let status = expect["status"].as_u64().unwrap();
    exchange.check_request_id(call, &mut problems);
    if u64::from(exchange.status) != status {
        problems.push(format!("status {}, expected {status}", exchange.status));
        return problems;
    }
    let media_type = exchange.media_type();
    if status == 200 {
        if media_type.as_deref() != Some("application/json") {
            problems.push(format!(
                "Content-Type {media_type:?}, expected application/json"
            ));
        }
    } else {
        // Not in the case file: Arbiter answers every error as RFC 9457 problem details.
        if media_type.as_deref() != Some("application/problem+json") {
            problems.push(format!(
                "Content-Type {media_type:?}, expected application/problem+json"
            ));
        }
        if exchange
            .json
            .as_ref()
            .and_then(|body| body.get("status"))
            .and_then(Value::as_u64)
            != Some(status)
        {
            problems.push(format!("problem details without `status: {status}`"));
        }
    }
    if let Some(expected) = expect.get("content_type").and_then(Value::as_str) {
        if media_type.as_deref() != Some(expected) {
            problems.push(format!("Content-Type {media_type:?}, expected {expected}"));
        }
    }
    for (name, value) in expect
        .get("response_headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let expected = value.as_str().unwrap();
        if exchange.header(name) != Some(expected) {
            problems.push(format!(
                "header {name} {:?}, expected {expected:?}",
                exchange.header(name)
            ));
        }
    }
    let body_expectations = expect
        .as_object()
        .unwrap()
        .keys()
        .any(|key| !matches!(key.as_str(), "status" | "content_type" | "response_headers"));
    let Some(body) = exchange.json.as_ref() else {
        if body_expectations {
            problems.push("body is not JSON".to_owned());
        }
        return problems;
    };
    if let Some(expected) = expect.get("decision") {
        match body.get("decision") {
            Some(Value::Bool(decision)) if Some(*decision) == expected.as_bool() => {}
            other => problems.push(format!("decision {other:?}, expected {expected}")),
        }
    }
    let evaluations = body.get("evaluations").and_then(Value::as_array);
    if let Some(expected) = expect.get("evaluations").and_then(Value::as_array) {
        let decisions: Option<Vec<&Value>> = evaluations.map(|items| {
            items
                .iter()
                .map(|item| item.get("decision").unwrap_or(&Value::Null))
                .collect()
        });
        if decisions != Some(expected.iter().collect()) {
            problems.push(format!(
                "evaluation decisions {decisions:?}, expected {expected:?} in order"
            ));
        }
    }
    if let Some(expected) = expect.get("evaluations_count").and_then(Value::as_u64) {
        let count = evaluations.map(|items| items.len() as u64);
        if count != Some(expected) {
            problems.push(format!("{count:?} evaluations, expected {expected}"));
        }
    }
    check_results(expect, body, &mut problems);
    for (field, required) in [("page_if_present", false), ("page_required", true)] {
        let Some(rules) = expect.get(field) else {
            continue;
        };
        match body.get("page") {
            None | Some(Value::Null) if !required => {}
            None | Some(Value::Null) => problems.push("no `page`".to_owned()),
            Some(page) => {
                if rules["next_token_is_string"] == Value::Bool(true)
                    && !page["next_token"].is_string()
                {
                    problems.push(format!("page.next_token is not a string: {page}"));
                }
            }
        }
    }
    for key in expect
        .get("required_keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = key.as_str().unwrap();
        if body.get(key).is_none() {
            problems.push(format!("no `{key}`"));
        }
    }
    if expect.get("policy_decision_point_equals_base_url") == Some(&Value::Bool(true))
        && body.get("policy_decision_point").and_then(Value::as_str) != Some(base)
    {
        problems.push(format!(
            "policy_decision_point {}, expected the base URL {base}",
            body["policy_decision_point"]
        ));
    }
    problems
}

/// `results_is_array`, `results_include` (extra results allowed), `results_exact` (set
/// equality) and `results_type`.
fn check_results(expect: &Value, body: &Value, problems: &mut Vec<String>) {
    let results = body.get("results").and_then(Value::as_array);
    if let Some(expected) = expect.get("results_is_array").and_then(Value::as_bool) {
        if results.is_some() != expected {
            problems.push(format!(
                "`results` is an array: {}, expected {expected}",
                results.is_some()
            ));
        }
    }
    let wants_results = ["results_include", "results_exact", "results_type"]
        .iter()
        .any(|field| expect.get(field).is_some());
    let Some(results) = results else {
        if wants_results {
            problems.push("no `results` array".to_owned());
        }
        return;
    };
    for wanted in expect
        .get("results_include")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let fields = wanted.as_object().unwrap();
        let found = results.iter().any(|result| {
            fields
                .iter()
                .all(|(key, value)| result.get(key) == Some(value))
        });
        if !found {
            problems.push(format!("results lack {wanted}"));
        }
    }
    if let Some(expected) = expect.get("results_exact") {
        let expected = result_set(expected).unwrap();
        let actual = result_set(&Value::Array(results.clone())).unwrap();
        if actual != expected {
            problems.push(format!("results {actual:?}, expected exactly {expected:?}"));
        }
    }
    if let Some(entity_type) = expect.get("results_type") {
        for result in results {
            if result.get("type") != Some(entity_type) {
                problems.push(format!("result {result} is not of type {entity_type}"));
            }
        }
    }
}
