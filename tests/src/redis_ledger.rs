//! A ledger in Redis that tasks and producers of several processes write
//! to, for chaos tests: producers add each task id the broker confirmed,
//! the task `ledger.count` counts each of its runs, and the test compares
//! the two.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use celeriac_shared::Task;
use celeriac_worker::{Registry, TaskContext, TaskError};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

/// `ledger.count()`: adds one to its task id's run count.
#[derive(Debug)]
pub struct Count;

impl Task for Count {
    const NAME: &'static str = "ledger.count";
    type Args = ();
    type Output = ();
}

/// The Redis server for tests: `CELERIAC_REDIS_URL`, or the local one.
pub fn redis_url() -> String {
    std::env::var("CELERIAC_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into())
}

/// One ledger: the hash `<key>:runs` (task id to run count) and the set
/// `<key>:confirmed` (task ids whose publish the broker confirmed).
#[derive(Clone)]
pub struct RedisLedger {
    connection: MultiplexedConnection,
    key: String,
}

/// What a ledger holds at the end of a run.
#[derive(Debug, Default)]
pub struct Tally {
    /// Task ids the broker confirmed.
    pub confirmed: HashSet<String>,
    /// How often each task ran.
    pub runs: HashMap<String, u64>,
}

impl Tally {
    /// Confirmed tasks that never ran.
    pub fn lost(&self) -> Vec<&String> {
        let mut lost: Vec<&String> = self
            .confirmed
            .iter()
            .filter(|id| !self.runs.contains_key(*id))
            .collect();
        lost.sort();
        lost
    }

    /// Tasks that ran more than once.
    pub fn duplicated(&self) -> usize {
        self.runs.values().filter(|&&n| n > 1).count()
    }

    /// One line: confirmed, ran, lost and duplicated tasks.
    pub fn summary(&self) -> String {
        format!(
            "confirmed {}, ran {}, lost {}, duplicated {}",
            self.confirmed.len(),
            self.runs.len(),
            self.lost().len(),
            self.duplicated()
        )
    }
}

impl RedisLedger {
    /// Opens the ledger named `key` on the Redis server at `url`.
    pub async fn connect(url: &str, key: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).context("invalid Redis URL")?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("cannot connect to Redis at {url}"))?;
        Ok(Self {
            connection,
            key: key.to_owned(),
        })
    }

    /// Opens the ledger named `key` on the test Redis server
    /// ([`redis_url`]), saying how to start one if none answers.
    pub async fn open(key: &str) -> anyhow::Result<Self> {
        Self::connect(&redis_url(), key)
            .await
            .context("the chaos runs need Redis (scripts/ensure-redis)")
    }

    /// Counts one run of `task_id`.
    pub async fn count_run(&self, task_id: &str) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        connection
            .hincr(format!("{}:runs", self.key), task_id, 1)
            .await
    }

    /// Records that the broker confirmed `task_id`.
    pub async fn confirm(&self, task_id: &str) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        connection
            .sadd(format!("{}:confirmed", self.key), task_id)
            .await
    }

    /// How many distinct tasks ran so far.
    pub async fn tasks_run(&self) -> redis::RedisResult<usize> {
        let mut connection = self.connection.clone();
        connection.hlen(format!("{}:runs", self.key)).await
    }

    /// Everything in the ledger.
    pub async fn tally(&self) -> redis::RedisResult<Tally> {
        let mut connection = self.connection.clone();
        let confirmed = connection
            .smembers(format!("{}:confirmed", self.key))
            .await?;
        let runs = connection.hgetall(format!("{}:runs", self.key)).await?;
        Ok(Tally { confirmed, runs })
    }

    /// Waits until every confirmed task has run, for at most `limit`, and
    /// returns the tally then: one with lost tasks if they never ran.
    pub async fn settled(&self, limit: Duration) -> redis::RedisResult<Tally> {
        let deadline = Instant::now() + limit;
        loop {
            let tally = self.tally().await?;
            if tally.lost().is_empty() || Instant::now() > deadline {
                return Ok(tally);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes the ledger.
    pub async fn delete(&self) -> redis::RedisResult<()> {
        let mut connection = self.connection.clone();
        let keys = [
            format!("{}:runs", self.key),
            format!("{}:confirmed", self.key),
        ];
        connection.del(&keys).await
    }
}

/// A registry with `ledger.count` counting into `ledger`; a failed write
/// fails the task, which is then retried.
pub fn registry(ledger: RedisLedger) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Count, _, _>(move |(), ctx: TaskContext| {
        let ledger = ledger.clone();
        async move {
            ledger
                .count_run(ctx.id())
                .await
                .map_err(|e| TaskError::from_error(&e))
        }
    });
    registry
}
