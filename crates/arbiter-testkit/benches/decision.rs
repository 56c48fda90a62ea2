//! Decision-core benchmarks: raw Cedar against Arbiter, side by side, on one generated workload
//! of 100,000 identities at 10, 1,000 and 10,000 policies.
//!
//! Run with `cargo bench -p arbiter-testkit --bench decision`. Prints markdown tables; the
//! figures in `docs/benchmarks.md` come from this binary.
//!
//! What is measured, per policy count, on the same requests for both sides:
//! - raw Cedar: `cedar_policy::Authorizer::is_authorized` with the full `Entities` (100,000
//!   identities) and a pre-built `cedar_policy::Request`;
//! - raw Cedar on the candidates only: the same call, but with a `PolicySet` of just the
//!   policies Arbiter's index selects for that request (built outside the timing). This is what
//!   evaluating the policies whose scope may match costs Cedar's own evaluator with every entity
//!   at hand: a floor for any design that leaves the evaluation to Cedar, as Arbiter does;
//! - Arbiter: `Snapshot::decide` with `explain: false`, and with `explain: true` (the difference
//!   is the cost of a stored condition-level explanation).
//!
//! Then, at 10,000 policies: the time from quarantining one identity to the next decision on a
//! freshly loaded snapshot seeing `Deny`, beside raw Cedar's `Entities::upsert_entities` of one
//! entity; and the resident memory of a process that loaded the workload from files (as a server
//! would), measured in a child process of this binary so that nothing else it does is counted.
//!
//! Each latency is one call timed with `Instant`; the tables give the 50th and 99th
//! percentiles over every sample.

use arbiter_core::{DecisionRequest, GuardViolation, Lifecycle, Outcome};
use arbiter_engine::{
    DecideOptions, InventoryBuilder, PolicySet, PolicySource, Snapshot, SnapshotCell,
};
use arbiter_testkit::{broad_policy_count, generate, Workload, WorkloadConfig};
use std::collections::HashSet;
use std::error::Error;
use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error>>;

// The allocator the `arbiter` binary uses, for both sides: raw Cedar and Arbiter run in this one
// process, so the comparison stays like for like.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Workload seed; the inventory it generates does not depend on the policy count.
const SEED: u64 = 0xBE7C_2002;
/// Seed of the benchmark's requests.
const REQUEST_SEED: u64 = 0x5EED_2002;
const IDENTITIES: usize = 100_000;
const GROUPS: usize = 2_000;
const RESOURCES: usize = 10_000;
/// Policy counts, with how many requests each side is timed on: raw Cedar evaluates every
/// policy on every request, so it gets fewer samples where it is slow.
const RUNS: [(usize, usize, usize); 3] = [
    // (policies, raw Cedar samples, Arbiter samples)
    (10, 20_000, 20_000),
    (1_000, 2_000, 20_000),
    (10_000, 300, 20_000),
];
const QUARANTINE_REPETITIONS: usize = 1_000;
const UPSERT_REPETITIONS: usize = 20;
/// A fixed "now" (2026-01-01T00:00:00Z): the engine reads no clock.
const NOW: i64 = 1_767_225_600;
/// Set in the child process that measures resident memory.
const RSS_MODE: &str = "ARBITER_BENCH_RSS";

fn config(policies: usize) -> WorkloadConfig {
    WorkloadConfig {
        seed: SEED,
        identities: IDENTITIES,
        groups: GROUPS,
        resources: RESOURCES,
        policies,
    }
}

fn main() -> BenchResult<()> {
    if let Ok(mode) = std::env::var(RSS_MODE) {
        return measure_rss_in_child(&mode);
    }
    let started = Instant::now();
    println!(
        "workload: seed {SEED:#x}, {IDENTITIES} identities, {GROUPS} groups, {RESOURCES} resources; \
         requests: seed {REQUEST_SEED:#x}"
    );
    let mut rows = Vec::new();
    let mut quarantine = None;
    for (n_policies, cedar_samples, arbiter_samples) in RUNS {
        let phase = Instant::now();
        let workload = generate(&config(n_policies));
        let snapshot = arbiter_testkit::arbiter_snapshot(&workload)?;
        let reference = Reference::new(&workload)?;
        println!(
            "{n_policies} policies ({} broad): generated and loaded in {:.1?}",
            broad_policy_count(n_policies),
            phase.elapsed()
        );
        rows.push(measure_decisions(
            &workload,
            &snapshot,
            &reference,
            n_policies,
            cedar_samples,
            arbiter_samples,
        )?);
        if n_policies == 10_000 {
            quarantine = Some(measure_quarantine(&workload, snapshot, reference)?);
        }
    }
    write_memory_inputs()?;
    let memory = [
        measure_rss("baseline")?,
        measure_rss("arbiter")?,
        measure_rss("cedar")?,
    ];

    println!();
    print_decision_table(&rows);
    println!();
    if let Some(quarantine) = &quarantine {
        print_quarantine_table(quarantine);
    }
    println!();
    print_memory_table(&memory);
    println!();
    println!("total bench time: {:.1?}", started.elapsed());
    Ok(())
}

