#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "a test: any surprise should stop it loudly, naming what it found"
)]

//! The OpenAPI document (`openapi.json`, served at `/openapi.json`) against the code it describes.
//!
//! The router's routes are read from the source of `router()` in `src/lib.rs`, and the built-in
//! action each handler asks for from the handler's own source, so the document and the server
//! cannot drift apart silently: a route added, removed or re-guarded fails here until the
//! document says the same.

use arbiter_server::{Role, BUILT_IN_POLICIES};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

const DOCUMENT: &str = include_str!("../openapi.json");

/// The HTTP methods axum's `MethodRouter` can be built with, as OpenAPI names them.
const METHODS: [&str; 8] = [
    "get", "post", "put", "delete", "patch", "head", "options", "trace",
];

fn document() -> Value {
    serde_json::from_str(DOCUMENT).expect("openapi.json is not valid JSON")
}

fn source(file: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// One route and method of the router, with the handler it calls (`admin::list_identities`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Route {
    path: String,
    method: String,
    handler: String,
}

/// The text inside the parentheses opened just before `text`, and what follows the closing one.
fn balanced(text: &str) -> (&str, &str) {
    let mut depth = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for (at, ch) in text.char_indices() {
        if in_string {
            match ch {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return (&text[..at], &text[at + 1..]);
                }
            }
            _ => {}
        }
    }
    panic!(
        "unbalanced parentheses after: {}",
        &text[..text.len().min(80)]
    );
}

/// Every `.route("<path>", get(handler).post(handler)…)` in `source`.
fn parse_routes(source: &str) -> Vec<Route> {
    let mut routes = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        let (args, after) = balanced(&rest[at + ".route(".len()..]);
        rest = after;
        let args: String = args.chars().filter(|ch| !ch.is_whitespace()).collect();
        let (path, chain) = args
            .strip_prefix('"')
            .and_then(|args| args.split_once("\","))
            .unwrap_or_else(|| panic!("a route whose first argument is not a string: {args}"));
        let mut chain = chain.trim_end_matches(',');
        while !chain.is_empty() {
            chain = chain.strip_prefix('.').unwrap_or(chain);
            let open = chain
                .find('(')
                .unwrap_or_else(|| panic!("route `{path}`: cannot read `{chain}`"));
            let method = chain[..open].rsplit("::").next().unwrap_or_default();
            assert!(
                METHODS.contains(&method),
                "route `{path}`: `{}` is not a method router this test knows; teach it",
                &chain[..open]
            );
            let (handler, after) = balanced(&chain[open + 1..]);
            routes.push(Route {
                path: path.to_owned(),
                method: method.to_owned(),
                handler: handler.to_owned(),
            });
            chain = after;
        }
    }
    routes
}

fn router_routes() -> Vec<Route> {
    let lib = source("lib.rs");
    let start = lib
        .find("pub fn router(")
        .expect("no `pub fn router(` in lib.rs");
    let body = &lib[start..];
    let end = body.find("\n}").expect("router() has no end");
    let routes = parse_routes(&body[..end]);
    assert!(
        routes.len() >= 30,
        "only {} routes read from router(): the parser is lost",
        routes.len()
    );
    routes
}

