//! The administration commands (`identities`, `policies`, `keys`, `changes`), run as an operator
//! would: the real `arbiter` binary against a real server on 127.0.0.1:0 over the demo bundle.
//!
//! Every run also checks that the API key it was given appears nowhere in its output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use arbiter_core::InventoryDocument;
use arbiter_engine::{PolicySource, Schema};
use arbiter_server::{metrics_handle, AppState, Bootstrap, Role, ServerConfig};
use arbiter_store::SqliteStore;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const DEMO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/demo");

/// Environment that would change where the CLI connects; cleared for every run.
const AMBIENT: &[&str] = &[
    "ARBITER_SERVER",
    "ARBITER_API_KEY",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// A server over an in-memory store with the demo loaded, serving on a background thread until
/// dropped.
struct Server {
    base: String,
    admin_key: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start() -> Self {
        let read = |name: &str| std::fs::read_to_string(format!("{DEMO}/{name}")).unwrap();
        let schema = Schema::parse("schema.cedarschema", &read("schema.cedarschema")).unwrap();
        let inventory: InventoryDocument = serde_json::from_str(&read("inventory.json")).unwrap();
        let bootstrap = Bootstrap {
            policies: vec![PolicySource {
                name: "policies.cedar".to_owned(),
                text: read("policies.cedar"),
            }],
            inventory: vec![inventory],
            ..Bootstrap::default()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let (state, new_keys) = AppState::open(
            Arc::new(SqliteStore::open_in_memory().unwrap()),
            Some(schema),
            bootstrap,
            ServerConfig::default(),
            metrics_handle(),
            now,
        )
        .unwrap();
        let admin_key = new_keys
            .keys
            .into_iter()
            .find(|(_, role, _)| *role == Role::Admin)
            .map(|(_, _, key)| key)
            .unwrap();
        let (address_sender, address) = std::sync::mpsc::channel();
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                address_sender.send(listener.local_addr().unwrap()).unwrap();
                arbiter_server::serve(listener, Arc::new(state), async {
                    let _ = signal.await;
                })
                .await
                .unwrap();
            });
        });
        Server {
            base: format!("http://{}", address.recv().unwrap()),
            admin_key,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    /// Runs `arbiter` as the admin, with the server and key in the environment.
    fn run(&self, args: &[&str]) -> Run {
        self.run_with_key(Some(&self.admin_key), args)
    }

    fn run_with_key(&self, key: Option<&str>, args: &[&str]) -> Run {
        let mut env = vec![("ARBITER_SERVER", self.base.as_str())];
        if let Some(key) = key {
            env.push(("ARBITER_API_KEY", key));
        }
        let run = arbiter(&env, args);
        // The admin key is never printed, whoever runs the command.
        assert_no_secret(&run, &self.admin_key);
        run
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a run of the binary did.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn success(self) -> Self {
        assert_eq!(self.code, 0, "{self:#?}");
        self
    }

    fn failure(self, code: i32) -> Self {
        assert_eq!(self.code, code, "{self:#?}");
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|err| panic!("stdout is not one JSON document ({err}): {self:#?}"))
    }

    /// The data rows of a table, split on runs of spaces.
    fn rows(&self) -> Vec<Vec<String>> {
        self.stdout
            .lines()
            .skip(1)
            .map(|line| {
                line.split("  ")
                    .map(str::trim)
                    .filter(|cell| !cell.is_empty())
            })
            .map(|cells| cells.map(str::to_owned).collect())
            .collect()
    }
}

