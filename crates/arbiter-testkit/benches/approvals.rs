//! What pending approvals cost an `approval_required` decision (issue 5): the store work the
//! server does for one, with no other request pending and with 10,000 pending, side by side
//! in one run, on a SQLite store file on disk. "grant" looks for a live grant for the request's
//! digest; "open" creates its pending request (a write, fsynced); "found" finds the one already
//! pending (a retry).
//!
//! Run: `cargo bench -p arbiter-testkit --bench approvals`. Other decisions never touch the
//! store, so pending approvals cannot slow them: the decision path reads only the snapshot.

use arbiter_store::{Actor, ApprovalRecord, SqliteStore, Store};
use serde_json::json;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

const SAMPLES: usize = 2_000;
const PENDING: usize = 10_000;

fn main() -> BenchResult<()> {
    println!(
        "store work for one approval_required decision, SQLite on disk, {SAMPLES} samples each\n"
    );
    println!(
        "{:<18} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
        "pending requests",
        "grant p50",
        "grant p99",
        "open p50",
        "open p99",
        "found p50",
        "found p99"
    );
    let mut rows = Vec::new();
    for pending in [0, PENDING] {
        let dir = tempfile::tempdir()?;
        let store = SqliteStore::open(dir.path().join("store.sqlite3"))?;
        let system = Actor::new("bench", "system");
        for n in 0..pending {
            store.request_approval(
                &record(&format!("other-{n}"), &format!("d-other-{n}")),
                &system,
                "bench",
            )?;
        }
        let now = unix_now();
        let mut grant = Vec::with_capacity(SAMPLES);
        let mut open = Vec::with_capacity(SAMPLES);
        let mut found = Vec::with_capacity(SAMPLES);
        for n in 0..SAMPLES {
            // Half the samples ask again for a request already pending (the common retry).
            let digest = format!("d-asked-{}", n / 2);
            let started = Instant::now();
            let used = store.use_grant(&digest, now, &system)?;
            grant.push(started.elapsed());
            assert!(used.is_none(), "nothing was approved");
            let started = Instant::now();
            let (_, created) = store.request_approval(
                &record(&format!("asked-{n}"), &digest),
                &system,
                "bench",
            )?;
            if created {
                open.push(started.elapsed());
            } else {
                found.push(started.elapsed());
            }
        }
        grant.sort_unstable();
        open.sort_unstable();
        found.sort_unstable();
        println!(
            "{:<18} {:>11} {:>11} {:>11} {:>11} {:>11} {:>11}",
            pending,
            micros(percentile(&grant, 0.5)),
            micros(percentile(&grant, 0.99)),
            micros(percentile(&open, 0.5)),
            micros(percentile(&open, 0.99)),
            micros(percentile(&found, 0.5)),
            micros(percentile(&found, 0.99)),
        );
        rows.push((percentile(&grant, 0.5), percentile(&open, 0.5)));
    }
    if let [(grant_none, open_none), (grant_many, open_many)] = rows.as_slice() {
        println!(
            "\nwith {PENDING} pending / with none, p50: grant lookup {:.2}x, open {:.2}x",
            grant_many.as_secs_f64() / grant_none.as_secs_f64().max(1e-9),
            open_many.as_secs_f64() / open_none.as_secs_f64().max(1e-9)
        );
    }
    Ok(())
}

fn record(id: &str, digest: &str) -> ApprovalRecord {
    let now = unix_now();
    ApprovalRecord {
        id: id.into(),
        digest: digest.into(),
        state: "pending".into(),
        principal: r#"Agent::"bench""#.into(),
        body: json!({"request": {"action": {"name": "call_tool"}}}),
        created_at: now,
        expires_at: now + 86_400,
        decided_by: None,
        decided_at: None,
        decision_reason: None,
        uses_left: 0,
        grant_expires_at: None,
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs() as i64)
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn micros(duration: Duration) -> String {
    if duration >= Duration::from_millis(1) {
        format!("{:.2} ms", duration.as_secs_f64() * 1e3)
    } else {
        format!("{} µs", duration.as_micros())
    }
}
