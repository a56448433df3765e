//! When a delivery is tried again: after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h
//! (the contract's schedule, Stripe-like in spirit); after the last failure it is `failed`. An
//! endpoint whose deliveries have all failed for 5 days is disabled.

use time::Duration;

/// The waits after the 1st, 2nd, … failed attempt.
pub const RETRY_DELAYS: [Duration; 9] = [
    Duration::seconds(5),
    Duration::minutes(5),
    Duration::minutes(30),
    Duration::hours(2),
    Duration::hours(5),
    Duration::hours(10),
    Duration::hours(14),
    Duration::hours(20),
    Duration::hours(24),
];

/// Attempts a delivery gets in all: the first and one per retry.
pub const MAX_ATTEMPTS: usize = RETRY_DELAYS.len() + 1;

/// How long an endpoint may fail every delivery before it is disabled.
pub const DISABLE_AFTER: Duration = Duration::days(5);

/// The wait before the next attempt after `failed_attempts` attempts have failed, or `None`
/// when the delivery has had all of them.
pub fn retry_after(failed_attempts: usize) -> Option<Duration> {
    failed_attempts
        .checked_sub(1)
        .and_then(|index| RETRY_DELAYS.get(index))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_the_contracts() {
        assert_eq!(
            retry_after(0),
            None,
            "nothing failed yet: no retry to schedule"
        );
        assert_eq!(retry_after(1), Some(Duration::seconds(5)));
        assert_eq!(retry_after(2), Some(Duration::minutes(5)));
        assert_eq!(retry_after(9), Some(Duration::hours(24)));
        assert_eq!(retry_after(10), None, "the tenth failure is final");
        assert_eq!(MAX_ATTEMPTS, 10);
        let total: Duration = RETRY_DELAYS.iter().copied().sum();
        assert_eq!(
            total,
            Duration::hours(75) + Duration::minutes(35) + Duration::seconds(5)
        );
    }
}
