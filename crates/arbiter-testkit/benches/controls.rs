//! Runtime-control benchmarks (issue 5): how long a control call takes, how soon a decider
//! that is busy deciding sees its effect, and what 10,000 active controls cost every other
//! decision, side by side with none in one run.
//!
//! Run with `cargo bench -p arbiter-testkit --bench controls`. Prints markdown tables; the
//! figures in `docs/benchmarks.md` ("Runtime controls") come from this binary.
//!
//! In process, on one generated workload of 100,000 identities and 1,000 policies:
//! - **the call**: `SnapshotCell::update` with `inventory_mut().set_lifecycle(…, Quarantined)`,
//!   timed alone (nothing else running) and while a decider thread spins on the same cell;
//! - **time to effect**: one thread decides an allowed request in a loop (`load`, then
//!   `decide`); the main thread quarantines its subject. Timed from the start of the call to the
//!   start of the first decision that denies (the first to load the new snapshot) and to the end
//!   of that decision (when the decider holds the deny). Every decision that starts after the
//!   call returned must deny; the run fails if one does not;
//! - **10,000 active controls**: the same requests decided against a snapshot with no identity
//!   contained and against one with 10,000 identities quarantined or suspended (none of them a
//!   subject of those requests), alternating request by request so that noise hits both alike;
//!   and, beside them, requests whose subject is contained (denied by the guard).
//!
//! Over HTTP, when `ARBITER_BENCH_SERVER` names an `arbiter` binary by its absolute path (build
//! it with `cargo build --release -p arbiter-cli`): that binary runs `serve --demo` on a temporary data
//! folder (SQLite store and durable decision log, as in production) on 127.0.0.1, and one
//! keep-alive connection quarantines and reinstates support-copilot in turn, deciding its CRM
//! request after each call: denied after every quarantine, allowed after every reinstatement
//! (checked). The call is timed from writing the request to reading the whole response.
//!
//! Each latency is one call timed with `Instant`; the tables give the 50th and 99th percentiles.

use arbiter_core::{Control, ControlLevel, DecisionRequest, EntityRef, Lifecycle, Outcome};
use arbiter_engine::{DecideOptions, Snapshot, SnapshotCell};
use arbiter_testkit::{generate, WorkloadConfig};
use std::collections::HashSet;
use std::error::Error;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error>>;

const SEED: u64 = 0xBE7C_2002;
const REQUEST_SEED: u64 = 0x5EED_2005;
const IDENTITIES: usize = 100_000;
const GROUPS: usize = 2_000;
const RESOURCES: usize = 10_000;
const POLICIES: usize = 1_000;
/// Identities contained in the "10,000 active controls" snapshot: every tenth one.
const CONTROLS: usize = 10_000;
/// Quarantines timed with nothing else running, and against a spinning decider.
const CALLS: usize = 2_000;
const EFFECT_TRIALS: usize = 1_000;
/// Requests decided against each snapshot in the side-by-side comparison.
const SIDE_BY_SIDE: usize = 20_000;
/// Allowed decisions the decider must have made before the control fires (it is spinning).
const WARM_DECISIONS: usize = 3;
/// A fixed "now" (2026-01-01T00:00:00Z): the engine reads no clock.
const NOW: i64 = 1_767_225_600;
/// Names an `arbiter` binary to time the control call over HTTP as well.
const SERVER_VAR: &str = "ARBITER_BENCH_SERVER";
/// Quarantine-and-reinstate rounds over HTTP.
const HTTP_ROUNDS: usize = 500;
const HTTP_LIFECYCLE: &str = "/admin/v1/identities/ai_agent/support-copilot/lifecycle";
const HTTP_REQUEST: &str = r#"{"subject":{"type":"Agent","id":"support-copilot"},"action":{"name":"call_tool"},"resource":{"type":"Tool","id":"crm.lookup_customer"}}"#;

