//! The `arbiter` binary, run as a user would.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo");

fn arbiter(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn demo_bundle_args() -> Vec<String> {
    vec![
        "-p".into(),
        format!("{DEMO}/policies.cedar"),
        "-s".into(),
        format!("{DEMO}/schema.cedarschema"),
        "-i".into(),
        format!("{DEMO}/inventory.json"),
        "--now".into(),
        "1767225600".into(),
    ]
}

fn check(extra: &[&str], stdin: &str) -> (Vec<serde_json::Value>, String) {
    let mut args = vec!["check".to_owned()];
    args.extend(demo_bundle_args());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = arbiter(&args, stdin);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (lines, String::from_utf8(output.stderr).unwrap())
}

fn outcome(line: &serde_json::Value) -> &str {
    line["context"]["outcome"].as_str().unwrap_or("invalid")
}

#[test]
fn demo_shows_allow_deny_and_approval_required() {
    let output = arbiter(&["demo"], "");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for expected in [
        "ALLOW",
        "DENY",
        "APPROVAL REQUIRED",
        "nearest miss",
        "quarantined",
    ] {
        assert!(
            text.contains(expected),
            "demo output lacks {expected}:\n{text}"
        );
    }
}

#[test]
fn check_decides_the_demo_requests_in_order() {
    let requests = std::fs::read_to_string(format!("{DEMO}/requests.jsonl")).unwrap();
    let (lines, summary) = check(&[], &requests);
    let outcomes: Vec<&str> = lines.iter().map(outcome).collect();
    assert_eq!(
        outcomes,
        [
            "allow",
            "approval_required",
            "deny",
            "deny",
            "deny",
            "allow",
            "deny",
            "deny",
            "allow",
            "invalid"
        ]
    );
    // AuthZEN's boolean is true only for allow.
    assert_eq!(lines[0]["decision"], true);
    assert_eq!(lines[1]["decision"], false);
    assert!(summary.contains("checked 10 requests"), "{summary}");
    assert!(summary.contains("decisions/s"), "{summary}");
}

#[test]
fn bad_lines_get_errors_naming_the_field_and_the_run_goes_on() {
    let good = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"}}"#;
    let deep = format!(r#"{{"subject":{}1{}}}"#, "[".repeat(64), "]".repeat(64));
    let input = [
        "not json",
        r#"{"subject":{"type":"Agent","id":7},"action":{"name":"read"},"resource":{"type":"Dataset","id":"d"}}"#,
        r#"{"subject":{"type":"Agent","id":"a","id":"b"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"d"}}"#,
        &deep,
        r#"{"subject":{"type":"Dataset","id":"x"},"action":{"name":"read"},"resource":{"type":"Dataset","id":"help-center"}}"#,
        good,
    ]
    .join("\n");
    let (lines, _) = check(&["--no-explain"], &input);
    assert_eq!(lines.len(), 6);
    let fields: Vec<&str> = lines[..4]
        .iter()
        .map(|line| line["error"]["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["$", "subject.id", "$", "$"]);
    assert!(lines[2]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("duplicate key"));
    assert!(lines[3]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("nested too deeply"));
    // The schema rejects a dataset as a principal: a deny naming the field.
    assert_eq!(lines[4]["decision"], false);
    assert!(lines[4]["context"]["reason_admin"]
        .as_str()
        .unwrap()
        .contains("`subject.type`"));
    assert_eq!(outcome(&lines[5]), "allow");
    assert!(lines
        .iter()
        .all(|line| line["decision"] == false || line == &lines[5]));
}

#[test]
fn oversized_lines_are_refused() {
    let big = format!(
        r#"{{"subject":{{"type":"Agent","id":"{}"}},"action":{{"name":"read"}},"resource":{{"type":"Dataset","id":"d"}}}}"#,
        "x".repeat(2000)
    );
    let (lines, _) = check(&["--max-request-bytes", "1024"], &big);
    assert!(lines[0]["error"]["reason"]
        .as_str()
        .unwrap()
        .contains("over the limit"));
}

#[test]
fn invalid_policies_are_reported_with_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("arbiter-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("bad.cedar");
    std::fs::write(
        &policy,
        "permit(principal, action, resource);\nforbid(principal action, resource);\n",
    )
    .unwrap();
    let output = arbiter(&["check", "-p", policy.to_str().unwrap()], "");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("bad.cedar:2:"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_tells_a_person_what_failed_and_what_it_saw() {
    let request = r#"{"subject":{"type":"Agent","id":"triage-agent"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;
    let mut args = vec!["explain".to_owned()];
    args.extend(demo_bundle_args());
    // The demo inventory's signals were observed at 1767225000 with a one-hour time-to-live.
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = arbiter(&args, request);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with("DENY"), "{text}");
    assert!(
        text.contains("✗ context.arbiter.signals.risk_score.value < 50"),
        "{text}"
    );
    assert!(
        text.contains("context.arbiter.signals.risk_score.value = 81"),
        "{text}"
    );
}
