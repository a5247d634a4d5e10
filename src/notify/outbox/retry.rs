//! The retry policy: exponential backoff with jitter, or the receiver's Retry-After when that
//! is longer.

use std::time::Duration;

use super::OutboxConfig;

/// The retry delay after `attempt` failed attempts (1-based): `initial · 2^(attempt-1)`
/// capped at `max`, then "equal jitter": a random point in the upper half, so the result lies
/// in `[d/2, d]`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    let exp = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
    let d = initial.saturating_mul(exp).min(max);
    let half = d / 2;
    half + half.mul_f64(fastrand::f64())
}

/// When to try again after `attempts` failed attempts: the backoff, or the receiver's
/// Retry-After when that is longer (capped at [`crate::notify::http::MAX_RETRY_AFTER`]).
pub fn retry_delay(
    attempts: u32,
    retry_after: Option<Duration>,
    config: &OutboxConfig,
) -> Duration {
    let delay = backoff(attempts, config.initial_backoff, config.max_backoff);
    match retry_after {
        Some(after) => delay.max(after.min(crate::notify::http::MAX_RETRY_AFTER)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_backoff_doubles_within_jitter_bounds_and_caps() {
        let initial = Duration::from_secs(1);
        let max = Duration::from_secs(300);
        for attempt in 1..=40u32 {
            let full = initial
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(max);
            for _ in 0..50 {
                let d = backoff(attempt, initial, max);
                assert!(d >= full / 2 && d <= full, "attempt {attempt}: {d:?}");
            }
        }
        assert!(backoff(1, initial, max) <= Duration::from_secs(1));
        assert!(backoff(100, initial, max) >= Duration::from_secs(150));
    }

    #[test]
    fn notify_retry_after_wins_when_longer_than_the_backoff() {
        let c = OutboxConfig::default();
        let d = retry_delay(1, Some(Duration::from_secs(30)), &c);
        assert_eq!(d, Duration::from_secs(30));
        // A short Retry-After does not shorten the backoff.
        let d = retry_delay(9, Some(Duration::from_secs(1)), &c);
        assert!(d >= Duration::from_secs(128), "{d:?}");
        // An absurd one is capped.
        let d = retry_delay(1, Some(Duration::from_secs(86400)), &c);
        assert_eq!(d, crate::notify::http::MAX_RETRY_AFTER);
    }
}