/// Cedar's side: the facade, the whole policy file, every entity.
struct Reference {
    policy_set: cedar_policy::PolicySet,
    entities: cedar_policy::Entities,
}

impl Reference {
    fn new(workload: &Workload) -> BenchResult<Self> {
        Ok(Self {
            policy_set: cedar_policy::PolicySet::from_str(&workload.policies_text)?,
            entities: cedar_policy::Entities::from_json_value(workload.entities.clone(), None)?,
        })
    }
}

fn options(explain: bool) -> DecideOptions {
    DecideOptions {
        now: NOW,
        decision_id: "bench".to_owned(),
        explain,
    }
}

/// Latency percentiles of one series of timed calls.
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

struct DecisionRow {
    n_policies: usize,
    cedar: Percentiles,
    /// Raw Cedar including building the `Request` from the same JSON Arbiter receives.
    cedar_from_json: Percentiles,
    /// Raw Cedar given only the policies Arbiter's index selects for each request.
    cedar_candidates: Percentiles,
    arbiter: Percentiles,
    explained: Percentiles,
    allow_share: f64,
    mean_candidates: f64,
    /// Denied by the entity-slice bound rather than by policy (see the testkit's known divergence).
    slice_bound_denies: usize,
}

/// Times each call of `decide_one` over `inputs` (after a warm-up pass over a tenth of them).
fn time_each<T>(inputs: &[T], mut decide_one: impl FnMut(&T)) -> Percentiles {
    for input in inputs.iter().take(inputs.len() / 10) {
        decide_one(input);
    }
    let durations = inputs
        .iter()
        .map(|input| {
            let started = Instant::now();
            decide_one(input);
            started.elapsed()
        })
        .collect();
    Percentiles::of(durations)
}

fn measure_decisions(
    workload: &Workload,
    snapshot: &Snapshot,
    reference: &Reference,
    n_policies: usize,
    cedar_samples: usize,
    arbiter_samples: usize,
) -> BenchResult<DecisionRow> {
    let generated = workload.requests(REQUEST_SEED, cedar_samples.max(arbiter_samples));
    let cedar_requests = generated
        .iter()
        .take(cedar_samples)
        .map(|request| request.to_cedar_request())
        .collect::<Result<Vec<_>, _>>()?;
    let decision_requests: Vec<DecisionRequest> = generated
        .iter()
        .take(arbiter_samples)
        .map(|request| request.to_decision_request())
        .collect();

    let authorizer = cedar_policy::Authorizer::new();
    let cedar = time_each(&cedar_requests, |request| {
        black_box(authorizer.is_authorized(request, &reference.policy_set, &reference.entities));
    });
    let cedar_from_json = time_each(generated.get(..cedar_samples).unwrap_or(&[]), |request| {
        if let Ok(request) = request.to_cedar_request() {
            black_box(authorizer.is_authorized(
                &request,
                &reference.policy_set,
                &reference.entities,
            ));
        }
    });
    // Untimed: each request's candidates as a policy set of their own, for Cedar.
    let mut candidate_sets = Vec::with_capacity(decision_requests.len());
    for request in generated.iter().take(arbiter_samples) {
        let candidates = snapshot.evaluate_cedar(
            &request.principal,
            &request.action,
            &request.resource,
            &request.context,
        )?;
        let policies = candidates
            .candidates
            .iter()
            .filter_map(|id| {
                reference
                    .policy_set
                    .policy(&cedar_policy::PolicyId::new(id))
                    .cloned()
            })
            .collect::<Vec<_>>();
        if policies.len() != candidates.candidates.len() {
            return Err(
                format!("a candidate of {} is not in Cedar's set", request.principal).into(),
            );
        }
        candidate_sets.push((
            request.to_cedar_request()?,
            cedar_policy::PolicySet::from_policies(policies)?,
        ));
    }
    let cedar_candidates = time_each(&candidate_sets, |(request, policy_set)| {
        black_box(authorizer.is_authorized(request, policy_set, &reference.entities));
    });
    let plain = options(false);
    let arbiter = time_each(&decision_requests, |request| {
        black_box(snapshot.decide(request, &plain));
    });
    let explain = options(true);
    let explained = time_each(&decision_requests, |request| {
        black_box(snapshot.decide(request, &explain));
    });

    // Untimed: what the requests decided, and how many policies the index selected.
    let mut allows = 0usize;
    let mut candidates = 0usize;
    let mut slice_bound_denies = 0usize;
    for request in &decision_requests {
        let decision = snapshot.decide(request, &plain);
        if decision.outcome == Outcome::Allow {
            allows += 1;
        }
        if decision
            .hops
            .iter()
            .any(|hop| matches!(hop.guard, Some(GuardViolation::EntitySliceTooLarge { .. })))
        {
            slice_bound_denies += 1;
        }
        candidates += decision
            .hops
            .iter()
            .map(|hop| hop.candidates)
            .sum::<usize>();
    }
    let n_requests = decision_requests.len().max(1) as f64;
    let row = DecisionRow {
        n_policies,
        cedar,
        cedar_from_json,
        cedar_candidates,
        arbiter,
        explained,
        allow_share: allows as f64 / n_requests,
        mean_candidates: candidates as f64 / n_requests,
        slice_bound_denies,
    };
    println!(
        "{n_policies} policies: raw Cedar p50 {:.1?}, Arbiter p50 {:.1?}, with explanation p50 {:.1?}",
        row.cedar.p50, row.arbiter.p50, row.explained.p50
    );
    Ok(row)
}

