//! Which rate limit each task this worker runs has, and the buckets of
//! the limits with scope `worker`.
//!
//! Built once per [`Worker::run`](crate::Worker::run) from
//! [`WorkerConfig::rate_limits`](crate::WorkerConfig::rate_limits) and the
//! registered task names, and shared by its sessions, so that a
//! reconnection does not refill a worker's buckets. A glob gives each
//! registered name it matches a limit (and bucket, or token queue) of its
//! own; when several entries match a name, the first wins, as routes do.
//!
//! It also books when each task turned away should come back: one token
//! interval after the previous one, so that a backlog returns spread out
//! at the rate, each finding a token, instead of all at once with most
//! turned away again. A booking is only a hint for the delay: a task that
//! comes back still needs a token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use celeriac_shared::{RateLimit, RateLimitScope};

use crate::plan::SHORTEST_RATE_LIMIT_DELAY;
use crate::token_bucket::TokenBucket;

/// The rate limits of one worker's tasks.
#[derive(Debug, Default)]
pub(crate) struct RateLimits {
    /// Each limited task's limit, by task name.
    limits: HashMap<String, RateLimit>,
    /// The buckets of the tasks whose limit has scope `worker`.
    buckets: Mutex<HashMap<String, TokenBucket>>,
    /// By task, when the task turned away last was told to come back.
    returns: Mutex<HashMap<String, Instant>>,
}

impl RateLimits {
    /// The limits of `tasks` (the registered names) under `limits` (the
    /// configured entries, first match wins).
    pub(crate) fn new(limits: &[RateLimit], tasks: &[&str]) -> Self {
        let limits: HashMap<String, RateLimit> = tasks
            .iter()
            .filter_map(|task| {
                let limit = limits.iter().find(|limit| limit.matches(task))?;
                Some(((*task).to_owned(), limit.clone()))
            })
            .collect();
        let buckets = limits
            .iter()
            .filter(|(_, limit)| limit.scope == RateLimitScope::Worker)
            .map(|(task, limit)| {
                let bucket = TokenBucket::new(limit.rate, limit.capacity());
                (task.clone(), bucket)
            })
            .collect();
        Self {
            limits,
            buckets: Mutex::new(buckets),
            returns: Mutex::default(),
        }
    }

    /// `task`'s limit, if it has one.
    pub(crate) fn limit(&self, task: &str) -> Option<&RateLimit> {
        self.limits.get(task)
    }

    /// The tasks whose limit has scope `cluster`, with their limits, in
    /// name order.
    pub(crate) fn cluster(&self) -> Vec<(&str, &RateLimit)> {
        let mut cluster: Vec<(&str, &RateLimit)> = self
            .limits
            .iter()
            .filter(|(_, limit)| limit.scope == RateLimitScope::Cluster)
            .map(|(task, limit)| (task.as_str(), limit))
            .collect();
        cluster.sort_by_key(|(task, _)| *task);
        cluster
    }

    /// Takes a token from `task`'s bucket at `now`, or says how long until
    /// one is expected. A task without a worker-scope limit always gets
    /// one.
    pub(crate) fn take_local(&self, task: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        match buckets.get_mut(task) {
            Some(bucket) => bucket.take(now),
            None => Ok(()),
        }
    }

    /// How long a task of `task` turned away at `now` should stay away,
    /// its next token expected after `wait`: until then, at least
    /// [`SHORTEST_RATE_LIMIT_DELAY`], or until one token `interval` after
    /// the task turned away before it was told to come back, whichever is
    /// later. Books that time.
    pub(crate) fn book_return(
        &self,
        task: &str,
        interval: Duration,
        wait: Duration,
        now: Instant,
    ) -> Duration {
        let mut returns = self.returns.lock().unwrap_or_else(|p| p.into_inner());
        let earliest = now + wait.max(SHORTEST_RATE_LIMIT_DELAY);
        let back = match returns.get(task) {
            Some(last) => earliest.max(*last + interval),
            None => earliest,
        };
        returns.insert(task.to_owned(), back);
        back - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_glob_gives_each_registered_name_its_own_bucket_and_the_first_match_wins() {
        let rate = |text: &str| text.parse().unwrap();
        let limits = [
            RateLimit::per_worker("api.fetch", rate("1/m")),
            RateLimit::per_worker("api.*", rate("1/m")).with_burst(2),
            RateLimit::cluster("mail.*", rate("5/s")),
        ];
        let tasks = ["api.fetch", "api.post", "api.get", "mail.send", "other"];
        let limits = RateLimits::new(&limits, &tasks);
        let now = Instant::now();
        assert!(limits.take_local("api.fetch", now).is_ok());
        assert!(limits.take_local("api.fetch", now).is_err(), "burst 1");
        for task in ["api.post", "api.get"] {
            assert!(limits.take_local(task, now).is_ok());
            assert!(limits.take_local(task, now).is_ok(), "burst 2 each");
            assert!(limits.take_local(task, now).is_err());
        }
        assert!(limits.limit("other").is_none());
        assert!(limits.take_local("other", now).is_ok());
        let cluster: Vec<&str> = limits.cluster().into_iter().map(|(t, _)| t).collect();
        assert_eq!(cluster, ["mail.send"]);
    }

    #[test]
    fn tasks_turned_away_together_are_told_to_come_back_one_interval_apart() {
        let limits = RateLimits::default();
        let (interval, now) = (Duration::from_millis(100), Instant::now());
        let ms = |n: u64| Duration::from_millis(n);
        let back = |wait| limits.book_return("t", interval, wait, now);
        assert_eq!(back(ms(20)), ms(1_000), "at least a second");
        assert_eq!(back(ms(20)), ms(1_100));
        assert_eq!(back(ms(20)), ms(1_200));
        assert_eq!(back(ms(5_000)), ms(5_000), "or when the token is due");
        assert_eq!(back(ms(20)), ms(5_100));
        let other = limits.book_return("u", interval, ms(20), now);
        assert_eq!(other, ms(1_000), "each task has its own bookings");
        let later = now + ms(60_000);
        let after = limits.book_return("t", interval, ms(20), later);
        assert_eq!(after, ms(1_000), "old bookings do not delay new ones");
    }
}