fn arbiter(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    for name in AMBIENT {
        command.env_remove(name);
    }
    let output = command
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn assert_no_secret(run: &Run, secret: &str) {
    assert!(
        !run.stdout.contains(secret) && !run.stderr.contains(secret),
        "the API key was printed: {run:#?}"
    );
}

/// A scratch folder, removed at the end of the test.
fn scratch(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn lifecycle(server: &Server, identity: &str) -> String {
    let run = server
        .run(&["identities", "get", identity, "--json"])
        .success();
    run.json()["lifecycle"].as_str().unwrap().to_owned()
}

fn active_version(server: &Server) -> u64 {
    let versions = server.run(&["policies", "list", "--json"]).success().json();
    let active: Vec<u64> = versions
        .as_array()
        .unwrap()
        .iter()
        .filter(|version| version["active"] == true)
        .map(|version| version["version"].as_u64().unwrap())
        .collect();
    assert_eq!(active.len(), 1, "{versions:#}");
    active[0]
}

#[test]
fn identities_are_listed_as_a_table_and_as_json() {
    let server = Server::start();

    let table = server.run(&["identities", "list"]).success();
    let header = table.stdout.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["KIND", "ID", "LIFECYCLE", "OWNER", "NAME"]
    );
    let rows = table.rows();
    assert_eq!(rows.len(), 7, "{table:#?}");
    assert!(rows.contains(&vec![
        "ai_agent".to_owned(),
        "research-agent".to_owned(),
        "quarantined".to_owned(),
        "bob".to_owned(),
        "Research agent (misbehaved)".to_owned(),
    ]));
    // Columns are aligned: every row's id starts under the header's `ID`.
    let id_column = header.find("ID").unwrap();
    for (line, row) in table.stdout.lines().skip(1).zip(&rows) {
        assert_eq!(line.find(row[1].as_str()), Some(id_column), "{line}");
    }

    let filtered = server
        .run(&[
            "identities",
            "list",
            "--kind",
            "ai_agent",
            "--lifecycle",
            "quarantined",
        ])
        .success();
    let ids: Vec<String> = filtered
        .rows()
        .into_iter()
        .map(|row| row[1].clone())
        .collect();
    assert_eq!(ids, ["research-agent"], "{filtered:#?}");
    let owned = server
        .run(&["identities", "list", "--owner", "alice"])
        .success();
    assert_eq!(owned.rows().len(), 2, "{owned:#?}");

    let json = server
        .run(&["identities", "list", "--json"])
        .success()
        .json();
    assert_eq!(json["items"].as_array().unwrap().len(), 7);
    assert_eq!(json["next"], Value::Null);
    let every_id: Vec<&Value> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item["id"])
        .collect();

    // One page says how to get the next; `--all` follows the cursors into one document.
    let page = server
        .run(&["identities", "list", "--limit", "3"])
        .success();
    assert_eq!(page.rows().len(), 3);
    assert!(page.stderr.contains("--all"), "{page:#?}");
    let cursor = page.stderr.trim().rsplit(' ').next().unwrap().to_owned();
    let second = server
        .run(&["identities", "list", "--limit", "3", "--after", &cursor])
        .success();
    assert_eq!(second.rows()[0][1], "alice", "{second:#?}");
    let all = server
        .run(&["identities", "list", "--limit", "3", "--all", "--json"])
        .success()
        .json();
    assert_eq!(all["next"], Value::Null);
    let followed: Vec<&Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| &item["id"])
        .collect();
    assert_eq!(followed, every_id);
}

