//! Retry policies: how often and after how long a failed task runs again.

use std::ops::RangeInclusive;
use std::time::Duration;

/// How a task is retried. Set per task with
/// [`TaskOptions`](crate::TaskOptions) or for all tasks in
/// [`WorkerConfig`](crate::WorkerConfig).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; then the message is dead-lettered.
    /// Defaults to 3, as Celery's `max_retries`.
    pub max_retries: u32,
    /// The delay before each retry. Defaults to exponential backoff with
    /// full jitter between 1 s and 10 minutes.
    pub backoff: Backoff,
    /// Whether unexpected errors, panics and time limits are retried like
    /// expected ones. Defaults to true.
    pub retry_unexpected: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff: Backoff::default(),
            retry_unexpected: true,
        }
    }
}

impl RetryPolicy {
    /// Never retry: every failure is dead-lettered at once.
    pub fn never() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// The delay before a retry.
#[derive(Debug, Clone, PartialEq)]
pub enum Backoff {
    /// Exponential backoff with full jitter: before retry `n` (0-based),
    /// a uniformly random delay between `min` and `min(max, min * 2^n)`.
    Exponential {
        /// The shortest delay.
        min: Duration,
        /// The longest delay.
        max: Duration,
    },
    /// The same delay before every retry.
    Fixed(Duration),
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            min: Duration::from_secs(1),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay before retry number `retries` (0 for the first retry):
    /// a random one within [`Backoff::bounds`].
    pub fn delay(&self, retries: u32) -> Duration {
        let bounds = self.bounds(retries);
        let (low, high) = (*bounds.start(), *bounds.end());
        let spread = high.saturating_sub(low).as_millis();
        let jitter = fastrand::u64(0..=u64::try_from(spread).unwrap_or(u64::MAX));
        low + Duration::from_millis(jitter)
    }

    /// The shortest and longest delay before retry number `retries`: for
    /// exponential backoff, `min` to `min(max, min * 2^retries)`, so the
    /// range doubles with every retry until it reaches `max`.
    pub fn bounds(&self, retries: u32) -> RangeInclusive<Duration> {
        match *self {
            Backoff::Fixed(delay) => delay..=delay,
            Backoff::Exponential { min, max } => {
                let factor = 2u32.saturating_pow(retries.min(31));
                min..=min.saturating_mul(factor).min(max).max(min)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_delays_stay_between_min_and_a_doubling_cap() {
        let backoff = Backoff::Exponential {
            min: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        for _ in 0..200 {
            let first = backoff.delay(0);
            assert_eq!(first, Duration::from_secs(1));
            let third = backoff.delay(2);
            assert!((Duration::from_secs(1)..=Duration::from_secs(4)).contains(&third));
            let late = backoff.delay(30);
            assert!((Duration::from_secs(1)..=Duration::from_secs(10)).contains(&late));
        }
    }

    #[test]
    fn exponential_bounds_double_per_retry_up_to_the_maximum() {
        let backoff = Backoff::Exponential {
            min: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let highest: Vec<u64> = (0..6).map(|n| backoff.bounds(n).end().as_secs()).collect();
        assert_eq!(highest, [1, 2, 4, 8, 10, 10]);
        for retries in 0..40 {
            let bounds = backoff.bounds(retries);
            assert_eq!(*bounds.start(), Duration::from_secs(1));
            assert!(bounds.end() <= backoff.bounds(retries + 1).end());
            for _ in 0..50 {
                assert!(bounds.contains(&backoff.delay(retries)), "retry {retries}");
            }
        }
    }

    #[test]
    fn a_fixed_backoff_is_fixed() {
        assert_eq!(
            Backoff::Fixed(Duration::from_secs(5)).delay(7),
            Duration::from_secs(5)
        );
    }
}
