//! When the refiller of a cluster-wide rate limit publishes its tokens.
//!
//! Tokens are due at fixed instants, one [`Pacer::interval`] apart from
//! when leadership was won, so timer lateness never accumulates into
//! drift. A refiller woken a little late (up to [`CATCH_UP`]) sends the
//! tokens that fell due meanwhile; one held up longer (a paused process,
//! a starved CPU, a slow broker) drops them and starts the pace again from
//! now: a pause never turns into a burst beyond the regular pace.

use std::time::{Duration, Instant};

/// How late a refiller may wake and still send every token that fell due
/// meanwhile, on the original schedule. Later than that, the missed
/// tokens are dropped.
pub(crate) const CATCH_UP: Duration = Duration::from_millis(20);

/// The schedule of one refiller's tokens.
#[derive(Debug, Clone)]
pub(crate) struct Pacer {
    /// The time between two tokens.
    interval: Duration,
    /// When the next token is due.
    next: Instant,
}

impl Pacer {
    /// A schedule of one token every `interval`, the first one `interval`
    /// after `start` (a new leader does not add a token at once to those
    /// its predecessor just sent).
    pub(crate) fn new(interval: Duration, start: Instant) -> Self {
        let interval = interval.max(Duration::from_nanos(1));
        Self {
            interval,
            next: start + interval,
        }
    }

    /// When the next token is due.
    pub(crate) fn next(&self) -> Instant {
        self.next
    }

    /// How many tokens to send at `now`, moving the schedule on: 0 before
    /// the next is due, those that fell due when woken up to [`CATCH_UP`]
    /// late, and 1 (the schedule restarting from now) when later still.
    pub(crate) fn due(&mut self, now: Instant) -> u32 {
        if now < self.next {
            return 0;
        }
        let late = now - self.next;
        if late > CATCH_UP {
            self.next = now + self.interval;
            return 1;
        }
        let behind = late.as_nanos() / self.interval.as_nanos();
        let count = u32::try_from(behind).unwrap_or(u32::MAX).saturating_add(1);
        self.next += self.interval.saturating_mul(count);
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tokens_fall_due_one_interval_apart_from_the_start_without_drift() {
        let start = Instant::now();
        let mut pacer = Pacer::new(ms(100), start);
        assert_eq!(pacer.due(start), 0);
        assert_eq!(pacer.next(), start + ms(100));
        // Woken 3 ms late every time: the schedule stays on the 100s.
        for n in 1..=50 {
            assert_eq!(pacer.due(start + ms(100 * n + 3)), 1);
            assert_eq!(pacer.next(), start + ms(100 * (n + 1)));
        }
    }

    #[test]
    fn a_short_delay_sends_what_fell_due_and_a_long_pause_sends_one() {
        let start = Instant::now();
        let mut fast = Pacer::new(ms(5), start);
        assert_eq!(fast.due(start + ms(17)), 3, "due at 5, 10 and 15 ms");
        assert_eq!(fast.next(), start + ms(20));
        let mut slow = Pacer::new(ms(100), start);
        assert_eq!(slow.due(start + ms(2_000)), 1, "no catch-up after a pause");
        assert_eq!(slow.next(), start + ms(2_100));
        assert_eq!(slow.due(start + ms(2_099)), 0);
    }

    #[test]
    fn in_any_second_a_ten_per_second_pace_sends_at_most_eleven() {
        let start = Instant::now();
        let mut pacer = Pacer::new(ms(100), start);
        let mut sent = Vec::new();
        let mut now = start;
        while now < start + ms(10_000) {
            // Wake at the due time, up to 19 ms late.
            now = pacer.next() + ms(u64::from(fastrand::u8(0..20)));
            for _ in 0..pacer.due(now) {
                sent.push(now);
            }
        }
        for (i, first) in sent.iter().enumerate() {
            let window = sent[i..].iter().take_while(|t| **t < *first + ms(1_000));
            assert!(window.count() <= 11);
        }
    }
}
