//! The decision log's guarantees against a real `arbiter serve` process:
//! - crash: the server is killed with SIGKILL at random moments under concurrent load, many
//!   times over; every decision a client received is in the log, with no duplicate or gap, and
//!   `arbiter audit verify` passes;
//! - faults: fsync and write failures on the log, injected with strace, turn decisions into
//!   denials that say why, never allows, and the server recovers when the fault clears.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use arbiter_log::LogDb;
use serde_json::Value;
use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const ALLOW: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;

struct Server {
    child: Child,
    base: String,
}

/// Starts `arbiter serve --demo` on a free loopback port; on the first start also returns the
/// demo enforcement point's key.
fn start(data: &Path) -> (Server, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let mut key = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Arbiter is listening on ") {
            base = rest.split_whitespace().next().map(str::to_owned);
        }
        if line.contains("`demo-gateway`") {
            key = line.rsplit(' ').next().map(str::to_owned);
        }
        if line.contains("earlier start") || (base.is_some() && key.is_some()) {
            break;
        }
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (
        Server {
            child,
            base: base.expect("the server printed its address"),
        },
        key,
    )
}

fn decide(client: &reqwest::blocking::Client, base: &str, key: &str) -> Result<Value, String> {
    let response = client
        .post(format!("{base}/access/v1/evaluation"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(ALLOW)
        .send()
        .map_err(|err| err.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    response.json().map_err(|err| err.to_string())
}

fn verify(data: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["audit", "verify", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("audit verify: {}", stdout.trim());
    assert!(output.status.success(), "audit verify failed:\n{stdout}");
}

/// Every decision id in the log, with how often it appears.
fn logged_decisions(data: &Path) -> Vec<(String, String)> {
    let db = LogDb::open_read_only(&data.join("decisions.sqlite3")).unwrap();
    let mut found = Vec::new();
    db.scan(1, u64::MAX, |row| {
        if row.columns.kind == "decision" {
            found.push((row.columns.decision_id.clone(), row.columns.outcome.clone()));
        }
        Ok(())
    })
    .unwrap();
    found
}

/// A seeded xorshift, so a failing run can be repeated with its printed seed.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn no_acknowledged_decision_is_lost_when_the_server_is_killed() {
    let cycles: usize = std::env::var("ARBITER_CRASH_CYCLES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(25);
    let mut seed: u64 = std::env::var("ARBITER_CRASH_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0x5eed_cafe);
    println!("crash test: {cycles} cycles, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut key = None;
    for cycle in 0..cycles {
        let (mut server, minted) = start(&data);
        key = key.or(minted);
        let key = key.clone().expect("the first start prints the demo key");
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (base, key) = (server.base.clone(), key.clone());
                let (stop, acknowledged) = (Arc::clone(&stop), Arc::clone(&acknowledged));
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        match decide(&client, &base, &key) {
                            Ok(answer) => {
                                let id = answer["context"]["id"].as_str().unwrap().to_owned();
                                acknowledged.lock().unwrap().push(id);
                            }
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        let delay = 150 + next(&mut seed) % 600;
        std::thread::sleep(Duration::from_millis(delay));
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for client in clients {
            client.join().unwrap();
        }
        println!(
            "cycle {cycle}: killed after {delay} ms, {} acknowledged so far",
            acknowledged.lock().unwrap().len()
        );
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    let logged = logged_decisions(&data);
    let mut seen = HashSet::new();
    for (id, _) in &logged {
        assert!(seen.insert(id.clone()), "decision {id} is in the log twice");
    }
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !seen.contains(*id))
        .collect();
    println!(
        "crash test: {cycles} SIGKILLs, {} decisions acknowledged, {} in the log, {} missing",
        acknowledged.len(),
        logged.len(),
        missing.len()
    );
    assert!(
        acknowledged.len() > cycles * 10,
        "too little load to mean anything"
    );
    assert!(
        missing.is_empty(),
        "acknowledged but not logged: {missing:?}"
    );
    verify(&data);
}

/// Runs `arbiter serve`, injects `fault` into the syscalls on the log's WAL for the first
/// `failures` of them, and checks that decisions are denied with the reason meanwhile and allowed
/// again after.
fn fault_is_denied_then_recovered(syscalls: &str, error: &str) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, key) = start(&data);
    let key = key.unwrap();
    let client = reqwest::blocking::Client::new();
    for _ in 0..3 {
        assert_eq!(
            decide(&client, &server.base, &key).unwrap()["decision"],
            true
        );
    }
    let wal = std::fs::canonicalize(&data)
        .unwrap()
        .join("decisions.sqlite3-wal");
    let mut strace = Command::new("strace")
        .args(["-f", "-qq", "-o", "/dev/null", "-P"])
        .arg(&wal)
        .args([
            "-e",
            &format!("trace={syscalls}"),
            "-e",
            &format!("inject={syscalls}:error={error}:when=1..6"),
            "-p",
        ])
        .arg(server.child.id().to_string())
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace must be installed (apt-get install strace); .ci/run installs it");
    // Give strace time to attach to every thread.
    std::thread::sleep(Duration::from_millis(1500));

    let mut allowed = Vec::new();
    let mut denied = Vec::new();
    let mut saw_not_ready = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let answer = decide(&client, &server.base, &key).unwrap();
        let id = answer["context"]["id"].as_str().unwrap().to_owned();
        if answer["decision"] == true {
            allowed.push(id);
            if !denied.is_empty() {
                break; // recovered
            }
        } else {
            let reason = answer["context"]["reason_admin"]["en"].as_str().unwrap();
            assert!(
                reason.contains("could not be recorded"),
                "a denial during the fault must say why: {reason}"
            );
            denied.push(id);
            let ready = client.get(format!("{}/ready", server.base)).send().unwrap();
            saw_not_ready |= ready.status().as_u16() == 503;
        }
    }
    let _ = strace.kill();
    let _ = strace.wait();
    for _ in 0..3 {
        let answer = decide(&client, &server.base, &key).unwrap();
        assert_eq!(answer["decision"], true, "after recovery: {answer}");
        allowed.push(answer["context"]["id"].as_str().unwrap().to_owned());
    }
    let ready = client.get(format!("{}/ready", server.base)).send().unwrap();
    assert_eq!(ready.status().as_u16(), 200, "ready again after recovery");
    println!(
        "fault {syscalls}={error}: {} denied during the fault, recovered after; {} allowed in all",
        denied.len(),
        allowed.len()
    );
    assert!(!denied.is_empty(), "the injected fault was never seen");
    assert!(saw_not_ready, "/ready must report the failing log");
    assert!(
        allowed.len() > 3,
        "decisions must be allowed again once the fault clears"
    );
    // Stop cleanly, then check the log: every allowed decision is in it, and the denials
    // were noted once the log recovered.
    terminate(&mut server.child);
    let logged: HashSet<String> = logged_decisions(&data)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in &allowed {
        assert!(
            logged.contains(id),
            "allowed decision {id} is not in the log"
        );
    }
    let db = LogDb::open_read_only(&data.join("decisions.sqlite3")).unwrap();
    let notices = db
        .search(&arbiter_log::EntryQuery {
            kind: Some("notice".into()),
            ..Default::default()
        })
        .unwrap();
    let noted: HashSet<String> = notices
        .iter()
        .flat_map(|notice| {
            notice.entry["detail"]["answered_deny"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    for id in &denied {
        assert!(noted.contains(id), "denial {id} was not noted in the log");
    }
    verify(&data);
}

/// SIGTERM via the `kill` command (the workspace forbids unsafe code, so no libc call).
fn terminate(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn an_fsync_failure_denies_until_the_log_recovers() {
    fault_is_denied_then_recovered("fsync,fdatasync", "EIO");
}

#[test]
fn a_full_disk_denies_until_the_log_recovers() {
    fault_is_denied_then_recovered("write,pwrite64", "ENOSPC");
}