struct QuarantineResult {
    /// From the change to the denying decision.
    arbiter: Percentiles,
    /// The `SnapshotCell::update` alone.
    arbiter_update: Percentiles,
    /// The `load` and `decide` alone.
    arbiter_decide: Percentiles,
    cedar_upsert: Percentiles,
}

/// Quarantines identities that are allowed right now, one at a time, and times the change
/// plus the next decision, which must deny.
fn measure_quarantine(
    workload: &Workload,
    snapshot: Snapshot,
    reference: Reference,
) -> BenchResult<QuarantineResult> {
    let plain = options(false);
    let mut seen = HashSet::new();
    let allowed: Vec<DecisionRequest> = workload
        .requests(REQUEST_SEED ^ 0xA11, 40_000)
        .into_iter()
        .map(|request| request.to_decision_request())
        .filter(|request| seen.insert(request.subject.entity.clone()))
        .filter(|request| snapshot.decide(request, &plain).outcome == Outcome::Allow)
        .take(QUARANTINE_REPETITIONS)
        .collect();
    if allowed.len() < QUARANTINE_REPETITIONS / 2 {
        return Err(format!("only {} allowed requests to quarantine", allowed.len()).into());
    }
    let cell = SnapshotCell::new(snapshot);
    let mut durations = Vec::with_capacity(allowed.len());
    let mut updates = Vec::with_capacity(allowed.len());
    let mut decides = Vec::with_capacity(allowed.len());
    for request in &allowed {
        let started = Instant::now();
        cell.update(|next| {
            next.inventory_mut()
                .set_lifecycle(&request.subject.entity, Lifecycle::Quarantined)
        })?;
        let updated = Instant::now();
        let decision = cell.load().decide(request, &plain);
        let decided = Instant::now();
        let elapsed = decided - started;
        updates.push(updated - started);
        decides.push(decided - updated);
        if decision.outcome != Outcome::Deny {
            return Err(format!(
                "`{}` still allowed after quarantine",
                request.subject.entity
            )
            .into());
        }
        durations.push(elapsed);
    }

    // Raw Cedar: replace one identity's entity (lifecycle changed) in the full store.
    let mut entities = reference.entities;
    let mut upserts = Vec::with_capacity(UPSERT_REPETITIONS);
    for request in allowed.iter().take(UPSERT_REPETITIONS) {
        let mut json = workload
            .entity_json(&request.subject.entity)
            .cloned()
            .ok_or("identity missing from the entities JSON")?;
        if let Some(attrs) = json
            .get_mut("attrs")
            .and_then(|attrs| attrs.as_object_mut())
        {
            attrs.insert("lifecycle".to_owned(), "quarantined".into());
        }
        let entity = cedar_policy::Entity::from_json_value(json, None)?;
        let started = Instant::now();
        entities = entities.upsert_entities([entity], None)?;
        upserts.push(started.elapsed());
    }
    black_box(&entities);
    Ok(QuarantineResult {
        arbiter: Percentiles::of(durations),
        arbiter_update: Percentiles::of(updates),
        arbiter_decide: Percentiles::of(decides),
        cedar_upsert: Percentiles::of(upserts),
    })
}

