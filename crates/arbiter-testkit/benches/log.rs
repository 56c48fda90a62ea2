//! Decision-log benchmarks (issue 4): durable decisions per second with group commit and their
//! latency, side by side in one run with the same decisions made without a log (and with the
//! buffered log); bytes per entry; and the time to verify a log of one million entries.
//!
//! Run: `cargo bench -p arbiter-testkit --bench log` (figures go to docs/benchmarks.md).
//! `ARBITER_BENCH_SECONDS` (default 5) sets each mode's duration, `ARBITER_BENCH_TASKS`
//! (default `64,128,256`) the numbers of concurrent deciders, each run in turn for every mode, `ARBITER_BENCH_VERIFY` (default 1000000) the size of
//! the log to verify, `ARBITER_BENCH_MODES` (e.g. `durable`, default all) which modes run.
//!
//! Each mode runs concurrent tasks on a 2-thread tokio runtime, as many enforcement points
//! would: each decides a generated request (with its explanation, as the server does) and, with
//! a log, waits until its entry is committed (durable) or queued (buffered). Latency is measured
//! per decision from the start of deciding to the end of waiting.

use arbiter_core::DecisionRequest;
use arbiter_engine::{DecideOptions, Snapshot};
use arbiter_log::checkpoint::{public_key_path, read_public_key};
use arbiter_log::{
    verify, DecisionEntry, DecisionLog, Durability, Entry, LogConfig, LogDb, VerifyOptions,
};
use arbiter_testkit::{generate, WorkloadConfig};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const NOW: i64 = 1_767_225_600;

