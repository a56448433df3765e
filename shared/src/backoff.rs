//! Waiting before deciding again after a lost race (a `TransactionConflict`, a refused claim):
//! "full jitter" back-off, so that racing requests spread out instead of colliding again in
//! lock-step. One helper, used by every retry loop of ours (the SDK has its own for transient
//! errors, `store::client::TIME_BUDGET`).

use std::time::Duration;

/// The first wait's upper bound; it doubles per attempt up to [`CAP`].
const BASE: Duration = Duration::from_millis(5);
/// The longest single wait.
const CAP: Duration = Duration::from_millis(100);

/// The upper bound of the wait before retry number `attempt` (0-based).
pub fn bound(attempt: u32) -> Duration {
    BASE.saturating_mul(1u32 << attempt.min(16)).min(CAP)
}

/// Sleeps a random time in `[0, bound(attempt)]`.
pub async fn wait(attempt: u32) {
    let bound = bound(attempt).as_micros() as u64;
    // Without randomness (it never fails on Lambda) the full bound still spreads attempts.
    let micros = getrandom::u64().map_or(bound, |r| r % (bound + 1));
    tokio::time::sleep(Duration::from_micros(micros)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_then_stay_capped() {
        assert_eq!(bound(0), Duration::from_millis(5));
        assert_eq!(bound(1), Duration::from_millis(10));
        assert_eq!(bound(4), Duration::from_millis(80));
        assert_eq!(bound(5), CAP);
        assert_eq!(bound(40), CAP);
    }
}
