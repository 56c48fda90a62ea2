//! Differential test: Arbiter's engine (`Snapshot::evaluate_cedar`) against Cedar's reference
//! authorizer (`cedar_policy::Authorizer::is_authorized`), on generated NHI workloads.
//!
//! For every request both sides must agree on the decision, on the set of determining policies
//! (Cedar's `reason`) and on the set of policies that raised an error. The cases, all seeded:
//!
//! | test                         | workload seed | policies | identities | requests (seed)   |
//! |------------------------------|---------------|----------|------------|-------------------|
//! | `small_workload`             | `0x5EED_0010` | 10       | 200        | 20,000 (`0x10`)   |
//! | `mid_workload`               | `0x5EED_0100` | 100      | 2,000      | 20,000 (`0x100`)  |
//! | `mid_workload_from_document` | `0x5EED_0100` | 100      | 2,000      | 5,000 (`0x101`)   |
//! | `large_workload`             | `0x5EED_1000` | 1,000    | 10,000     | 100,000 (`0x1000`)|
//! | `random_small_workloads`     | proptest      | 1..=40   | 4..=80     | 64 cases × 200    |
//!
//! One more test, `slice_bound_is_large_stated_and_fails_closed`, pins the one deliberate limit:
//! a request that reaches more entities than `EngineConfig::max_slice_entities` is denied with
//! that reason instead of being evaluated (found by these tests at the old bound of 256).
//!
//! 0 mismatches is the only passing result. On a mismatch the test prints the request, both
//! answers and Cedar's error messages, then fails. Each test prints its seeds, its counts and
//! the share of allows, denies, forbids that win over permits, and erroring policies.
//! The large case also checks that the policy index keeps the mean number of candidate
//! policies per request below 10% of the policy count.
//!
//! Runtime: about 2 minutes for this binary on an idle 2-core machine, almost all of it the
//! large case, where Cedar's reference authorizer evaluates all 1,000 policies for each of the
//! 100,000 requests (about 1.1 ms each, dependencies being optimised in the test profile).
//! Requests are split across the available cores.

use arbiter_engine::{
    CedarEvaluation, EngineConfig, InventoryBuilder, PolicySet, PolicySource, Snapshot,
};
use arbiter_testkit::{generate, GeneratedRequest, Workload, WorkloadConfig};
use cedar_policy::{Authorizer, Decision, Effect, Entities, PolicyId, Response};
use proptest::prelude::*;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::time::Instant;

const SMALL: WorkloadConfig = WorkloadConfig {
    seed: 0x5EED_0010,
    identities: 200,
    groups: 20,
    resources: 60,
    policies: 10,
};

const MID: WorkloadConfig = WorkloadConfig {
    seed: 0x5EED_0100,
    identities: 2_000,
    groups: 100,
    resources: 400,
    policies: 100,
};

const LARGE: WorkloadConfig = WorkloadConfig {
    seed: 0x5EED_1000,
    identities: 10_000,
    groups: 300,
    resources: 2_000,
    policies: 1_000,
};

/// Cedar's side: the facade, the whole policy file, every entity.
struct Reference {
    authorizer: Authorizer,
    policy_set: cedar_policy::PolicySet,
    entities: Entities,
    effects: HashMap<String, Effect>,
}

impl Reference {
    fn new(workload: &Workload) -> Self {
        let policy_set = cedar_policy::PolicySet::from_str(&workload.policies_text).unwrap();
        let entities = Entities::from_json_value(workload.entities.clone(), None).unwrap();
        let effects = policy_set
            .policies()
            .map(|policy| (policy.id().to_string(), policy.effect()))
            .collect();
        Self {
            authorizer: Authorizer::new(),
            policy_set,
            entities,
            effects,
        }
    }

    fn answer(&self, request: &GeneratedRequest) -> Response {
        let cedar_request = request.to_cedar_request().unwrap();
        self.authorizer
            .is_authorized(&cedar_request, &self.policy_set, &self.entities)
    }
}

fn engine_from_entities(workload: &Workload) -> Snapshot {
    let policies = compile(workload);
    let mut builder = InventoryBuilder::new();
    builder
        .add_cedar_entities(workload.entities.clone())
        .unwrap();
    let inventory = builder.build(None).unwrap();
    Snapshot::new(policies, inventory, None, EngineConfig::default())
}

fn engine_from_document(workload: &Workload) -> Snapshot {
    let policies = compile(workload);
    let mut builder = InventoryBuilder::new();
    builder
        .add_document(&workload.inventory_document())
        .unwrap()
        .add_cedar_entities(workload.action_entities())
        .unwrap();
    let inventory = builder.build(None).unwrap();
    Snapshot::new(policies, inventory, None, EngineConfig::default())
}