fn main() -> BenchResult<()> {
    let started = Instant::now();
    let workload = generate(&WorkloadConfig {
        seed: SEED,
        identities: IDENTITIES,
        groups: GROUPS,
        resources: RESOURCES,
        policies: POLICIES,
    });
    let snapshot = arbiter_testkit::arbiter_snapshot(&workload)?;
    println!(
        "workload: seed {SEED:#x}, {IDENTITIES} identities, {GROUPS} groups, {RESOURCES} resources, \
         {POLICIES} policies; requests: seed {REQUEST_SEED:#x}; loaded in {:.1?}",
        started.elapsed()
    );

    // Every tenth identity is contained in the controlled snapshot; the others are the subjects
    // of the requests measured side by side, and of the quarantines timed below.
    let identities: Vec<EntityRef> = workload.identities().collect();
    let controlled: HashSet<EntityRef> = identities
        .iter()
        .step_by(IDENTITIES / CONTROLS)
        .take(CONTROLS)
        .cloned()
        .collect();
    let generated: Vec<DecisionRequest> = workload
        .requests(REQUEST_SEED, 4 * SIDE_BY_SIDE)
        .iter()
        .map(|request| request.to_decision_request())
        .collect();
    let (on_controlled, others): (Vec<DecisionRequest>, Vec<DecisionRequest>) = generated
        .into_iter()
        .partition(|request| controlled.contains(&request.subject.entity));

    let explain = options();
    // Distinct subjects, outside the controlled set, that are allowed right now.
    let mut seen = HashSet::new();
    let allowed: Vec<&DecisionRequest> = others
        .iter()
        .filter(|request| seen.insert(request.subject.entity.clone()))
        .filter(|request| snapshot.decide(request, &explain).outcome == Outcome::Allow)
        .take(EFFECT_TRIALS + CALLS)
        .collect();
    if allowed.len() < EFFECT_TRIALS + CALLS {
        return Err(format!(
            "only {} allowed requests with distinct subjects",
            allowed.len()
        )
        .into());
    }
    let (for_effect, for_calls) = allowed.split_at(EFFECT_TRIALS);

    let idle_calls = measure_idle_calls(&snapshot, for_calls)?;
    println!("the call alone: p50 {:.1?}", idle_calls.p50);
    let effect = measure_effect(&snapshot, for_effect)?;
    println!(
        "time to effect: p50 {:.1?} to the first deny",
        effect.to_deny_answered.p50
    );
    let side_by_side = measure_side_by_side(
        &snapshot,
        &identities,
        &controlled,
        others.get(..SIDE_BY_SIDE).unwrap_or(&others),
        on_controlled.get(..SIDE_BY_SIDE).unwrap_or(&on_controlled),
    )?;

    let http = match std::env::var(SERVER_VAR) {
        Ok(binary) => Some(measure_http(&binary)?),
        Err(_) => {
            println!("over HTTP: skipped (set {SERVER_VAR} to an `arbiter` binary)");
            None
        }
    };

    println!();
    print_control_table(&idle_calls, &effect);
    println!();
    print_side_by_side_table(&side_by_side);
    println!();
    if let Some(http) = &http {
        print_http_table(http);
        println!();
    }
    println!("total bench time: {:.1?}", started.elapsed());
    Ok(())
}

/// As the server decides: with the condition-level explanation.
fn options() -> DecideOptions {
    DecideOptions {
        now: NOW,
        decision_id: "bench".to_owned(),
        explain: true,
    }
}

#[derive(Debug, Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p99: Duration,
    samples: usize,
}

impl Percentiles {
    fn of(mut durations: Vec<Duration>) -> Self {
        durations.sort_unstable();
        let at = |percent: usize| {
            let idx = (durations.len() * percent / 100).min(durations.len().saturating_sub(1));
            durations.get(idx).copied().unwrap_or_default()
        };
        Self {
            p50: at(50),
            p99: at(99),
            samples: durations.len(),
        }
    }
}

fn quarantine(cell: &SnapshotCell, entity: &EntityRef) -> BenchResult<()> {
    cell.update(|next| {
        next.inventory_mut()
            .set_lifecycle(entity, Lifecycle::Quarantined)
    })?;
    Ok(())
}

/// The control call with nothing else running: one quarantine after another, each on its own
/// identity, on one cell (so the snapshot accumulates them, as a server's would).
fn measure_idle_calls(
    snapshot: &Snapshot,
    requests: &[&DecisionRequest],
) -> BenchResult<Percentiles> {
    let cell = SnapshotCell::new(snapshot.clone());
    let mut calls = Vec::with_capacity(requests.len());
    for request in requests {
        let started = Instant::now();
        quarantine(&cell, &request.subject.entity)?;
        calls.push(started.elapsed());
    }
    Ok(Percentiles::of(calls))
}