/// The first string literal in `text`.
fn first_literal(text: &str) -> Option<&str> {
    let start = text.find('"')? + 1;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The built-in actions a handler asks the governance engine for, in source order.
fn handler_actions(handler: &str) -> Vec<String> {
    let (module, name) = handler.rsplit_once("::").unwrap_or(("", handler));
    let module = module.rsplit("::").next().unwrap_or_default();
    let text = if module.is_empty() {
        source("lib.rs")
    } else {
        let flat = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src")
            .join(format!("{module}.rs"));
        if flat.exists() {
            source(&format!("{module}.rs"))
        } else {
            source(&format!("{module}/mod.rs"))
        }
    };
    let signature = format!("fn {name}(");
    let start = text
        .find(&signature)
        .unwrap_or_else(|| panic!("handler `{handler}`: no `{signature}` in its module"));
    let body = &text[start..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    let mut actions = Vec::new();
    let mut push = |action: &str| {
        if !actions.iter().any(|known| known == action) {
            actions.push(action.to_owned());
        }
    };
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let preceded_by_word = |offset: usize| {
            body[..at + offset]
                .chars()
                .next_back()
                .is_some_and(|ch| ch.is_alphanumeric() || ch == '_')
        };
        let next = ["check(", "authorize(", "authorize_decide("]
            .iter()
            .filter_map(|call| rest.find(call).map(|offset| (offset, *call)))
            .min();
        let Some((offset, call)) = next else { break };
        if !preceded_by_word(offset) {
            if call == "authorize_decide(" {
                push("decide");
            } else {
                let action = first_literal(&rest[offset..]).unwrap_or_else(|| {
                    panic!("handler `{handler}`: `{call}` without an action literal")
                });
                push(action);
            }
        }
        at += offset + call.len();
    }
    actions
}

/// The callers each built-in action is permitted to, from `BUILT_IN_POLICIES`: role names, and
/// `anonymous` for the caller without a key.
fn permitted_callers() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    assert!(
        !BUILT_IN_POLICIES.contains("forbid("),
        "the built-in policies now forbid something: teach this test"
    );
    let everyone: BTreeSet<String> = std::iter::once("anonymous".to_owned())
        .chain(Role::ALL.iter().map(|role| role.as_str().to_owned()))
        .collect();
    let mut by_action: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut for_every_action: BTreeSet<String> = BTreeSet::new();
    for statement in BUILT_IN_POLICIES.split("permit(").skip(1) {
        let statement = &statement[..statement.find(");").expect("a policy without `);`")];
        let callers: BTreeSet<String> = match statement.split_once("principal in Role::\"") {
            Some((_, rest)) => {
                std::iter::once(rest[..rest.find('"').unwrap()].to_owned()).collect()
            }
            None => {
                assert!(statement.trim_start().starts_with("principal,"));
                everyone.clone()
            }
        };
        let actions: Vec<&str> = statement
            .split("Action::\"")
            .skip(1)
            .map(|rest| &rest[..rest.find('"').unwrap()])
            .collect();
        if actions.is_empty() {
            for_every_action.extend(callers);
        } else {
            for action in actions {
                by_action
                    .entry(action.to_owned())
                    .or_default()
                    .extend(callers.iter().cloned());
            }
        }
    }
    (by_action, for_every_action)
}

fn callers_of(action: &str) -> BTreeSet<String> {
    let (by_action, for_every_action) = permitted_callers();
    let mut callers = by_action.get(action).cloned().unwrap_or_default();
    callers.extend(for_every_action);
    callers
}

/// Every `(path, method, operation)` the document describes.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("`paths` is not an object") {
        for (method, operation) in item.as_object().expect("a path item is not an object") {
            if METHODS.contains(&method.as_str()) {
                operations.push((path.clone(), method.clone(), operation.clone()));
            } else {
                assert!(
                    ["parameters", "summary", "description", "servers"].contains(&method.as_str()),
                    "{path}: unexpected key `{method}`"
                );
            }
        }
    }
    operations
}