fn compile(workload: &Workload) -> PolicySet {
    let source = PolicySource {
        name: "generated.cedar".to_owned(),
        text: workload.policies_text.clone(),
    };
    let policies = PolicySet::compile(vec![source], None, 1).unwrap();
    assert_eq!(policies.len(), workload.policy_count());
    policies
}

/// What a run saw. Shares are of requests; error counts are of (request, policy) pairs.
#[derive(Debug, Default)]
struct Tally {
    requests: usize,
    allows: usize,
    denies_no_permit: usize,
    denies_by_forbid: usize,
    forbid_wins_over_permit: usize,
    requests_with_errors: usize,
    erroring_permits: usize,
    erroring_forbids: usize,
    unknown_principals: usize,
    candidates: usize,
    max_candidates: usize,
    mismatches: usize,
    reports: Vec<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.allows += other.allows;
        self.denies_no_permit += other.denies_no_permit;
        self.denies_by_forbid += other.denies_by_forbid;
        self.forbid_wins_over_permit += other.forbid_wins_over_permit;
        self.requests_with_errors += other.requests_with_errors;
        self.erroring_permits += other.erroring_permits;
        self.erroring_forbids += other.erroring_forbids;
        self.unknown_principals += other.unknown_principals;
        self.candidates += other.candidates;
        self.max_candidates = self.max_candidates.max(other.max_candidates);
        self.mismatches += other.mismatches;
        self.reports.extend(other.reports);
    }

    fn share(&self, count: usize) -> String {
        let share = 100.0 * count as f64 / self.requests.max(1) as f64;
        format!("{count} ({share:.1}%)")
    }

    fn mean_candidates(&self) -> f64 {
        self.candidates as f64 / self.requests.max(1) as f64
    }

    fn print(&self, label: &str) {
        println!("[{label}] requests: {}", self.requests);
        println!(
            "[{label}]   allow:                        {}",
            self.share(self.allows)
        );
        println!(
            "[{label}]   deny, no permit applies:      {}",
            self.share(self.denies_no_permit)
        );
        println!(
            "[{label}]   deny by forbid:               {}",
            self.share(self.denies_by_forbid)
        );
        println!(
            "[{label}]     of which a permit also held: {}",
            self.share(self.forbid_wins_over_permit)
        );
        println!(
            "[{label}]   with erroring policies:       {}",
            self.share(self.requests_with_errors)
        );
        println!(
            "[{label}]   erroring policy evaluations:  {} permits, {} forbids",
            self.erroring_permits, self.erroring_forbids
        );
        println!(
            "[{label}]   unknown principal:            {}",
            self.share(self.unknown_principals)
        );
        println!(
            "[{label}]   candidates per request:       mean {:.1}, max {}",
            self.mean_candidates(),
            self.max_candidates
        );
        println!("[{label}] mismatches: {}", self.mismatches);
    }
}

fn ids<'a>(ids: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    ids.into_iter().cloned().collect()
}

fn cedar_errors(response: &Response) -> BTreeSet<String> {
    response
        .diagnostics()
        .errors()
        .map(|err| match err {
            cedar_policy::AuthorizationError::PolicyEvaluationError(err) => {
                err.policy_id().to_string()
            }
        })
        .collect()
}

/// Compares one request; returns a report when the two sides disagree.
fn compare(
    snapshot: &Snapshot,
    reference: &Reference,
    request: &GeneratedRequest,
    tally: &mut Tally,
) -> Option<String> {
    let response = reference.answer(request);
    let cedar_allowed = response.decision() == Decision::Allow;
    let cedar_reason: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(PolicyId::to_string)
        .collect();
    let cedar_errors = cedar_errors(&response);
    let engine = snapshot.evaluate_cedar(
        &request.principal,
        &request.action,
        &request.resource,
        &request.context,
    );

    tally.requests += 1;
    if cedar_allowed {
        tally.allows += 1;
    }
    if !cedar_errors.is_empty() {
        tally.requests_with_errors += 1;
    }
    for id in &cedar_errors {
        match reference.effects.get(id) {
            Some(Effect::Permit) => tally.erroring_permits += 1,
            Some(Effect::Forbid) => tally.erroring_forbids += 1,
            None => {}
        }
    }
    if !snapshot.inventory().contains(&request.principal) {
        tally.unknown_principals += 1;
    }

    let engine: CedarEvaluation = match engine {
        Ok(engine) => engine,
        Err(err) => return Some(report(request, &format!("engine error: {err}"), &response)),
    };
    tally.candidates += engine.candidates.len();
    tally.max_candidates = tally.max_candidates.max(engine.candidates.len());
    if !cedar_allowed {
        if engine.satisfied_forbids.is_empty() {
            tally.denies_no_permit += 1;
        } else {
            tally.denies_by_forbid += 1;
            if !engine.satisfied_permits.is_empty() {
                tally.forbid_wins_over_permit += 1;
            }
        }
    }
    let agrees = engine.is_allowed() == cedar_allowed
        && ids(engine.determining()) == cedar_reason
        && ids(&engine.erroring) == cedar_errors;
    (!agrees).then(|| report(request, &format!("{engine:#?}"), &response))
}

