//! Owner and team trends from the score history: earlier reports' points, a kept report in
//! which an owner had no debt counted as 0, the change since the last kept report, and the
//! same whether or not the current report is recorded.

use crate::planted::{recorded, Recorded, DAY, NOW};
use arbiter_debt::{compute, GroupPoint, History, RunOptions, Thresholds};

#[test]
fn owner_and_team_trends_give_previous_points_and_the_delta() {
    let Recorded { server, log, .. } = recorded();
    let thresholds = Thresholds::default();
    let options = RunOptions {
        suggestions: 0,
        check: false,
    };
    let at = |time| compute(&server.store, &log, &thresholds, time, options, None).unwrap();
    let mut history = History::in_memory().unwrap();

    let first = at(NOW - 14 * DAY);
    history.record(&first).unwrap();
    // A week later bob's identities had no debt (as if fixed), and payments had 5 points less.
    let mut second = at(NOW - 7 * DAY);
    second
        .scores
        .owners
        .retain(|owner| owner.key != "Human::\"bob\"");
    for team in &mut second.scores.teams {
        if team.key == "payments" {
            team.total -= 5;
        }
    }
    history.record(&second).unwrap();

    let mut now = at(NOW);
    history.add_group_trends(&mut now, 30).unwrap();
    let owner = |key: &str| {
        now.scores
            .owners
            .iter()
            .find(|owner| owner.key == key)
            .unwrap_or_else(|| panic!("no owner {key}"))
            .clone()
    };
    let total_at = |report: &arbiter_debt::Report, key: &str| {
        report
            .scores
            .owners
            .iter()
            .find(|owner| owner.key == key)
            .map_or(0, |owner| owner.total)
    };
    let bob = owner("Human::\"bob\"");
    assert_eq!(
        bob.trend,
        vec![
            GroupPoint {
                at: NOW - 14 * DAY,
                total: total_at(&first, "Human::\"bob\""),
            },
            GroupPoint {
                at: NOW - 7 * DAY,
                total: 0,
            },
            GroupPoint {
                at: NOW,
                total: bob.total,
            },
        ]
    );
    assert!(bob.total > 0);
    assert_eq!(
        bob.previous,
        Some(0),
        "absent from a kept report: no debt then"
    );
    assert_eq!(bob.delta, Some(bob.total as i64));

    let alice = owner("Human::\"alice\"");
    let alice_before = total_at(&second, "Human::\"alice\"");
    assert_eq!(alice.previous, Some(alice_before));
    assert_eq!(alice.delta, Some(alice.total as i64 - alice_before as i64));
    assert_eq!(alice.trend.len(), 3);

    let payments = now
        .scores
        .teams
        .iter()
        .find(|team| team.key == "payments")
        .unwrap();
    let payments_before = second
        .scores
        .teams
        .iter()
        .find(|team| team.key == "payments")
        .unwrap()
        .total;
    assert_eq!(payments.previous, Some(payments_before));
    assert_eq!(
        payments.delta,
        Some(payments.total as i64 - payments_before as i64)
    );

    // Recording the current report first changes nothing: only earlier reports count.
    let mut recorded_now = at(NOW);
    history.record(&recorded_now).unwrap();
    history.add_group_trends(&mut recorded_now, 30).unwrap();
    assert_eq!(recorded_now.scores.owners, now.scores.owners);
    // With only the last kept report asked for, the trend is that one and now.
    let mut short = at(NOW);
    history.add_group_trends(&mut short, 1).unwrap();
    let bob_short = short
        .scores
        .owners
        .iter()
        .find(|owner| owner.key == "Human::\"bob\"")
        .unwrap();
    assert_eq!(bob_short.trend.len(), 2);
    assert_eq!(bob_short.previous, Some(0));

    // No earlier report: nothing to compare with.
    let mut fresh = at(NOW);
    History::in_memory()
        .unwrap()
        .add_group_trends(&mut fresh, 30)
        .unwrap();
    assert!(fresh
        .scores
        .owners
        .iter()
        .all(|owner| owner.previous.is_none() && owner.delta.is_none() && owner.trend.len() == 1));
}
