//! Rate limits per task name: how many tasks of one name may start per
//! second, minute or hour, on each worker or across the whole cluster.
//!
//! A limit is a token bucket: `burst` tokens at most, refilled at `rate`,
//! one taken by every task that starts. With [`RateLimitScope::Worker`]
//! (Celery's semantics) each worker keeps its own bucket in memory. With
//! [`RateLimitScope::Cluster`] the bucket is a queue on the broker,
//! `celeriac.rate.<task>`, that holds at most `burst` tokens
//! (`x-max-length`, `reject-publish`): one worker, elected on
//! `celeriac.refiller.<task>`, publishes tokens at the rate, and every
//! worker takes one (`basic.get`) before it starts such a task. A task
//! over its limit is not held: it goes back through the delay ladder (see
//! `docs/schedules-uniqueness-rate-limits.md`).
//!
//! ```toml
//! [[rate_limit]]
//! task = "api.fetch"   # a task name, or a glob: "api.*"
//! rate = "100/m"       # N/s, N/m, N/h, or N (per second)
//! scope = "cluster"    # "worker" (default) or "cluster"
//! burst = 10           # tokens that may accumulate; default 1
//! ```

use std::fmt;

use lapin::Channel;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use wildmatch::WildMatch;

use crate::message::short_string;
use crate::{Error, InvalidRate, Rate};

/// The prefix of every cluster-wide limit's token queue.
const TOKEN_QUEUE_PREFIX: &str = "celeriac.rate.";
/// The prefix of every cluster-wide limit's refiller election queue.
const REFILLER_QUEUE_PREFIX: &str = "celeriac.refiller.";

/// One `[[rate_limit]]`: tasks whose name matches `task` start at most at
/// `rate`, with up to `burst` at once after a quiet spell.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawRateLimit")]
pub struct RateLimit {
    /// The task name, or a glob (`*` any run of characters, `?` one
    /// character) as in `[[route]]`: each name it matches gets a limit of
    /// its own. Required.
    pub task: String,
    /// How many tasks may start per period. Required.
    pub rate: Rate,
    /// Whether each worker has the limit to itself or all workers share
    /// it. Defaults to [`RateLimitScope::Worker`].
    pub scope: RateLimitScope,
    /// How many tokens may accumulate while no task takes them: how many
    /// tasks may start at once after a quiet spell. 0 counts as 1.
    /// Defaults to 1.
    pub burst: u32,
}

/// Who shares a [`RateLimit`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScope {
    /// Every worker may start tasks at the full rate (Celery's
    /// `rate_limit`): a token bucket in the worker's memory. The default.
    #[default]
    Worker,
    /// All workers together start tasks at most at the rate: a token
    /// bucket on the broker.
    Cluster,
}

/// Why a `[[rate_limit]]` is refused. Each message names the entry by its
/// task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRateLimit {
    /// `task` is empty.
    #[error("a [[rate_limit]] has an empty `task`; give a task name or glob")]
    NoTask,
    /// `rate` is not a rate.
    #[error("[[rate_limit]] for task `{task}`: `rate` {problem}")]
    Rate {
        /// The entry's task.
        task: String,
        /// What is wrong with the rate.
        problem: InvalidRate,
    },
    /// `burst` is 0.
    #[error("[[rate_limit]] for task `{task}`: `burst` must be at least 1")]
    Burst {
        /// The entry's task.
        task: String,
    },
    /// Two entries name the same `task`.
    #[error(
        "[[rate_limit]] number {again} repeats task `{task}` of number {first}; give each task one limit"
    )]
    Duplicate {
        /// The repeated task name or glob.
        task: String,
        /// The first entry's position, from 1.
        first: usize,
        /// The repeating entry's position, from 1.
        again: usize,
    },
}

impl RateLimit {
    /// A limit that each worker applies to itself (Celery's semantics),
    /// with a burst of 1.
    pub fn per_worker(task: impl Into<String>, rate: Rate) -> Self {
        Self {
            task: task.into(),
            rate,
            scope: RateLimitScope::Worker,
            burst: 1,
        }
    }

    /// A limit that all workers share, with a burst of 1.
    pub fn cluster(task: impl Into<String>, rate: Rate) -> Self {
        Self {
            scope: RateLimitScope::Cluster,
            ..Self::per_worker(task, rate)
        }
    }

    /// The same limit with another burst.
    pub fn with_burst(self, burst: u32) -> Self {
        Self { burst, ..self }
    }

    /// Whether this limit applies to `task_name`.
    pub fn matches(&self, task_name: &str) -> bool {
        self.task == task_name || WildMatch::new(&self.task).matches(task_name)
    }

    /// The burst, at least 1.
    pub fn capacity(&self) -> u32 {
        self.burst.max(1)
    }

    /// The queue holding the tokens of `task`'s cluster-wide limit:
    /// `celeriac.rate.<task>`.
    pub fn token_queue(task: &str) -> String {
        format!("{TOKEN_QUEUE_PREFIX}{task}")
    }

    /// The queue of the election of `task`'s refiller:
    /// `celeriac.refiller.<task>`.
    pub fn refiller_queue(task: &str) -> String {
        format!("{REFILLER_QUEUE_PREFIX}{task}")
    }