struct Effect {
    /// The call, while a decider spins on the same cell.
    call: Percentiles,
    /// From the start of the call to the start of the first decision that denies.
    to_deny_started: Percentiles,
    /// From the start of the call to the end of that decision (the decider holds the deny).
    to_deny_answered: Percentiles,
    /// Trials whose first deny started before the call had returned.
    effect_before_return: usize,
    /// Decisions that started after the call returned, all denied (checked).
    denied_after_return: usize,
    /// Allowed decisions in flight when the call returned (started before, ended after).
    allowed_in_flight: usize,
}

/// What the decider saw in one trial.
struct DeciderLog {
    /// Start of each allowed decision.
    allow_starts: Vec<Instant>,
    /// End of each allowed decision.
    allow_ends: Vec<Instant>,
    /// Start and end of the denied decisions (the first one, then a few more).
    deny_spans: Vec<(Instant, Instant)>,
}

/// One decider thread decides `request` in a loop; once it has made a few allowed decisions,
/// the main thread quarantines the subject. The decider stops a few denies later.
fn measure_effect(snapshot: &Snapshot, requests: &[&DecisionRequest]) -> BenchResult<Effect> {
    let cell = SnapshotCell::new(snapshot.clone());
    let explain = options();
    let mut calls = Vec::with_capacity(requests.len());
    let mut to_deny_started = Vec::with_capacity(requests.len());
    let mut to_deny_answered = Vec::with_capacity(requests.len());
    let mut effect_before_return = 0;
    let mut denied_after_return = 0;
    let mut allowed_in_flight = 0;
    for request in requests {
        let allows = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let (call_started, call_returned, log) = std::thread::scope(|scope| {
            let decider = scope.spawn(|| {
                let mut log = DeciderLog {
                    allow_starts: Vec::new(),
                    allow_ends: Vec::new(),
                    deny_spans: Vec::new(),
                };
                // A few denies after the first, so that "every decision started after the call
                // returned is a deny" is checked on more than one decision.
                while log.deny_spans.len() < 3 && !stop.load(Ordering::Acquire) {
                    let started = Instant::now();
                    let decision = cell.load().decide(request, &explain);
                    let ended = Instant::now();
                    if decision.outcome == Outcome::Allow {
                        log.allow_starts.push(started);
                        log.allow_ends.push(ended);
                        allows.fetch_add(1, Ordering::Release);
                    } else {
                        log.deny_spans.push((started, ended));
                    }
                    black_box(decision);
                }
                log
            });
            // The decider stops by itself only after denies, which cannot come before the call.
            while allows.load(Ordering::Acquire) < WARM_DECISIONS && !decider.is_finished() {
                std::thread::yield_now();
            }
            let call_started = Instant::now();
            let call = quarantine(&cell, &request.subject.entity);
            let call_returned = Instant::now();
            if call.is_err() {
                stop.store(true, Ordering::Release);
            }
            let log = decider.join();
            call.map(|()| (call_started, call_returned, log))
        })?;
        let log = log.map_err(|_| "the decider thread panicked")?;
        if log.allow_starts.len() < WARM_DECISIONS {
            return Err(format!(
                "`{}` was denied before the quarantine",
                request.subject.entity
            )
            .into());
        }
        if let Some(late) = log
            .allow_starts
            .iter()
            .find(|started| **started > call_returned)
        {
            return Err(format!(
                "BUG: `{}` allowed by a decision that started {:?} after the quarantine returned",
                request.subject.entity,
                *late - call_returned
            )
            .into());
        }
        let &(deny_started, deny_ended) = log
            .deny_spans
            .first()
            .ok_or("the decider stopped before it saw a deny")?;
        calls.push(call_returned - call_started);
        to_deny_started.push(deny_started.saturating_duration_since(call_started));
        to_deny_answered.push(deny_ended.saturating_duration_since(call_started));
        effect_before_return += usize::from(deny_started < call_returned);
        denied_after_return += log
            .deny_spans
            .iter()
            .filter(|(started, _)| *started > call_returned)
            .count();
        allowed_in_flight += log
            .allow_ends
            .iter()
            .filter(|ended| **ended > call_returned)
            .count();
    }
    Ok(Effect {
        call: Percentiles::of(calls),
        to_deny_started: Percentiles::of(to_deny_started),
        to_deny_answered: Percentiles::of(to_deny_answered),
        effect_before_return,
        denied_after_return,
        allowed_in_flight,
    })
}

