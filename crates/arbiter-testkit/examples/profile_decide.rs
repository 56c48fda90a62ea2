//! Profiling harness (not a benchmark): decides the decision bench's requests in a loop so a
//! profiler sees mostly `Snapshot::decide`:
//! `cargo build --profile bench -p arbiter-testkit --example profile_decide`, then
//! `PROFILE_POLICIES=10000 perf record -g target/release/examples/profile_decide`.
//! Prints the mean wall and CPU time per decision. `PROFILE_HOT=1` decides each request ten
//! times in a row, so caches are warm: the difference from a normal run is time spent waiting
//! for memory. (`perf record --call-graph dwarf` attributes Cedar's deep recursion better than
//! `-g` on this build.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "a profiling harness"
)]
use arbiter_engine::DecideOptions;
use arbiter_testkit::{generate, WorkloadConfig};
use std::time::Instant;

// The same allocator as the `arbiter` binary and the decision bench.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let policies: usize = std::env::var("PROFILE_POLICIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let explain = std::env::var("PROFILE_EXPLAIN").is_ok();
    let workload = generate(&WorkloadConfig {
        seed: 0xBE7C_2002,
        identities: 100_000,
        groups: 2_000,
        resources: 10_000,
        policies,
    });
    let snapshot = arbiter_testkit::arbiter_snapshot(&workload).unwrap();
    let requests: Vec<_> = workload
        .requests(0x5EED_2002, 20_000)
        .iter()
        .map(|r| r.to_decision_request())
        .collect();
    let options = DecideOptions {
        now: 1_767_225_600,
        decision_id: "p".into(),
        explain,
    };
    let cpu_started = cpu_seconds();
    let started = Instant::now();
    let mut allowed = 0usize;
    let rounds = 10;
    // PROFILE_HOT=1 decides each request `rounds` times in a row (caches warm), to tell
    // memory stalls from work.
    let hot = std::env::var("PROFILE_HOT").is_ok();
    let (outer, inner) = if hot { (1, rounds) } else { (rounds, 1) };
    for _ in 0..outer {
        for request in &requests {
            for _ in 0..inner {
                if snapshot.decide(request, &options).outcome == arbiter_core::Outcome::Allow {
                    allowed += 1;
                }
            }
        }
    }
    let n = rounds * requests.len();
    let cpu = cpu_seconds() - cpu_started;
    eprintln!(
        "{n} decisions, {allowed} allowed, mean {:.1?} wall, {:.1} µs CPU",
        started.elapsed() / n as u32,
        cpu * 1e6 / n as f64
    );
}

/// User + system CPU seconds of this process (from /proc; 10 ms resolution), steadier than
/// wall time on a shared machine.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}