struct MemoryRow {
    what: &'static str,
    rss_kib: u64,
    peak_kib: u64,
    twice_kib: u64,
}

/// Where the parent leaves the workload for the memory-measuring children.
fn memory_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("arbiter-bench-{SEED:x}"))
}

/// Writes the 10,000-policy workload the way a server would find it on disk: the policy file,
/// the Arbiter inventory document, the action entities, and the same facts as Cedar entities.
fn write_memory_inputs() -> BenchResult<()> {
    let workload = generate(&config(10_000));
    let dir = memory_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("policies.cedar"), &workload.policies_text)?;
    std::fs::write(
        dir.join("inventory.json"),
        serde_json::to_vec(&workload.inventory_document())?,
    )?;
    std::fs::write(
        dir.join("actions.json"),
        serde_json::to_vec(&workload.action_entities())?,
    )?;
    std::fs::write(
        dir.join("entities.json"),
        serde_json::to_vec(&workload.entities)?,
    )?;
    Ok(())
}

/// Runs this binary again in memory-measuring mode and reads what it reports.
fn measure_rss(what: &'static str) -> BenchResult<MemoryRow> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .env(RSS_MODE, what)
        .output()?;
    let stdout = String::from_utf8(output.stdout)?;
    if !output.status.success() {
        return Err(format!(
            "memory child `{what}` failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let field = |name: &str| -> BenchResult<u64> {
        stdout
            .split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .ok_or_else(|| format!("memory child `{what}` printed no `{name}`: {stdout}"))?
            .parse::<u64>()
            .map_err(Into::into)
    };
    Ok(MemoryRow {
        what,
        rss_kib: field("rss_kib=")?,
        peak_kib: field("peak_kib=")?,
        twice_kib: field("twice_kib=")?,
    })
}

/// In the child: load 100,000 identities and 10,000 policies from the files the parent wrote,
/// drop the inputs, and report `VmRSS` and `VmHWM` from `/proc/self/status`; then load a second
/// copy beside the first and report `VmRSS` again. The second copy's increment approximates
/// the live size of what was loaded, without what the allocator kept from loading's transients.
fn measure_rss_in_child(mode: &str) -> BenchResult<()> {
    let first = load_for_memory(mode)?;
    let (rss_kib, peak_kib) = (status_kib("VmRSS:")?, status_kib("VmHWM:")?);
    let second = load_for_memory(mode)?;
    let twice_kib = status_kib("VmRSS:")?;
    println!("rss_kib={rss_kib} peak_kib={peak_kib} twice_kib={twice_kib}");
    black_box((&first, &second));
    Ok(())
}

fn load_for_memory(mode: &str) -> BenchResult<Box<dyn std::any::Any>> {
    let dir = memory_dir();
    let read = |name: &str| std::fs::read_to_string(dir.join(name));
    Ok(match mode {
        "arbiter" => {
            let policies = PolicySet::compile(
                vec![PolicySource {
                    name: "policies.cedar".to_owned(),
                    text: read("policies.cedar")?,
                }],
                None,
                1,
            )?;
            let document: arbiter_core::InventoryDocument =
                serde_json::from_str(&read("inventory.json")?)?;
            let actions: serde_json::Value = serde_json::from_str(&read("actions.json")?)?;
            let mut builder = InventoryBuilder::new();
            builder
                .add_document(&document)?
                .add_cedar_entities(actions)?;
            drop(document);
            let inventory = builder.build(None)?;
            Box::new(Snapshot::new(
                policies,
                inventory,
                None,
                arbiter_testkit::bench_engine_config(),
            ))
        }
        "cedar" => {
            let policy_set = cedar_policy::PolicySet::from_str(&read("policies.cedar")?)?;
            let entities = cedar_policy::Entities::from_json_str(&read("entities.json")?, None)?;
            Box::new((policy_set, entities))
        }
        // The process itself, with nothing loaded.
        "baseline" => Box::new(()),
        other => return Err(format!("unknown memory mode `{other}`").into()),
    })
}

/// A `kB` field of `/proc/self/status`, such as `VmRSS:`.
fn status_kib(key: &str) -> BenchResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| format!("no `{key}` in /proc/self/status").into())
}

