//! One module per subcommand.

pub(crate) mod admin;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod changes;
pub(crate) mod check;
pub(crate) mod controls;
pub(crate) mod debt;
pub(crate) mod decisions;
pub(crate) mod demo;
pub(crate) mod explain;
pub(crate) mod gateway;
pub(crate) mod identities;
pub(crate) mod keys;
pub(crate) mod policies;
pub(crate) mod replay;
pub(crate) mod serve;

use arbiter_engine::DecideOptions;

/// Options for a decision made now, with a fresh time-ordered id. The CLI is where the clock is
/// read: the engine takes time as input.
pub(crate) fn options_now(now: Option<i64>, explain: bool) -> DecideOptions {
    DecideOptions {
        now: now.unwrap_or_else(unix_now),
        decision_id: uuid::Uuid::now_v7().to_string(),
        explain,
    }
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
