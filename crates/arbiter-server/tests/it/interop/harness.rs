//! What every interop suite shares: where the data and fixtures are, how a case is sent, the
//! checks every response must pass, and the per-suite report.

use crate::support::{Bundle, TestServer};
use arbiter_server::Role;
use serde_json::Value;

/// The interop data, beside the repository (`shared/` next to the repository root), never copied into it.
pub(super) const DATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/authzen-interop"
);

/// Policies and inventories that encode each scenario's rules.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop");

/// A JSON file of the interop data, e.g. `todo/users.json`.
pub(super) fn data(path: &str) -> Value {
    let path = format!("{DATA}/{path}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!("cannot read `{path}`: {err} (the interop data is expected in shared/authzen-interop/ beside the repository)")
    });
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("`{path}` is not JSON: {err}"))
}

/// A suite's fixture: `tests/interop/<suite>/policies.cedar` and `entities.json`.
pub(super) struct Fixture {
    pub(super) policies: String,
    pub(super) entities: Vec<Value>,
}

impl Fixture {
    pub(super) fn load(suite: &str) -> Self {
        let read = |name: &str| {
            let path = format!("{FIXTURES}/{suite}/{name}");
            std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("cannot read `{path}`: {err}"))
        };
        let entities: Value = serde_json::from_str(&read("entities.json")).unwrap();
        Fixture {
            policies: read("policies.cedar"),
            entities: entities.as_array().unwrap().clone(),
        }
    }

    /// The inventory must be exactly the scenario's dataset (derived independently by the
    /// caller), so that no rule can be met by a fixture that disagrees with the data.
    pub(super) fn assert_inventory(&self, suite: &str, mut derived: Vec<Value>) {
        let mut fixture = self.entities.clone();
        let by_uid = |entity: &Value| entity["uid"].to_string();
        fixture.sort_by_key(by_uid);
        derived.sort_by_key(by_uid);
        assert_eq!(
            fixture, derived,
            "tests/interop/{suite}/entities.json disagrees with the interop dataset"
        );
    }

    pub(super) fn bundle(&self) -> Bundle {
        Bundle {
            policies: vec![("policies.cedar".to_owned(), self.policies.clone())],
            cedar_entities: Some(Value::Array(self.entities.clone()).to_string()),
            ..Bundle::default()
        }
    }
}

/// A plain Cedar entity for a fixture.
pub(super) fn entity(entity_type: &str, id: &str, attrs: Value) -> Value {
    serde_json::json!({"uid": {"type": entity_type, "id": id}, "attrs": attrs, "parents": []})
}

/// A reference to an entity inside an attribute, in Cedar's JSON escape.
pub(super) fn entity_ref(entity_type: &str, id: &str) -> Value {
    serde_json::json!({"__entity": {"type": entity_type, "id": id}})
}

/// One HTTP request, as sent.
pub(super) struct Call {
    pub(super) method: String,
    pub(super) path: String,
    /// Besides `Authorization`, which is always the enforcement point's key.
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Option<String>,
}

impl Call {
    /// A JSON `POST` as the upstream runners send it, with an `X-Request-ID`.
    pub(super) fn post_json(path: &str, body: &Value, request_id: &str) -> Self {
        Call {
            method: "POST".to_owned(),
            path: path.to_owned(),
            headers: vec![
                ("Content-Type".to_owned(), "application/json".to_owned()),
                ("X-Request-ID".to_owned(), request_id.to_owned()),
            ],
            body: Some(body.to_string()),
        }
    }

    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// For failure reports. The key is never printed.
    fn describe(&self) -> String {
        let mut text = format!("{} {}", self.method, self.path);
        for (name, value) in &self.headers {
            text.push_str(&format!("\n      {name}: {value}"));
        }
        if let Some(body) = &self.body {
            text.push_str(&format!("\n      {}", shorten(body, 2000)));
        }
        text
    }

