//! Where a store's timestamps come from.

use arbiter_core::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// The time source a store stamps changes with, read once per mutation.
///
/// Injected so tests (and a cluster that wants one time authority) decide what "now" is.
pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> Timestamp;
}

/// The machine's wall clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock before 1970 reads as 1970; a clock past the year 292 billion saturates.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                Timestamp::try_from(since.as_secs()).unwrap_or(Timestamp::MAX)
            })
    }
}
