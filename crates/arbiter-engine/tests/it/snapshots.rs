//! Changes publish new snapshots; the next decision sees them, decisions in flight do not.

use crate::decide::{decide, request, world};
use arbiter_core::{EntityRef, Lifecycle, Outcome, Signal};
use arbiter_engine::SnapshotCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

#[test]
fn quarantine_takes_effect_on_the_next_decision_and_old_snapshots_stay_intact() {
    let cell = SnapshotCell::new(world());
    let read = request("Agent:calm-bot", "read", "Dataset:wiki", "");
    let before = cell.load();
    assert_eq!(decide(&before, &read).outcome, Outcome::Allow);
    cell.update(|snapshot| {
        snapshot
            .inventory_mut()
            .set_lifecycle(&EntityRef::new("Agent", "calm-bot"), Lifecycle::Quarantined)
    })
    .unwrap();
    assert_eq!(decide(&cell.load(), &read).outcome, Outcome::Deny);
    // The snapshot a decision already holds is immutable.
    assert_eq!(decide(&before, &read).outcome, Outcome::Allow);
    assert!(cell.load().inventory().version() > before.inventory().version());
    cell.update(|snapshot| {
        snapshot
            .inventory_mut()
            .set_lifecycle(&EntityRef::new("Agent", "calm-bot"), Lifecycle::Active)
    })
    .unwrap();
    assert_eq!(decide(&cell.load(), &read).outcome, Outcome::Allow);
}

#[test]
fn a_failed_change_publishes_nothing() {
    let cell = SnapshotCell::new(world());
    let version = cell.load().inventory().version();
    let result = cell.update(|snapshot| {
        snapshot
            .inventory_mut()
            .set_lifecycle(&EntityRef::new("Agent", "nobody"), Lifecycle::Revoked)
    });
    assert!(result.unwrap_err().to_string().contains("unknown identity"));
    assert_eq!(cell.load().inventory().version(), version);
}

#[test]
fn a_signal_update_changes_the_next_decision() {
    let cell = SnapshotCell::new(world());
    let read = request("Agent:calm-bot", "read", "Dataset:wiki", "");
    assert_eq!(decide(&cell.load(), &read).outcome, Outcome::Allow);
    cell.update(|snapshot| {
        snapshot.inventory_mut().set_signal(Signal {
            subject: EntityRef::new("Agent", "calm-bot"),
            name: "risk_score".into(),
            value: serde_json::json!(90),
            source: "siem".into(),
            observed_at: 1099,
            ttl_seconds: 600,
        })
    })
    .unwrap();
    assert_eq!(decide(&cell.load(), &read).outcome, Outcome::Deny);
}

#[test]
fn concurrent_readers_never_see_an_allow_after_quarantine_returns() {
    let cell = Arc::new(SnapshotCell::new(world()));
    let read = request("Agent:calm-bot", "read", "Dataset:wiki", "");
    let quarantined = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(AtomicUsize::new(0));
    let decisions = Arc::new(AtomicUsize::new(0));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (cell, read, quarantined, violations, decisions) = (
                cell.clone(),
                read.clone(),
                quarantined.clone(),
                violations.clone(),
                decisions.clone(),
            );
            std::thread::spawn(move || {
                for _ in 0..300 {
                    // Read the flag before loading: if quarantine had returned, this load must see it.
                    let was_quarantined = quarantined.load(Ordering::SeqCst);
                    let outcome = decide(&cell.load(), &read).outcome;
                    decisions.fetch_add(1, Ordering::Relaxed);
                    if was_quarantined && outcome == Outcome::Allow {
                        violations.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    while decisions.load(Ordering::Relaxed) < 200 {
        std::thread::yield_now();
    }
    cell.update(|snapshot| {
        snapshot
            .inventory_mut()
            .set_lifecycle(&EntityRef::new("Agent", "calm-bot"), Lifecycle::Quarantined)
    })
    .unwrap();
    quarantined.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(violations.load(Ordering::SeqCst), 0);
    assert_eq!(decisions.load(Ordering::SeqCst), 1200);
}
