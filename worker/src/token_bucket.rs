//! The bucket of a rate limit with scope `worker`: kept in the worker's
//! memory, as Celery's `rate_limit` is.
//!
//! A token bucket written as the generic cell rate algorithm: instead of
//! a count refilled by a timer, one instant, the time the bucket will have
//! refilled the token taken last. No timer runs, nothing drifts, and
//! [`TokenBucket::take`] is pure: the caller gives the time.

use std::time::{Duration, Instant};

use celeriac_shared::Rate;

/// At most `capacity` tokens, one more every `interval`; full at first.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    /// The time between two tokens.
    interval: Duration,
    /// How far the bucket may be drawn ahead of the steady pace: the
    /// tokens beyond the first that may be taken at once, as time,
    /// `(capacity - 1) × interval`.
    tolerance: Duration,
    /// When the bucket would be back to holding the tokens taken so far
    /// minus one, had every token been taken at the steady pace (the
    /// algorithm's "theoretical arrival time"); `None` before the first
    /// token is taken.
    refilled_at: Option<Instant>,
}

impl TokenBucket {
    /// A full bucket of `capacity` tokens (at least 1) refilled at `rate`.
    pub(crate) fn new(rate: Rate, capacity: u32) -> Self {
        let interval = rate.interval();
        Self {
            interval,
            tolerance: interval.saturating_mul(capacity.max(1) - 1),
            refilled_at: None,
        }
    }

    /// Takes a token at `now`, or says how long until one is expected.
    pub(crate) fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refilled = self.refilled_at.map_or(now, |at| at.max(now));
        let earliest = refilled.checked_sub(self.tolerance).unwrap_or(now);
        if earliest > now {
            return Err(earliest - now);
        }
        self.refilled_at = Some(refilled + self.interval);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(rate: &str, capacity: u32) -> TokenBucket {
        TokenBucket::new(rate.parse().unwrap(), capacity)
    }

    #[test]
    fn a_full_bucket_gives_its_burst_at_once_then_says_when_the_next_token_comes() {
        let mut bucket = bucket("10/s", 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.take(start), Ok(()));
        }
        assert_eq!(bucket.take(start), Err(Duration::from_millis(100)));
        let later = start + Duration::from_millis(40);
        assert_eq!(bucket.take(later), Err(Duration::from_millis(60)));
        assert_eq!(bucket.take(start + Duration::from_millis(100)), Ok(()));
    }

    #[test]
    fn the_steady_pace_is_the_rate_and_a_quiet_spell_refills_only_to_the_burst() {
        let mut bucket = bucket("2/s", 2);
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let taken = (0..=4000)
            .step_by(10)
            .filter(|ms| bucket.take(at(*ms)).is_ok())
            .count();
        // 2 at once, then one every 500 ms over 4 s.
        assert_eq!(taken, 2 + 8);
        let quiet = 60_000;
        let after_quiet = (quiet..quiet + 10)
            .filter(|ms| bucket.take(at(*ms)).is_ok())
            .count();
        assert_eq!(after_quiet, 2, "a long pause refills the burst, no more");
    }

    #[test]
    fn a_burst_of_one_allows_one_per_interval() {
        let mut bucket = bucket("1/m", 1);
        let start = Instant::now();
        assert_eq!(bucket.take(start), Ok(()));
        let second = start + Duration::from_secs(1);
        assert_eq!(bucket.take(second), Err(Duration::from_secs(59)));
        assert_eq!(bucket.take(start + Duration::from_secs(60)), Ok(()));
    }
}