fn report(request: &GeneratedRequest, engine: &str, response: &Response) -> String {
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(ToString::to_string)
        .collect();
    let reason: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    format!(
        "MISMATCH\n  principal: {}\n  action:    {}\n  resource:  {}\n  context:   {}\n  \
         engine: {engine}\n  cedar:  decision {:?}, reason {reason:?}\n  cedar errors:\n    {}",
        request.principal,
        request.action,
        request.resource,
        serde_json::Value::Object(request.context.clone()),
        response.decision(),
        errors.join("\n    "),
    )
}

/// Runs `requests` on every available core and returns the merged tally.
fn run(snapshot: &Snapshot, reference: &Reference, requests: &[GeneratedRequest]) -> Tally {
    let n_threads = std::thread::available_parallelism().map_or(1, usize::from);
    let chunk = requests.len().div_ceil(n_threads).max(1);
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = requests
            .chunks(chunk)
            .map(|requests| {
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    for request in requests {
                        if let Some(report) = compare(snapshot, reference, request, &mut tally) {
                            tally.mismatches += 1;
                            if tally.reports.len() < 5 {
                                tally.reports.push(report);
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let mut total = Tally::default();
    for tally in tallies {
        total.merge(tally);
    }
    total
}

fn check(
    label: &str,
    workload: &Workload,
    snapshot: &Snapshot,
    request_seed: u64,
    n_requests: usize,
) -> Tally {
    let started = Instant::now();
    let reference = Reference::new(workload);
    let requests = workload.requests(request_seed, n_requests);
    let tally = run(snapshot, &reference, &requests);
    println!(
        "[{label}] workload seed {:#x}, request seed {request_seed:#x}: {} policies, {} identities, \
         {} requests in {:.1?}",
        workload.config.seed,
        workload.policy_count(),
        workload.config.identities,
        n_requests,
        started.elapsed()
    );
    tally.print(label);
    for report in &tally.reports {
        println!("{report}");
    }
    assert_eq!(
        tally.mismatches, 0,
        "[{label}] the engine disagrees with Cedar (see above)"
    );
    tally
}

/// The generated requests exercise what they are meant to: all four outcomes and errors in
/// both permits and forbids.
fn assert_meaningful(label: &str, tally: &Tally) {
    let share = |count: usize| count as f64 / tally.requests as f64;
    assert!(share(tally.allows) >= 0.10, "[{label}] too few allows");
    assert!(
        share(tally.denies_no_permit) >= 0.10,
        "[{label}] too few denies"
    );
    assert!(
        tally.forbid_wins_over_permit > 0,
        "[{label}] no forbid ever overrode a permit"
    );
    assert!(
        tally.erroring_permits > 0 && tally.erroring_forbids > 0,
        "[{label}] errors must hit permits and forbids"
    );
    assert!(
        tally.unknown_principals > 0,
        "[{label}] no unknown principal"
    );
}

#[test]
fn small_workload() {
    let workload = generate(&SMALL);
    let tally = check(
        "small",
        &workload,
        &engine_from_entities(&workload),
        0x10,
        20_000,
    );
    assert!(tally.allows > 0 && tally.denies_no_permit > 0);
}

#[test]
fn mid_workload() {
    let workload = generate(&MID);
    let tally = check(
        "mid",
        &workload,
        &engine_from_entities(&workload),
        0x100,
        20_000,
    );
    assert_meaningful("mid", &tally);
}

/// The same facts loaded as an Arbiter inventory document must mean the same to Cedar.
#[test]
fn mid_workload_from_document() {
    let workload = generate(&MID);
    check(
        "mid, document",
        &workload,
        &engine_from_document(&workload),
        0x101,
        5_000,
    );
}

#[test]
fn large_workload() {
    let workload = generate(&LARGE);
    let tally = check(
        "large",
        &workload,
        &engine_from_entities(&workload),
        0x1000,
        100_000,
    );
    assert_meaningful("large", &tally);
    assert!(tally.requests >= 100_000 && workload.policy_count() >= 1_000);
    let limit = workload.policy_count() as f64 * 0.10;
    assert!(
        tally.mean_candidates() < limit,
        "the index should leave far fewer candidates than policies: mean {:.1}, limit {limit}",
        tally.mean_candidates()
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn random_small_workloads(
        seed in any::<u64>(),
        identities in 4usize..=80,
        groups in 1usize..=12,
        resources in 3usize..=30,
        policies in 1usize..=40,
    ) {
        let config = WorkloadConfig { seed, identities, groups, resources, policies };
        let workload = generate(&config);
        let snapshot = engine_from_entities(&workload);
        let reference = Reference::new(&workload);
        let mut tally = Tally::default();
        for request in workload.requests(seed.wrapping_add(1), 200) {
            if let Some(report) = compare(&snapshot, &reference, &request, &mut tally) {
                prop_assert!(false, "{config:?}\n{report}");
            }
        }
    }
}

/// The per-request entity slice takes the entities at the end of the access paths the candidate
/// policies read, or, where a path cannot be followed, every entity as far from the request's
/// entities as they read. Two policies that reach 300 humans from one dataset: one reads the
/// dataset's tags through a computed key (so every tag), the other reads through a record
/// literal (so the distance bound: one step out, the 300 readers). Both used to exceed the old
/// bound of 256 and were denied where Cedar allows; the default bound is now 4,096, so the
/// engine agrees with Cedar, and a deployment that sets a lower bound gets a stated,
/// fail-closed deny.
#[test]
fn slice_bound_is_large_stated_and_fails_closed() {
    for policies in [
        "permit(principal, action == Action::\"read\", resource) \
         when { true || resource.getTag(context.which) has department };",
        "permit(principal, action == Action::\"read\", resource) \
         when { true || {p: resource}.p.primary has department };",
    ] {
        slice_bound_fails_closed(policies);
    }
}

fn slice_bound_fails_closed(policies: &str) {
    use arbiter_core::EntityRef;
    use serde_json::json;

    let human = |idx: usize| json!({"__entity": {"type": "Human", "id": format!("h{idx}")}});
    let readers: Vec<_> = (0..300).map(human).collect();
    let tags: serde_json::Map<String, serde_json::Value> = (0..300)
        .map(|idx| (format!("t{idx}"), human(idx)))
        .collect();
    let mut entities = vec![
        json!({"uid": {"type": "Agent", "id": "a"}, "attrs": {}, "parents": []}),
        json!({"uid": {"type": "Dataset", "id": "d"}, "attrs": {
            "readers": readers,
            "primary": {"__entity": {"type": "Human", "id": "h0"}},
        }, "tags": tags, "parents": []}),
    ];
    for idx in 0..300 {
        entities.push(
            json!({"uid": {"type": "Human", "id": format!("h{idx}")}, "attrs": {}, "parents": []}),
        );
    }
    let entities = serde_json::Value::Array(entities);
    let policy_set = PolicySet::compile(
        vec![PolicySource {
            name: "p.cedar".to_owned(),
            text: policies.to_owned(),
        }],
        None,
        1,
    )
    .unwrap();
    let mut builder = InventoryBuilder::new();
    builder.add_cedar_entities(entities.clone()).unwrap();
    let snapshot = Snapshot::new(
        policy_set,
        builder.build(None).unwrap(),
        None,
        EngineConfig::default(),
    );
    let request = GeneratedRequest {
        principal: EntityRef::new("Agent", "a"),
        action: EntityRef::new("Action", "read"),
        resource: EntityRef::new("Dataset", "d"),
        context: serde_json::Map::new(),
    };
    let cedar = Authorizer::new().is_authorized(
        &request.to_cedar_request().unwrap(),
        &cedar_policy::PolicySet::from_str(policies).unwrap(),
        &Entities::from_json_value(entities, None).unwrap(),
    );
    assert_eq!(cedar.decision(), Decision::Allow);
    let engine = snapshot.evaluate_cedar(
        &request.principal,
        &request.action,
        &request.resource,
        &request.context,
    );
    assert_eq!(
        engine.map(|evaluation| evaluation.is_allowed()),
        Ok(true),
        "{policies}: within the default bound the engine agrees with Cedar"
    );
    let tight = Snapshot::new(
        PolicySet::compile(snapshot.policies().sources().to_vec(), None, 1).unwrap(),
        snapshot.inventory().clone(),
        None,
        EngineConfig {
            max_slice_entities: 256,
            ..EngineConfig::default()
        },
    );
    let refused = tight.evaluate_cedar(
        &request.principal,
        &request.action,
        &request.resource,
        &request.context,
    );
    assert!(
        refused
            .as_ref()
            .is_err_and(|err| err.contains("EntitySliceTooLarge")),
        "{policies}: {refused:?}"
    );
}
