//! A scheduled or stream-driven invocation's time: how much of it a run may use before Lambda
//! ends it (the sweeps stop there and leave the rest to the next run).

use std::time::Duration;

/// What is left of an invocation whose deadline is `deadline_ms` (epoch milliseconds, Lambda's
/// context), less a margin for the change in flight when it ends and the report: 3 s, or a
/// quarter of what is left if that is less.
///
/// A deadline that is not in the future is not one Lambda would give; `cargo lambda watch`
/// (1.9.2) passes its timeout instead (`600000`, i.e. 1970). Then the function's own timeout
/// (`timeout`, from `FUNCTION_TIMEOUT_SECONDS`) stands in for what is left. `now_ms`: the
/// epoch milliseconds now (a parameter, so that the arithmetic is tested without a clock).
pub fn remaining_budget(deadline_ms: u64, now_ms: u64, timeout: Duration) -> Duration {
    const MARGIN: Duration = Duration::from_secs(3);
    let left = match deadline_ms.checked_sub(now_ms) {
        Some(left) if left > 0 => Duration::from_millis(left),
        _ => timeout,
    };
    left.saturating_sub(MARGIN.min(left / 4))
}

/// [`remaining_budget`] now, by the system clock.
pub fn budget_now(deadline_ms: u64, timeout: Duration) -> Duration {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    remaining_budget(deadline_ms, now_ms, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_budget_keeps_a_margin_before_the_deadline() {
        let now = 1_796_124_365_186;
        let timeout = Duration::from_secs(10);
        assert_eq!(
            remaining_budget(now + 60_000, now, timeout),
            Duration::from_secs(57)
        );
        assert_eq!(
            remaining_budget(now + 3_000, now, timeout),
            Duration::from_millis(2_250)
        );
        assert_eq!(
            remaining_budget(now + 1, now, timeout),
            Duration::from_micros(750)
        );
        // Not a deadline Lambda gives (cargo lambda watch's 600000): the timeout stands in.
        for odd in [0, 600_000, now] {
            assert_eq!(
                remaining_budget(odd, now, timeout),
                Duration::from_millis(7_500),
                "{odd}"
            );
        }
    }
}