struct SideBySide {
    none: Percentiles,
    with_controls: Percentiles,
    /// Requests whose subject is contained, against the controlled snapshot.
    contained: Percentiles,
    /// Whether the requests of the first two rows decided alike on both snapshots.
    same_outcomes: bool,
    allow_share: f64,
    /// How many of the controls are runtime controls (the rest are lifecycle containment).
    runtime: usize,
}

fn measure_side_by_side(
    snapshot: &Snapshot,
    identities: &[EntityRef],
    controlled: &HashSet<EntityRef>,
    requests: &[DecisionRequest],
    on_controlled: &[DecisionRequest],
) -> BenchResult<SideBySide> {
    let none = snapshot.clone();
    let mut with_controls = snapshot.clone();
    // Half lifecycle containment, half runtime controls of every level, so that decisions pay
    // for looking controls up on the principal, its owner and the resource. A runtime control
    // on an owner or a credential holder reaches what it owns or holds, which would change the
    // other requests' outcomes; those get lifecycle containment (which here does not cascade:
    // orphans are allowed in the bench's configuration).
    let holders: HashSet<EntityRef> = identities
        .iter()
        .filter_map(|entity| snapshot.inventory().governance(entity))
        .filter_map(|governance| governance.credential.as_ref())
        .map(|credential| arbiter_engine::from_uid(&credential.holder))
        .collect();
    let mut soft: HashSet<&EntityRef> = HashSet::new();
    let mut runtime = 0;
    for (idx, entity) in controlled.iter().enumerate() {
        let cascades = entity.entity_type == "Human" || holders.contains(entity);
        match if cascades { idx % 2 } else { idx % 4 } {
            0 => with_controls
                .inventory_mut()
                .set_lifecycle(entity, Lifecycle::Quarantined)?,
            1 => with_controls
                .inventory_mut()
                .set_lifecycle(entity, Lifecycle::Suspended)?,
            level => {
                let level = match (level, idx % 8 < 4) {
                    (2, true) => ControlLevel::Quarantine,
                    (2, false) => ControlLevel::Downgrade,
                    (_, true) => ControlLevel::RequireApproval,
                    (_, false) => ControlLevel::Observe,
                };
                if matches!(level, ControlLevel::RequireApproval | ControlLevel::Observe) {
                    soft.insert(entity);
                }
                runtime += 1;
                with_controls.inventory_mut().set_control(Control {
                    id: format!("ctl_bench_{idx}"),
                    target: entity.clone(),
                    level,
                    overlay: (level == ControlLevel::Downgrade).then(|| "read-only".to_owned()),
                    safe_actions: Vec::new(),
                    reason: "bench".to_owned(),
                    placed_by: "bench".to_owned(),
                    placed_at: 0,
                    expires_at: None,
                })?;
            }
        }
    }
    let explain = options();
    // Untimed: the controls touch none of these subjects, so the outcomes must agree.
    let mut same_outcomes = true;
    let mut allows = 0usize;
    for request in requests {
        let before = none.decide(request, &explain).outcome;
        same_outcomes &= before == with_controls.decide(request, &explain).outcome;
        allows += usize::from(before == Outcome::Allow);
    }
    // Warm-up, then each request on both snapshots, one after the other. The second decision
    // of a pair finds the request's entities and policies in cache, so which snapshot goes
    // first alternates from request to request.
    for request in requests.iter().take(requests.len() / 10) {
        black_box(none.decide(request, &explain));
        black_box(with_controls.decide(request, &explain));
    }
    let mut times_none = Vec::with_capacity(requests.len());
    let mut times_controlled = Vec::with_capacity(requests.len());
    let time = |snapshot: &Snapshot, request: &DecisionRequest| {
        let started = Instant::now();
        black_box(snapshot.decide(request, &explain));
        started.elapsed()
    };
    for (idx, request) in requests.iter().enumerate() {
        if idx % 2 == 0 {
            times_none.push(time(&none, request));
            times_controlled.push(time(&with_controls, request));
        } else {
            times_controlled.push(time(&with_controls, request));
            times_none.push(time(&none, request));
        }
    }
    let mut times_contained = Vec::with_capacity(on_controlled.len());
    // Observed and approval-gated subjects are not denied by their control; the row times the
    // subjects a control denies.
    for request in on_controlled
        .iter()
        .filter(|request| !soft.contains(&request.subject.entity))
    {
        let started = Instant::now();
        let decision = with_controls.decide(request, &explain);
        times_contained.push(started.elapsed());
        if decision.outcome != Outcome::Deny {
            return Err(format!("contained `{}` was not denied", request.subject.entity).into());
        }
    }
    Ok(SideBySide {
        none: Percentiles::of(times_none),
        with_controls: Percentiles::of(times_controlled),
        contained: Percentiles::of(times_contained),
        same_outcomes,
        allow_share: allows as f64 / requests.len().max(1) as f64,
        runtime,
    })
}