fn main() -> BenchResult<()> {
    let seconds: u64 = env_or("ARBITER_BENCH_SECONDS", 5);
    let verify_size: u64 = env_or("ARBITER_BENCH_VERIFY", 1_000_000);
    let concurrency: Vec<usize> = std::env::var("ARBITER_BENCH_TASKS")
        .unwrap_or_else(|_| "64,128,256".to_owned())
        .split(',')
        .filter_map(|tasks| tasks.trim().parse().ok())
        .collect();
    let workload = generate(&WorkloadConfig {
        seed: 7,
        identities: 10_000,
        groups: 200,
        resources: 2_000,
        policies: 100,
    });
    let snapshot = Arc::new(arbiter_testkit::arbiter_snapshot(&workload)?);
    let requests: Arc<Vec<DecisionRequest>> = Arc::new(
        workload
            .requests(11, 20_000)
            .iter()
            .map(|request| request.to_decision_request())
            .collect(),
    );
    println!(
        "workload: 10k identities, 100 policies; concurrent deciders on 2 runtime threads, {seconds} s per mode\n"
    );
    println!(
        "{:<10} {:>7} {:>12} {:>10} {:>10} {:>10} {:>14} {:>16}",
        "mode", "tasks", "decisions/s", "p50", "p99", "max", "bytes/entry", "entries/commit"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let only = std::env::var("ARBITER_BENCH_MODES").unwrap_or_default();
    let modes = [None, Some(Durability::Durable), Some(Durability::Buffered)];
    for (tasks, mode) in concurrency
        .iter()
        .flat_map(|&tasks| modes.iter().map(move |&mode| (tasks, mode)))
    {
        let name = match mode {
            None => "no log",
            Some(Durability::Durable) => "durable",
            Some(Durability::Buffered) => "buffered",
        };
        if !only.is_empty() && !only.split(',').any(|wanted| wanted == name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("decisions.sqlite3");
        let log = match mode {
            Some(durability) => {
                let mut config = LogConfig::new(path.clone(), dir.path().join("key"));
                config.durability = durability;
                Some(DecisionLog::open(config)?)
            }
            None => None,
        };
        let handle = log.as_ref().map(|(log, _)| log.clone());
        let (count, mut latencies) = runtime.block_on(run_mode(
            Arc::clone(&snapshot),
            Arc::clone(&requests),
            handle,
            tasks,
            Duration::from_secs(seconds),
        ));
        let (mut entries, mut commits) = (0, 0);
        if let Some((log, writer)) = log {
            entries = log.health().committed();
            commits = log.health().commits();
            drop(log);
            let _ = writer.join();
        }
        latencies.sort_unstable();
        let bytes = file_bytes(&path)
            .checked_div(entries)
            .map_or_else(|| "-".to_owned(), |bytes| bytes.to_string());
        let per_fsync = entries
            .checked_div(commits)
            .map_or_else(|| "-".to_owned(), |group| group.to_string());
        println!(
            "{:<10} {:>7} {:>12.0} {:>10} {:>10} {:>10} {:>14} {:>16}",
            name,
            tasks,
            count as f64 / seconds as f64,
            micros(percentile(&latencies, 0.50)),
            micros(percentile(&latencies, 0.99)),
            micros(latencies.last().copied().unwrap_or_default()),
            bytes,
            per_fsync
        );
    }
    println!();
    verify_million(&runtime, &snapshot, &requests, verify_size)?;
    Ok(())
}

async fn run_mode(
    snapshot: Arc<Snapshot>,
    requests: Arc<Vec<DecisionRequest>>,
    log: Option<DecisionLog>,
    tasks: usize,
    duration: Duration,
) -> (usize, Vec<Duration>) {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let (snapshot, requests, log) =
                (Arc::clone(&snapshot), Arc::clone(&requests), log.clone());
            let (next, stop) = (Arc::clone(&next), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(request) = requests.get(n % requests.len()) else {
                        return mine;
                    };
                    let started = Instant::now();
                    let decision = snapshot.decide(
                        request,
                        &DecideOptions {
                            now: NOW,
                            decision_id: format!("bench-{n}"),
                            explain: true,
                        },
                    );
                    if let Some(log) = &log {
                        let entry = Entry::Decision(Box::new(DecisionEntry {
                            endpoint: "bench".to_owned(),
                            caller: None,
                            request: request.to_value(),
                            owner: None,
                            latency_us: started.elapsed().as_micros() as u64,
                            decision,
                            redacted: Vec::new(),
                            approval: None,
                        }));
                        if log.append(&[entry]).await.is_err() {
                            return mine;
                        }
                    } else {
                        std::hint::black_box(decision);
                    }
                    mine.push(started.elapsed());
                    // Every mode yields once per decision, as a request handler waiting on its
                    // socket would; otherwise a task whose awaits never block (no log,
                    // buffered) could hold a worker and starve the others.
                    tokio::task::yield_now().await;
                }
                mine
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for task in tasks {
        if let Ok(mine) = task.await {
            all.extend(mine);
        }
    }
    (all.len(), all)
}

/// Writes a log of `size` real decision entries (in large appends), then verifies it.
fn verify_million(
    runtime: &tokio::runtime::Runtime,
    snapshot: &Snapshot,
    requests: &[DecisionRequest],
    size: u64,
) -> BenchResult<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("decisions.sqlite3");
    let key = dir.path().join("key");
    let (log, writer) = DecisionLog::open(LogConfig::new(path.clone(), key.clone()))?;
    let chunk: Vec<Entry> = requests
        .iter()
        .take(10_000)
        .enumerate()
        .map(|(n, request)| {
            let decision = snapshot.decide(
                request,
                &DecideOptions {
                    now: NOW,
                    decision_id: format!("verify-{n}"),
                    explain: true,
                },
            );
            Entry::Decision(Box::new(DecisionEntry {
                endpoint: "bench".to_owned(),
                caller: None,
                request: request.to_value(),
                owner: None,
                latency_us: 0,
                decision,
                redacted: Vec::new(),
                approval: None,
            }))
        })
        .collect();
    let serialise = Instant::now();
    let bytes: usize = chunk
        .iter()
        .map(|entry| serde_json::to_vec(entry).map_or(0, |body| body.len()))
        .sum();
    println!(
        "serialising an entry: {:.1} µs ({} bytes of JSON on average)",
        serialise.elapsed().as_secs_f64() * 1e6 / chunk.len().max(1) as f64,
        bytes / chunk.len().max(1)
    );
    let started = Instant::now();
    runtime.block_on(async {
        let mut written = 0;
        while written < size {
            let take = (size - written).min(chunk.len() as u64) as usize;
            log.append(chunk.get(..take).unwrap_or_default()).await?;
            written += take as u64;
        }
        Ok::<_, arbiter_log::LogError>(())
    })?;
    drop(log);
    let _ = writer.join();
    println!(
        "wrote {size} entries in {:.1} s ({} bytes each on disk)",
        started.elapsed().as_secs_f64(),
        file_bytes(&path) / size.max(1)
    );
    let db = LogDb::open_read_only(&path)?;
    let started = Instant::now();
    let report = verify(
        &db,
        &VerifyOptions {
            public_key: read_public_key(&public_key_path(&key))?,
            external: Vec::new(),
            from: 1,
            to: None,
            progress: None,
        },
    )?;
    println!(
        "verified {} entries ({} checkpoints) in {:.2} s: {}",
        report.entries,
        report.checkpoints_checked,
        started.elapsed().as_secs_f64(),
        if report.ok() { "ok" } else { "FAILED" }
    );
    Ok(())
}

fn file_bytes(path: &std::path::Path) -> u64 {
    let wal = path.with_extension("sqlite3-wal");
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn micros(duration: Duration) -> String {
    if duration >= Duration::from_millis(1) {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", duration.as_micros())
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}