    /// The token queue's arguments: a classic queue of at most `burst`
    /// tokens that refuses more (`reject-publish`) instead of dropping the
    /// oldest.
    pub fn token_queue_arguments(&self) -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("classic")),
        );
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::from(self.capacity())),
        );
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
        arguments
    }

    /// Declares the durable token queue of `task` (a name this limit
    /// matches) on `channel`. A queue that exists with another burst is
    /// [`Error::RateLimitMismatch`]; the broker then closes `channel`.
    pub async fn declare_token_queue(&self, channel: &Channel, task: &str) -> Result<(), Error> {
        let queue = Self::token_queue(task);
        let name = short_string("queue", &queue)?;
        let options = QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        };
        match channel
            .queue_declare(name, options, self.token_queue_arguments())
            .await
        {
            Ok(_) => Ok(()),
            Err(source) if crate::broker_error::is_precondition_failed(&source) => {
                Err(Error::RateLimitMismatch {
                    queue,
                    burst: self.capacity(),
                    source,
                })
            }
            Err(source) => Err(Error::Declare {
                what: format!("rate-limit token queue `{queue}`"),
                source,
            }),
        }
    }

    /// Refuses two entries for the same task.
    pub fn check_unique(limits: &[RateLimit]) -> Result<(), InvalidRateLimit> {
        for (again, limit) in limits.iter().enumerate() {
            if let Some(first) = limits[..again].iter().position(|l| l.task == limit.task) {
                return Err(InvalidRateLimit::Duplicate {
                    task: limit.task.clone(),
                    first: first + 1,
                    again: again + 1,
                });
            }
        }
        Ok(())
    }
}

/// A `[[rate_limit]]` as written, checked by `TryFrom` so that every
/// error names its entry's task.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    /// [`RateLimit::task`].
    task: String,
    /// [`RateLimit::rate`], not read yet.
    rate: RawRate,
    /// [`RateLimit::scope`].
    #[serde(default)]
    scope: RateLimitScope,
    /// [`RateLimit::burst`], which may not be 0 here.
    #[serde(default = "one")]
    burst: u32,
}

fn one() -> u32 {
    1
}

/// A rate as written: a string, or a number (per second).
struct RawRate(String);

impl<'de> Deserialize<'de> for RawRate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = RawRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as \"100/m\", or a number per second")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawRate, E> {
                Ok(RawRate(value.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawRate, E> {
                Ok(RawRate(value.to_string()))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawRate, E> {
                Ok(RawRate(value.to_string()))
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<RawRate, E> {
                Ok(RawRate(value.to_string()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

impl TryFrom<RawRateLimit> for RateLimit {
    type Error = InvalidRateLimit;

    fn try_from(raw: RawRateLimit) -> Result<Self, Self::Error> {
        if raw.task.is_empty() {
            return Err(InvalidRateLimit::NoTask);
        }
        let rate = raw
            .rate
            .0
            .parse()
            .map_err(|problem| InvalidRateLimit::Rate {
                task: raw.task.clone(),
                problem,
            })?;
        if raw.burst == 0 {
            return Err(InvalidRateLimit::Burst { task: raw.task });
        }
        Ok(Self {
            task: raw.task,
            rate,
            scope: raw.scope,
            burst: raw.burst,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_glob_matches_each_name_and_an_exact_name_only_itself() {
        let every = Rate::new(1, Duration::from_secs(1)).unwrap();
        let api = RateLimit::per_worker("api.*", every);
        assert!(api.matches("api.fetch") && api.matches("api.v2.fetch"));
        assert!(!api.matches("apix.fetch"));
        assert!(RateLimit::cluster("api.fetch", every).matches("api.fetch"));
        assert!(!RateLimit::cluster("api.fetch", every).matches("api.fetch2"));
    }

    #[test]
    fn the_token_queue_holds_at_most_the_burst_and_refuses_more() {
        let every = Rate::new(1, Duration::from_secs(1)).unwrap();
        let limit = RateLimit::cluster("api.fetch", every).with_burst(5);
        let arguments = limit.token_queue_arguments();
        let get = |key: &str| arguments.inner().get(key).cloned();
        assert_eq!(get("x-max-length"), Some(AMQPValue::LongLongInt(5)));
        assert_eq!(
            get("x-overflow"),
            Some(AMQPValue::LongString("reject-publish".into()))
        );
        assert_eq!(
            RateLimit::token_queue("api.fetch"),
            "celeriac.rate.api.fetch"
        );
        assert_eq!(
            RateLimit::refiller_queue("api.fetch"),
            "celeriac.refiller.api.fetch"
        );
        assert_eq!(limit.with_burst(0).capacity(), 1);
    }

    #[test]
    fn a_task_limited_twice_is_refused_with_both_positions() {
        let every = Rate::new(1, Duration::from_secs(1)).unwrap();
        let limits = [
            RateLimit::per_worker("a", every),
            RateLimit::per_worker("b", every),
            RateLimit::cluster("a", every),
        ];
        let err = RateLimit::check_unique(&limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "[[rate_limit]] number 3 repeats task `a` of number 1; give each task one limit"
        );
        assert!(RateLimit::check_unique(&limits[..2]).is_ok());
    }
}