struct HttpResult {
    quarantine: Percentiles,
    reinstate: Percentiles,
    decide: Percentiles,
}

/// Runs `binary serve --demo` on a temporary folder, times lifecycle calls against it, and
/// stops it (and removes the folder) whatever happened.
fn measure_http(binary: &str) -> BenchResult<HttpResult> {
    let dir = std::env::temp_dir().join(format!("arbiter-bench-controls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The server creates the folder, so nothing is left behind when it cannot start.
    let mut server = Command::new(binary)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| {
            format!("cannot run `{binary}` (benches run in their package's folder: give an absolute path): {err}")
        })?;
    let result = drive_http(&mut server);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn drive_http(server: &mut Child) -> BenchResult<HttpResult> {
    let stdout = server
        .stdout
        .take()
        .ok_or("the server's stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let (mut address, mut admin, mut gateway) = (None, None, None);
    while address.is_none() || admin.is_none() || gateway.is_none() {
        let line = lines
            .next()
            .ok_or("the server exited before printing its address and keys")??;
        let key = || line.rsplit(": ").next().map(str::to_owned);
        if let Some(rest) = line.strip_prefix("Arbiter is listening on http://") {
            address = rest.split_whitespace().next().map(str::to_owned);
        } else if line.contains("(role admin)") {
            admin = key();
        } else if line.contains("(role enforcement_point)") {
            gateway = key();
        }
    }
    // Keep reading what the server prints, so that it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let (address, admin, gateway) = (
        address.unwrap_or_default(),
        admin.unwrap_or_default(),
        gateway.unwrap_or_default(),
    );
    let mut connection = Connection::open(&address)?;
    let decide = |connection: &mut Connection, expected: bool| -> BenchResult<Duration> {
        let started = Instant::now();
        let answer = connection.post("/access/v1/evaluation", &gateway, HTTP_REQUEST)?;
        let elapsed = started.elapsed();
        if answer.get("decision") != Some(&serde_json::Value::Bool(expected)) {
            return Err(format!(
                "BUG: the decision after the lifecycle call returned was not {expected}: {answer}"
            )
            .into());
        }
        Ok(elapsed)
    };
    let mut quarantine = Vec::with_capacity(HTTP_ROUNDS);
    let mut reinstate = Vec::with_capacity(HTTP_ROUNDS);
    let mut decisions = Vec::with_capacity(2 * HTTP_ROUNDS);
    decisions.push(decide(&mut connection, true)?);
    for round in 0..HTTP_ROUNDS {
        for (lifecycle, times, expected) in [
            ("quarantined", &mut quarantine, false),
            ("active", &mut reinstate, true),
        ] {
            let body = serde_json::json!({"lifecycle": lifecycle, "reason": format!("bench round {round}")});
            let started = Instant::now();
            connection.post(HTTP_LIFECYCLE, &admin, &body.to_string())?;
            times.push(started.elapsed());
            decisions.push(decide(&mut connection, expected)?);
        }
    }
    Ok(HttpResult {
        quarantine: Percentiles::of(quarantine),
        reinstate: Percentiles::of(reinstate),
        decide: Percentiles::of(decisions),
    })
}

/// One keep-alive HTTP/1.1 connection; enough of a client for JSON answers with a length.
struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    fn open(address: &str) -> BenchResult<Self> {
        let stream = TcpStream::connect(address)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: address.to_owned(),
        })
    }

    /// Posts `body`; returns the JSON answer, or an error unless the status is 200.
    fn post(&mut self, path: &str, key: &str, body: &str) -> BenchResult<serde_json::Value> {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {key}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.host,
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| format!("not an HTTP status line: `{line}`"))?;
        let mut length = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                }
            }
        }
        let mut answer = vec![0; length.ok_or("an answer without `Content-Length`")?];
        self.stream.read_exact(&mut answer)?;
        if status != 200 {
            return Err(format!(
                "{path}: status {status}: {}",
                String::from_utf8_lossy(&answer)
            )
            .into());
        }
        Ok(serde_json::from_slice(&answer)?)
    }
}