/// Follows a local `$ref`, if `value` is one.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => doc
            .pointer(reference.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("unresolved $ref {reference}")),
        None => value,
    }
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, value) in object {
                match (key.as_str(), value) {
                    ("$ref", Value::String(reference)) => refs.push(reference.clone()),
                    _ => collect_refs(value, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

#[test]
fn is_an_openapi_3_1_document_with_components() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is not a string");
    assert!(version.starts_with("3.1."), "openapi is {version}");
    assert_eq!(doc["info"]["title"], "Arbiter");
    assert_eq!(
        doc["info"]["version"],
        env!("CARGO_PKG_VERSION"),
        "info.version must be the crate's version"
    );
    let components = doc["components"]
        .as_object()
        .expect("no `components` object");
    for section in ["schemas", "responses", "parameters", "securitySchemes"] {
        assert!(
            components.get(section).is_some_and(Value::is_object),
            "components.{section} is missing"
        );
    }
    let bearer = &doc["components"]["securitySchemes"]["bearerAuth"];
    assert_eq!(bearer["type"], "http");
    assert_eq!(bearer["scheme"], "bearer");
    assert_eq!(doc["security"], serde_json::json!([{"bearerAuth": []}]));
    let problem = &doc["components"]["schemas"]["Problem"];
    for field in ["type", "title", "status", "detail", "field"] {
        assert!(
            problem["properties"].get(field).is_some(),
            "Problem has no `{field}`"
        );
    }
    let required: BTreeSet<&str> = problem["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field.as_str().unwrap())
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["type", "title", "status", "detail"])
    );
    for schema in [
        "EvaluationRequest",
        "EvaluationResponse",
        "EvaluationsRequest",
        "EvaluationsResponse",
        "SearchSubjectRequest",
        "SearchResourceRequest",
        "SearchActionRequest",
        "SearchEntityResponse",
        "SearchActionResponse",
        "AuthzenConfiguration",
        "Identity",
        "IdentityPage",
        "Group",
        "Resource",
        "Signal",
        "LifecycleChange",
        "PolicyUpload",
        "PolicyVersion",
        "PolicyVersionSummary",
        "Activation",
        "Rollback",
        "NewKeyRequest",
        "NewKeyResponse",
        "ChangeEvent",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "components.schemas.{schema} is missing"
        );
    }
    assert_eq!(
        doc["components"]["schemas"]["EvaluationsSemantic"]["enum"],
        serde_json::json!([
            "execute_all",
            "deny_on_first_deny",
            "permit_on_first_permit"
        ])
    );
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let doc = document();
    let in_router: BTreeSet<(String, String)> = router_routes()
        .into_iter()
        .map(|route| (route.path, route.method))
        .collect();
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect();
    let undocumented: Vec<_> = in_router.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&in_router).collect();
    assert!(
        undocumented.is_empty() && phantom.is_empty(),
        "routes missing from openapi.json: {undocumented:?}\ndocumented routes the router does not have: {phantom:?}"
    );
}