#[test]
fn a_quarantine_with_a_reason_shows_in_get_and_in_changes() {
    let server = Server::start();
    let reason = "prompt injection seen in ticket 4711";

    let quarantined = server
        .run(&[
            "identities",
            "quarantine",
            "ai_agent/support-copilot",
            "--reason",
            reason,
        ])
        .success();
    assert!(
        quarantined
            .stdout
            .starts_with("ai_agent/support-copilot is now quarantined (change "),
        "{quarantined:#?}"
    );

    let shown = server
        .run(&["identities", "get", "ai_agent/support-copilot"])
        .success();
    assert!(shown.stdout.starts_with("ai_agent/support-copilot\n"));
    assert!(
        shown
            .stdout
            .lines()
            .any(|line| line.split_whitespace().collect::<Vec<_>>() == ["lifecycle", "quarantined"]),
        "{shown:#?}"
    );
    // The Cedar spelling names the same identity.
    assert_eq!(lifecycle(&server, "Agent/support-copilot"), "quarantined");
    assert_eq!(
        lifecycle(&server, r#"Agent::"support-copilot""#),
        "quarantined"
    );

    let changes = server.run(&["changes"]).success();
    let last = changes.stdout.lines().last().unwrap();
    for expected in [
        "identity.lifecycle",
        r#"Agent::"support-copilot""#,
        "(admin)",
        reason,
    ] {
        assert!(last.contains(expected), "{expected} not in {last}");
    }
    let events = server.run(&["changes", "--json"]).success().json();
    let event = events.as_array().unwrap().last().unwrap().clone();
    assert_eq!(event["kind"], "identity.lifecycle");
    assert_eq!(event["reason"], reason);
    assert_eq!(event["detail"]["after"], "quarantined");
    assert_eq!(event["detail"]["before"], "active");
    let seq = event["seq"].as_u64().unwrap().to_string();
    let none_after = server.run(&["changes", "--since", &seq]).success();
    assert_eq!(none_after.stdout, "");
    assert!(none_after.stderr.contains("no changes after"));

    let reinstated = server
        .run(&[
            "identities",
            "reinstate",
            "ai_agent/support-copilot",
            "--reason",
            "false positive",
        ])
        .success();
    assert!(reinstated.stdout.contains("is now active"));
    assert_eq!(lifecycle(&server, "ai_agent/support-copilot"), "active");
    for (command, state) in [("suspend", "suspended"), ("revoke", "revoked")] {
        server
            .run(&[
                "identities",
                command,
                "ai_agent/triage-agent",
                "--reason",
                "incident 12",
            ])
            .success();
        assert_eq!(lifecycle(&server, "ai_agent/triage-agent"), state);
    }
}

#[test]
fn a_change_without_a_reason_is_refused_and_changes_nothing() {
    let server = Server::start();
    let before = server.run(&["changes", "--json"]).success().json();

    let missing = server
        .run(&["identities", "quarantine", "ai_agent/support-copilot"])
        .failure(2);
    assert!(missing.stderr.contains("--reason"), "{missing:#?}");
    let blank = server
        .run(&[
            "identities",
            "quarantine",
            "ai_agent/support-copilot",
            "--reason",
            "   ",
        ])
        .failure(2);
    assert!(blank.stderr.contains("a reason must say why"), "{blank:#?}");
    for args in [
        &["identities", "delete", "ai_agent/support-copilot"][..],
        &["identities", "suspend", "ai_agent/support-copilot"],
        &["policies", "activate", "1"],
        &["policies", "rollback"],
        &["policies", "upload", DEMO],
        &["keys", "revoke", "some-id"],
    ] {
        let run = server.run(args).failure(2);
        assert!(run.stderr.contains("--reason"), "{args:?}: {run:#?}");
    }
    // A reason the server would read as no reason at all (it takes the header as ASCII).
    let unicode = server
        .run(&[
            "identities",
            "delete",
            "ai_agent/support-copilot",
            "--reason",
            "retired \u{2014} replaced by v2",
        ])
        .failure(2);
    assert!(unicode.stderr.contains("printable ASCII"), "{unicode:#?}");

    assert_eq!(lifecycle(&server, "ai_agent/support-copilot"), "active");
    let after = server.run(&["changes", "--json"]).success().json();
    assert_eq!(before, after, "a refused change reached the change feed");
}

#[test]
fn an_invalid_policy_names_file_line_and_column() {
    let server = Server::start();
    let dir = scratch(&[
        (
            "a-good.cedar",
            "@id(\"bob-reads-help\")\npermit(principal == Human::\"bob\", action == Action::\"read\", resource == Dataset::\"help-center\");\n",
        ),
        (
            "b-bad.cedar",
            "@id(\"broken\")\npermit(principal, action, resource)\nwhen { principal.lifecycle == };\n",
        ),
    ]);
    let bad = format!("{}/b-bad.cedar", path_str(dir.path()));
    let expected = format!("{bad}:3:31: ");

    let validated = server
        .run(&["policies", "validate", path_str(dir.path())])
        .failure(1);
    assert!(
        validated.stdout.starts_with(&expected),
        "{expected} {validated:#?}"
    );
    assert!(validated.stderr.contains("invalid: 1 error"));
    let json = server
        .run(&["policies", "validate", path_str(dir.path()), "--json"])
        .failure(1)
        .json();
    assert_eq!(json["valid"], false);
    assert_eq!(json["errors"][0]["source"], "b-bad.cedar");

    let uploaded = server
        .run(&[
            "policies",
            "upload",
            path_str(dir.path()),
            "--activate",
            "--reason",
            "try the broken one",
        ])
        .failure(2);
    assert!(
        uploaded.stderr.starts_with(&expected),
        "{expected} {uploaded:#?}"
    );
    assert!(
        uploaded
            .stderr
            .contains("error: rejected: 1 error in the policies"),
        "{uploaded:#?}"
    );
    assert_eq!(
        server
            .run(&["policies", "list", "--json"])
            .success()
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "a rejected upload was stored"
    );

    let valid = server
        .run(&["policies", "validate", &format!("{DEMO}/policies.cedar")])
        .success();
    assert!(valid.stdout.starts_with("valid: 6 policies"), "{valid:#?}");
}

#[test]
fn policies_are_uploaded_activated_and_rolled_back() {
    let server = Server::start();
    let demo = std::fs::read_to_string(format!("{DEMO}/policies.cedar")).unwrap();
    let extra = "@id(\"bob-reads-help\")\npermit(principal == Human::\"bob\", action == Action::\"read\", resource == Dataset::\"help-center\");\n";
    let dir = scratch(&[("policies.cedar", &demo), ("extra.cedar", extra)]);

    let uploaded = server
        .run(&[
            "policies",
            "upload",
            path_str(dir.path()),
            "--activate",
            "--reason",
            "bob reads the help center",
        ])
        .success();
    assert_eq!(
        uploaded.stdout,
        "uploaded policy version 2 (2 files); it is active\n"
    );
    assert_eq!(active_version(&server), 2);
    let listed = server.run(&["policies", "list"]).success();
    let rows = listed.rows();
    assert_eq!(rows[1][0], "2");
    assert_eq!(rows[1][1], "yes");
    assert_eq!(rows[1][4], "extra.cedar,policies.cedar");
    assert_eq!(rows[1][5], "bob reads the help center");

    let shown = server.run(&["policies", "show", "2"]).success();
    assert!(shown.stdout.starts_with("policy version 2 (active)\n"));
    assert!(shown.stdout.contains(&format!("// extra.cedar\n{extra}")));
    let shown = server
        .run(&["policies", "show", "2", "--json"])
        .success()
        .json();
    assert_eq!(shown["sources"][0]["name"], "extra.cedar");

    let rolled_back = server
        .run(&[
            "policies",
            "rollback",
            "--reason",
            "extra policy misbehaves",
        ])
        .success();
    assert_eq!(
        rolled_back.stdout,
        "rolled back: policy version 1 is active\n"
    );
    assert_eq!(active_version(&server), 1);
    let nothing_earlier = server
        .run(&["policies", "rollback", "--reason", "again"])
        .failure(2);
    assert!(
        nothing_earlier
            .stderr
            .starts_with("error: conflict: there is no earlier policy version"),
        "{nothing_earlier:#?}"
    );

    server
        .run(&["policies", "activate", "2", "--reason", "fixed upstream"])
        .success();
    assert_eq!(active_version(&server), 2);
    server
        .run(&[
            "policies",
            "rollback",
            "--to",
            "1",
            "--reason",
            "back to the start",
        ])
        .success();
    assert_eq!(active_version(&server), 1);
    let missing = server
        .run(&["policies", "activate", "9", "--reason", "typo"])
        .failure(2);
    assert!(
        missing.stderr.starts_with("error: not found: "),
        "{missing:#?}"
    );

    let events = server.run(&["changes", "--json"]).success().json();
    let activations: Vec<(&Value, &Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "policy.activate")
        .map(|event| (&event["detail"]["after"], &event["reason"]))
        .skip(1)
        .collect();
    assert_eq!(
        activations,
        [
            (&Value::from(2), &Value::from("bob reads the help center")),
            (&Value::from(1), &Value::from("extra policy misbehaves")),
            (&Value::from(2), &Value::from("fixed upstream")),
            (&Value::from(1), &Value::from("back to the start")),
        ]
    );
}

#[test]
fn a_key_is_shown_once_works_for_its_role_and_stops_when_revoked() {
    let server = Server::start();

    let created = server
        .run(&[
            "keys",
            "create",
            "--name",
            "audit-bot",
            "--role",
            "auditor",
            "--reason",
            "quarterly audit",
        ])
        .success();
    let key = created.stdout.trim().to_owned();
    assert!(
        key.starts_with("arb_") && !key.contains(char::is_whitespace),
        "{created:#?}"
    );
    assert!(created.stderr.contains("created key `audit-bot`"));
    assert!(
        created.stderr.contains("cannot be shown again"),
        "{created:#?}"
    );

    let listed = server.run(&["keys", "list"]).success();
    assert!(!listed.stdout.contains(&key), "the key was listed");
    let row = listed
        .rows()
        .into_iter()
        .find(|row| row[1] == "audit-bot")
        .unwrap();
    assert_eq!(row[2], "auditor");
    assert_eq!(row[5], "-");
    let id = row[0].clone();

    // The new key reads, as an auditor may, and may not change lifecycles.
    server
        .run_with_key(Some(&key), &["identities", "list"])
        .success();
    let forbidden = server
        .run_with_key(
            Some(&key),
            &[
                "identities",
                "quarantine",
                "ai_agent/support-copilot",
                "--reason",
                "audit",
            ],
        )
        .failure(2);
    assert!(
        forbidden
            .stderr
            .starts_with("error: forbidden: role `auditor` may not `lifecycle.write`"),
        "{forbidden:#?}"
    );
    assert_no_secret(&forbidden, &key);

    let revoked = server
        .run(&["keys", "revoke", &id, "--reason", "audit finished"])
        .success();
    assert_eq!(revoked.stdout, format!("revoked key {id}\n"));
    let refused = server
        .run_with_key(Some(&key), &["identities", "list"])
        .failure(2);
    assert!(refused.stderr.starts_with("error: unauthenticated: "));
    assert_no_secret(&refused, &key);
    let listed = server.run(&["keys", "list", "--json"]).success().json();
    let record = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|record| record["id"] == id.as_str())
        .unwrap();
    assert!(record["revoked_at"].is_i64());

    // A bad field is named.
    let wizard = server
        .run(&["keys", "create", "--name", "x", "--role", "wizard"])
        .failure(2);
    assert!(
        wizard.stderr.starts_with("error: invalid request: ")
            && wizard.stderr.contains("(field `role`)"),
        "{wizard:#?}"
    );
}