fn micros(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros >= 1_000.0 {
        format!("{:.2} ms", micros / 1_000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

fn row(label: &str, percentiles: &Percentiles) {
    println!(
        "| {label} | {} | {} | {} |",
        micros(percentiles.p50),
        micros(percentiles.p99),
        percentiles.samples
    );
}

fn print_control_table(idle: &Percentiles, effect: &Effect) {
    println!(
        "| quarantine one identity (100,000 identities, 1,000 policies) | p50 | p99 | samples |"
    );
    println!("|---|---:|---:|---:|");
    row(
        "the call (`SnapshotCell::update` + `set_lifecycle`), nothing else running",
        idle,
    );
    row(
        "the call, while a decider thread spins on the same cell",
        &effect.call,
    );
    row(
        "call start → first denying decision starts (loads the new snapshot)",
        &effect.to_deny_started,
    );
    row(
        "call start → first denying decision ends (the decider holds the deny)",
        &effect.to_deny_answered,
    );
    let trials = effect.call.samples;
    println!();
    println!(
        "First deny started before the call returned: {} of {trials} trials. \
         Decisions started after the call returned: {} denied, 0 allowed (checked). \
         Allowed decisions in flight at the return (started before it): {}.",
        effect.effect_before_return, effect.denied_after_return, effect.allowed_in_flight
    );
}

fn print_side_by_side_table(side: &SideBySide) {
    println!(
        "| decision latency, explanation on (100,000 identities, 1,000 policies) | p50 | p99 | samples |"
    );
    println!("|---|---:|---:|---:|");
    row("no active controls", &side.none);
    row(
        "10,000 active controls (lifecycle quarantine or suspension, and runtime quarantine, downgrade, require approval, observe; counts below), same requests",
        &side.with_controls,
    );
    row(
        "requests whose subject is contained (denied by the guard)",
        &side.contained,
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    println!();
    println!(
        "With / without controls: p50 {:.3}×, p99 {:.3}×. Same outcomes on both snapshots: {}. Allowed: {:.0}%.",
        ratio(side.with_controls.p50, side.none.p50),
        ratio(side.with_controls.p99, side.none.p99),
        if side.same_outcomes { "yes" } else { "NO" },
        side.allow_share * 100.0
    );
    println!(
        "Of the {CONTROLS} controls, {} are runtime controls (a quarter each quarantine, downgrade, require approval, observe) and {} lifecycle containment.",
        side.runtime,
        CONTROLS - side.runtime
    );
}

fn print_http_table(http: &HttpResult) {
    println!(
        "| over HTTP: `arbiter serve --demo` (SQLite store, durable decision log), one connection | p50 | p99 | samples |"
    );
    println!("|---|---:|---:|---:|");
    row("`POST …/lifecycle` quarantined", &http.quarantine);
    row("`POST …/lifecycle` active (reinstate)", &http.reinstate);
    row(
        "the next `POST /access/v1/evaluation` (denied after a quarantine, allowed after a reinstatement: checked)",
        &http.decide,
    );
}