    pub(super) async fn send(&self, server: &TestServer) -> Exchange {
        let method = reqwest::Method::from_bytes(self.method.as_bytes()).unwrap();
        let mut request = server
            .client
            .request(method, format!("{}{}", server.base, self.path))
            .header(
                "authorization",
                format!("Bearer {}", server.key(Role::EnforcementPoint)),
            );
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        if let Some(body) = &self.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).ok();
        Exchange {
            status,
            headers,
            text,
            json,
        }
    }
}

/// One HTTP response.
pub(super) struct Exchange {
    pub(super) status: u16,
    pub(super) headers: reqwest::header::HeaderMap,
    pub(super) text: String,
    pub(super) json: Option<Value>,
}

impl Exchange {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The media type without parameters, lowercase.
    pub(super) fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|value| {
            value
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// Status 200 and an `application/json` body, before anything else is compared (README §8.2).
    pub(super) fn ok_json(&self) -> Result<&Value, String> {
        if self.status != 200 {
            return Err(format!("status {}, expected 200", self.status));
        }
        if self.media_type().as_deref() != Some("application/json") {
            return Err(format!(
                "Content-Type {:?}, expected application/json",
                self.header("content-type")
            ));
        }
        self.json
            .as_ref()
            .ok_or_else(|| "body is not JSON".to_owned())
    }

    /// The `X-Request-ID` the call sent must come back unchanged.
    pub(super) fn check_request_id(&self, call: &Call, problems: &mut Vec<String>) {
        if let Some(sent) = call.header("x-request-id") {
            if self.header("x-request-id") != Some(sent) {
                problems.push(format!(
                    "X-Request-ID {:?}, expected {sent:?} echoed",
                    self.header("x-request-id")
                ));
            }
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} {}\n      {}",
            self.status,
            self.header("content-type").unwrap_or("(no Content-Type)"),
            shorten(&self.text, 2000)
        )
    }
}

/// A search answer's `results` as a sorted list of JSON strings: equal lists are equal sets, and
/// a duplicate result is caught too.
pub(super) fn result_set(results: &Value) -> Result<Vec<String>, String> {
    let items = results
        .as_array()
        .ok_or_else(|| format!("`results` is not an array: {results}"))?;
    let mut set: Vec<String> = items.iter().map(Value::to_string).collect();
    set.sort();
    Ok(set)
}

/// PASS / FAIL / SKIP counts for one suite, and every failure with its request and response.
pub(super) struct Report {
    suite: &'static str,
    passed: usize,
    skipped: Vec<String>,
    failures: Vec<String>,
}

impl Report {
    pub(super) fn new(suite: &'static str) -> Self {
        Report {
            suite,
            passed: 0,
            skipped: Vec::new(),
            failures: Vec::new(),
        }
    }

    /// One case: it passes when `problems` is empty.
    pub(super) fn record(
        &mut self,
        case: &str,
        call: &Call,
        exchange: &Exchange,
        problems: Vec<String>,
    ) {
        if problems.is_empty() {
            self.passed += 1;
            return;
        }
        self.failures.push(format!(
            "FAIL {case}\n    {}\n    request: {}\n    response: {}",
            problems.join("\n    "),
            call.describe(),
            exchange.describe()
        ));
    }

    pub(super) fn skip(&mut self, case: &str, why: &str) {
        self.skipped.push(format!("SKIP {case}: {why}"));
    }

    /// Prints the count and every failure, then fails the test if anything failed or if the
    /// suite did not hold the number of cases its README states.
    pub(super) fn finish(self, expected_cases: usize) {
        let total = self.passed + self.failures.len() + self.skipped.len();
        println!(
            "interop {}: {total} cases, {} PASS, {} FAIL, {} SKIP",
            self.suite,
            self.passed,
            self.failures.len(),
            self.skipped.len()
        );
        for line in self.skipped.iter().chain(&self.failures) {
            println!("  {line}");
        }
        assert!(
            self.failures.is_empty(),
            "interop {}: {} of {total} cases failed:\n{}",
            self.suite,
            self.failures.len(),
            self.failures.join("\n")
        );
        assert_eq!(
            total, expected_cases,
            "interop {}: the data held {total} cases, the README says {expected_cases}",
            self.suite
        );
    }
}

fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
        None => text.to_owned(),
    }
}