#[test]
fn identities_are_created_from_a_file_and_deleted() {
    let server = Server::start();
    let dir = scratch(&[(
        "agent.json",
        r#"{"id": "ops/bot 1", "kind": "ai_agent", "owner": "bob", "display_name": "Ops bot"}"#,
    )]);
    let file = format!("{}/agent.json", path_str(dir.path()));

    let created = server
        .run(&[
            "identities",
            "create",
            "--file",
            &file,
            "--reason",
            "new ops bot",
        ])
        .success();
    assert_eq!(created.stdout, "created ai_agent/ops/bot 1\n");
    // An id with a slash and a space is one path segment.
    assert_eq!(lifecycle(&server, "ai_agent/ops/bot 1"), "active");
    let again = server
        .run(&["identities", "create", "--file", &file])
        .failure(2);
    assert!(again.stderr.starts_with("error: conflict: "), "{again:#?}");

    server
        .run(&[
            "identities",
            "delete",
            "ai_agent/ops/bot 1",
            "--reason",
            "replaced",
        ])
        .success();
    let gone = server
        .run(&["identities", "get", "ai_agent/ops/bot 1"])
        .failure(2);
    assert!(gone.stderr.starts_with("error: not found: "), "{gone:#?}");

    let events = server.run(&["changes", "--json"]).success().json();
    let reasons: Vec<(&Value, &Value)> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["subject"] == r#"Agent::"ops/bot 1""#)
        .map(|event| (&event["kind"], &event["reason"]))
        .collect();
    assert_eq!(
        reasons,
        [
            (&Value::from("identity.create"), &Value::from("new ops bot")),
            (&Value::from("identity.delete"), &Value::from("replaced")),
        ]
    );

    let broken = scratch(&[("agent.json", r#"{"id": "x","#)]);
    let run = server
        .run(&[
            "identities",
            "create",
            "--file",
            &format!("{}/agent.json", path_str(broken.path())),
        ])
        .failure(2);
    assert!(run.stderr.contains("is not valid JSON"), "{run:#?}");
}

#[test]
fn a_wrong_or_missing_key_exits_2_with_the_problem_detail() {
    let server = Server::start();
    let wrong = "arb_0000000000000000000000000000000000000000000000000000000000000000";
    let expected = "error: unauthenticated: send an API key as `Authorization: Bearer <key>`\n";

    let from_env = server
        .run_with_key(Some(wrong), &["identities", "list"])
        .failure(2);
    assert!(from_env.stderr.starts_with(expected), "{from_env:#?}");
    assert_eq!(from_env.stdout, "");
    assert_no_secret(&from_env, wrong);

    let from_flag = server
        .run_with_key(None, &["changes", "--api-key", wrong, "--json"])
        .failure(2);
    assert!(from_flag.stderr.starts_with(expected), "{from_flag:#?}");
    assert_no_secret(&from_flag, wrong);

    let anonymous = server.run_with_key(None, &["keys", "list"]).failure(2);
    assert!(anonymous.stderr.starts_with(expected), "{anonymous:#?}");
}

#[test]
fn an_unreachable_server_exits_3() {
    // A port that was just free: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let key = "arb_1111111111111111111111111111111111111111111111111111111111111111";
    for args in [
        &["identities", "list"][..],
        &["policies", "list", "--json"],
        &["keys", "list"],
        &["changes"],
    ] {
        let run = arbiter(
            &[("ARBITER_SERVER", &server), ("ARBITER_API_KEY", key)],
            args,
        );
        assert_eq!(run.code, 3, "{args:?}: {run:#?}");
        assert!(
            run.stderr
                .starts_with(&format!("error: cannot reach the server at {server}/")),
            "{run:#?}"
        );
        assert_no_secret(&run, key);
    }
    let flag = arbiter(
        &[("ARBITER_API_KEY", key)],
        &["identities", "list", "--server", &server],
    );
    assert_eq!(flag.code, 3, "{flag:#?}");
}

#[test]
fn help_never_shows_the_api_key() {
    let key = "arb_2222222222222222222222222222222222222222222222222222222222222222";
    for args in [
        &["identities", "--help"][..],
        &["identities", "list", "--help"],
        &["policies", "upload", "--help"],
        &["keys", "create", "--help"],
        &["changes", "--help"],
        // A usage error lists the arguments given, the key's among them.
        &["keys", "create"],
    ] {
        let run = arbiter(&[("ARBITER_API_KEY", key)], args);
        assert_no_secret(&run, key);
    }
    // A key that cannot be sent is refused without being quoted.
    let unsendable = "arb_3333\u{1}3333";
    let run = arbiter(&[("ARBITER_API_KEY", unsendable)], &["keys", "list"]).failure(2);
    assert!(run.stderr.contains("HTTP header"), "{run:#?}");
    assert_no_secret(&run, unsendable);
    assert_no_secret(&run, "3333");

    let help = arbiter(&[], &["identities", "list", "--help"]).success();
    for option in [
        "--server",
        "ARBITER_SERVER",
        "--api-key",
        "ARBITER_API_KEY",
        "--json",
    ] {
        assert!(help.stdout.contains(option), "{option} missing: {help:#?}");
    }
}

#[test]
fn an_approver_acting_for_the_owner_approves_from_the_command_line() {
    let server = Server::start();
    let key_of = |run: Run| run.success().json()["key"].as_str().unwrap().to_owned();
    let gateway = key_of(server.run(&[
        "keys",
        "create",
        "--name",
        "gw",
        "--role",
        "enforcement_point",
        "--json",
    ]));
    let alice = key_of(server.run(&[
        "keys",
        "create",
        "--name",
        "alice",
        "--role",
        "approver",
        "--acts-for",
        "alice",
        "--json",
    ]));
    let ask = || -> Value {
        reqwest::blocking::Client::new()
            .post(format!("{}/access/v1/evaluation", server.base))
            .bearer_auth(&gateway)
            .header("content-type", "application/json")
            .body(r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.delete_customer"}}"#)
            .send()
            .unwrap()
            .json()
            .unwrap()
    };
    // The demo's live signal must be fresh for the agent to be allowed at all.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = reqwest::blocking::Client::new()
        .put(format!("{}/admin/v1/signals", server.base))
        .bearer_auth(&server.admin_key)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"subject":{{"type":"Agent","id":"support-copilot"}},"name":"risk_score","value":10,"source":"test","observed_at":{now},"ttl_seconds":3600}}"#
        ))
        .send()
        .unwrap();
    assert!(fresh.status().is_success(), "{fresh:?}");
    let first = ask();
    assert_eq!(first["context"]["outcome"], "approval_required", "{first}");
    let id = first["context"]["approval"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let queue = server
        .run_with_key(Some(&alice), &["approvals", "list"])
        .success();
    assert!(
        queue.rows().iter().any(|row| row.first() == Some(&id)),
        "{queue:#?}"
    );
    let shown = server
        .run_with_key(
            Some(&alice),
            &["approvals", "approve", &id, "--reason", "customer asked"],
        )
        .success();
    assert!(shown.stdout.contains("approved"), "{shown:#?}");
    assert!(shown.stdout.contains(r#"Human::"alice""#), "{shown:#?}");
    let second = ask();
    assert_eq!(second["decision"], true, "{second}");
    assert_eq!(second["context"]["approval"]["id"], id.as_str());
    // A key that acts for nobody is told why it cannot approve.
    let denied = server
        .run(&["approvals", "deny", &id, "--reason", "late"])
        .failure(2);
    assert!(
        denied.stderr.contains("does not act for a person") || denied.stderr.contains("already"),
        "{denied:#?}"
    );
}