#[test]
fn each_operation_names_the_action_that_guards_it_and_who_holds_it() {
    let doc = document();
    let routes = router_routes();
    for (path, method, operation) in operations(&doc) {
        let route = routes
            .iter()
            .find(|route| route.path == path && route.method == method)
            .unwrap_or_else(|| panic!("{method} {path} is not in the router"));
        let actions = handler_actions(&route.handler);
        assert!(
            !actions.is_empty(),
            "{method} {path}: handler `{}` asks for no action",
            route.handler
        );
        let documented: Vec<String> = operation["x-arbiter-actions"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no x-arbiter-actions"))
            .iter()
            .map(|action| action.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            documented, actions,
            "{method} {path}: x-arbiter-actions disagrees with handler `{}`",
            route.handler
        );
        let description = operation["description"].as_str().unwrap_or_default();
        for action in &actions {
            assert!(
                description.contains(&format!("`{action}`")),
                "{method} {path}: the description does not name `{action}`"
            );
        }
        let callers = callers_of(&actions[0]);
        let documented: BTreeSet<String> = operation["x-arbiter-roles"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path}: no x-arbiter-roles"))
            .iter()
            .map(|role| role.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            documented, callers,
            "{method} {path}: x-arbiter-roles disagrees with BUILT_IN_POLICIES"
        );
        // Only routes the anonymous caller may use say that a key is optional.
        let key_optional = operation["security"].as_array().is_some_and(|schemes| {
            schemes
                .iter()
                .any(|scheme| scheme == &serde_json::json!({}))
        });
        assert_eq!(
            key_optional,
            callers.contains("anonymous"),
            "{method} {path}: `security` disagrees with whether a key is needed"
        );
    }
}

#[test]
fn operations_are_complete() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (path, method, operation) in operations(&doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path}: no operationId"));
        assert!(
            ids.insert(id.to_owned()),
            "operationId `{id}` is used twice"
        );
        assert!(
            operation["description"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{method} {path}: no description"
        );
        // Path parameters: exactly those in the template, each required.
        let in_template: BTreeSet<String> = path
            .split('{')
            .skip(1)
            .map(|rest| rest[..rest.find('}').unwrap()].to_owned())
            .collect();
        let parameters: Vec<&Value> = operation["parameters"]
            .as_array()
            .map(|parameters| parameters.iter().map(|p| resolve(&doc, p)).collect())
            .unwrap_or_default();
        let in_path: BTreeSet<String> = parameters
            .iter()
            .filter(|parameter| parameter["in"] == "path")
            .map(|parameter| {
                assert_eq!(
                    parameter["required"], true,
                    "{method} {path}: path parameter {parameter} is not required"
                );
                parameter["name"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(
            in_path, in_template,
            "{method} {path}: path parameters disagree with the template"
        );
        // Responses: a success, and 4xx answered as RFC 9457 problems.
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{method} {path}: no responses"));
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path}: no 2xx response"
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            if status.starts_with('4') {
                assert!(
                    response["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{method} {path}: {status} is not application/problem+json"
                );
            }
        }
        assert!(
            responses.contains_key("401"),
            "{method} {path}: every route can answer 401"
        );
        if !callers_of(
            operation["x-arbiter-actions"][0]
                .as_str()
                .unwrap_or_default(),
        )
        .contains("anonymous")
        {
            assert!(
                responses.contains_key("403"),
                "{method} {path}: a guarded route can answer 403"
            );
        }
        if operation.get("requestBody").is_some() {
            for status in ["400", "413"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path}: a route with a body can answer {status}"
                );
            }
        }
    }
    let problems = &doc["components"]["responses"];
    for (name, status) in [
        ("BadRequest", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("NotFound", 404),
        ("Conflict", 409),
        ("PayloadTooLarge", 413),
        ("Unprocessable", 422),
    ] {
        assert_eq!(
            problems[name]["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/Problem",
            "components.responses.{name} ({status}) is not a Problem"
        );
    }
}

#[test]
fn writes_without_a_reason_in_the_body_document_the_reason_header() {
    let doc = document();
    let header = &doc["components"]["parameters"]["Reason"];
    assert_eq!(header["name"], "x-arbiter-reason");
    assert_eq!(header["in"], "header");
    let admin = source("admin.rs");
    for route in router_routes() {
        let Some(name) = route.handler.strip_prefix("admin::") else {
            continue;
        };
        let start = admin
            .find(&format!("fn {name}("))
            .unwrap_or_else(|| panic!("no `fn {name}(` in admin.rs"));
        let body = &admin[start..];
        let body = &body[..body.find("\n}").unwrap_or(body.len())];
        let uses_header = body.contains("reason(&headers)");
        let operation = &doc["paths"][&route.path][&route.method];
        let documents_header = operation["parameters"]
            .as_array()
            .is_some_and(|parameters| {
                parameters
                    .iter()
                    .any(|parameter| parameter["$ref"] == "#/components/parameters/Reason")
            });
        assert_eq!(
            documents_header, uses_header,
            "{} {}: x-arbiter-reason documented: {documents_header}, read by `{}`: {uses_header}",
            route.method, route.path, route.handler
        );
    }
}

#[test]
fn every_ref_resolves_and_every_component_is_used() {
    let doc = document();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 50, "only {} $refs", refs.len());
    for reference in &refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("$ref {reference} is not local"));
        assert!(
            doc.pointer(pointer).is_some(),
            "$ref {reference} does not resolve"
        );
    }
    let used: BTreeSet<&str> = refs.iter().map(String::as_str).collect();
    for section in ["schemas", "responses", "parameters"] {
        for name in doc["components"][section].as_object().unwrap().keys() {
            let reference = format!("#/components/{section}/{name}");
            assert!(
                used.contains(reference.as_str()),
                "{reference} is never used"
            );
        }
    }
}

#[test]
fn the_route_parser_reads_chained_and_qualified_method_routers() {
    let source = r#"
        Router::new()
            .route("/a", get(m::one))
            .route(
                "/b/{id}",
                get(m::two)
                    .put(m::three)
                    .delete(m::four),
            )
            .route("/c", axum::routing::delete(m::five))
    "#;
    let routes: Vec<(String, String, String)> = parse_routes(source)
        .into_iter()
        .map(|route| (route.path, route.method, route.handler))
        .collect();
    let expected = [
        ("/a", "get", "m::one"),
        ("/b/{id}", "get", "m::two"),
        ("/b/{id}", "put", "m::three"),
        ("/b/{id}", "delete", "m::four"),
        ("/c", "delete", "m::five"),
    ]
    .map(|(path, method, handler)| (path.to_owned(), method.to_owned(), handler.to_owned()));
    assert_eq!(routes, expected);
}