fn micros(duration: Duration) -> String {
    let micros = duration.as_secs_f64() * 1e6;
    if micros >= 1_000.0 {
        format!("{:.2} ms", micros / 1_000.0)
    } else {
        format!("{micros:.1} µs")
    }
}

fn print_decision_table(rows: &[DecisionRow]) {
    println!(
        "| policies | raw Cedar p50 | raw Cedar p99 | raw Cedar from JSON p50 | raw Cedar, candidates only, p50 | \
         Arbiter p50 | Arbiter p99 | Arbiter p50 / raw Cedar p50 | with explanation p50 | with explanation p99 | \
         explanation cost (p50) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let ratio = row.arbiter.p50.as_secs_f64() / row.cedar.p50.as_secs_f64().max(1e-12);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {ratio:.2}× | {} | {} | {} |",
            row.n_policies,
            micros(row.cedar.p50),
            micros(row.cedar.p99),
            micros(row.cedar_from_json.p50),
            micros(row.cedar_candidates.p50),
            micros(row.arbiter.p50),
            micros(row.arbiter.p99),
            micros(row.explained.p50),
            micros(row.explained.p99),
            micros(row.explained.p50.saturating_sub(row.arbiter.p50)),
        );
    }
    println!();
    println!(
        "| policies | candidate policies per decision (mean) | allowed | denied by the entity-slice bound | samples (raw Cedar / Arbiter) |"
    );
    println!("|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {:.1} | {:.0}% | {} | {} / {} |",
            row.n_policies,
            row.mean_candidates,
            row.allow_share * 100.0,
            row.slice_bound_denies,
            row.cedar.samples,
            row.arbiter.samples,
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        let growth = last.arbiter.p50.as_secs_f64() / first.arbiter.p50.as_secs_f64().max(1e-12);
        let cedar_growth = last.cedar.p50.as_secs_f64() / first.cedar.p50.as_secs_f64().max(1e-12);
        println!();
        println!(
            "Arbiter p50 growth from {} to {} policies: {growth:.2}× (raw Cedar: {cedar_growth:.0}×)",
            first.n_policies, last.n_policies
        );
        // Arbiter cannot evaluate the candidates faster than Cedar's evaluator does with every
        // entity at hand, so this is the least growth it can show while Cedar evaluates.
        let floor =
            last.cedar_candidates.p50.as_secs_f64() / first.arbiter.p50.as_secs_f64().max(1e-12);
        println!(
            "Cedar on the {}-policy candidates alone, over Arbiter at {} policies: {floor:.2}×",
            last.n_policies, first.n_policies
        );
    }
}

fn print_quarantine_table(quarantine: &QuarantineResult) {
    println!("| at 100,000 identities, 10,000 policies | p50 | p99 | repetitions |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Arbiter: quarantine one identity → next `decide` denies | {} | {} | {} |",
        micros(quarantine.arbiter.p50),
        micros(quarantine.arbiter.p99),
        quarantine.arbiter.samples
    );
    println!(
        "| … of which `SnapshotCell::update` (`set_lifecycle`) | {} | {} | {} |",
        micros(quarantine.arbiter_update.p50),
        micros(quarantine.arbiter_update.p99),
        quarantine.arbiter_update.samples
    );
    println!(
        "| … of which `load` + `decide` (denied by the lifecycle guard) | {} | {} | {} |",
        micros(quarantine.arbiter_decide.p50),
        micros(quarantine.arbiter_decide.p99),
        quarantine.arbiter_decide.samples
    );
    println!(
        "| raw Cedar: `Entities::upsert_entities` of one entity | {} | {} | {} |",
        micros(quarantine.cedar_upsert.p50),
        micros(quarantine.cedar_upsert.p99),
        quarantine.cedar_upsert.samples
    );
}

fn print_memory_table(rows: &[MemoryRow]) {
    println!(
        "| loaded: 100,000 identities + 10,000 policies | VmRSS | VmHWM (peak) | VmRSS increment of a second copy |"
    );
    println!("|---|---:|---:|---:|");
    for row in rows {
        let label = match row.what {
            "baseline" => "nothing loaded (the bench process itself)",
            "arbiter" => "Arbiter `Snapshot` (inventory document + compiled, indexed policies)",
            _ => "raw Cedar `Entities` + `PolicySet`",
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        println!(
            "| {label} | {:.0} MiB | {:.0} MiB | {:.0} MiB |",
            mib(row.rss_kib),
            mib(row.peak_kib),
            mib(row.twice_kib.saturating_sub(row.rss_kib))
        );
    }
}
