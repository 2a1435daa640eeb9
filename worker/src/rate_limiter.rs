//! Admits a rate-limited task before it runs: a token from the worker's
//! own bucket (scope `worker`), or one taken from the broker (scope
//! `cluster`).
//!
//! A cluster-wide limit's tokens wait in the queue
//! `celeriac.rate.<task>`, filled by the elected refiller
//! (`refiller.rs`); a worker takes one with `basic.get` and `no_ack`, so
//! a token taken is gone even if the worker dies before the task starts.
//! The answer is only a fact for `plan`, which decides what happens to a
//! task that got no token. A token that cannot be taken (the broker
//! refused the `basic.get`) counts as none: the task waits, it never runs
//! over the limit. The channel is then opened again, and the token queues
//! declared again, on the next admission.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac_shared::{ErrorChain, RateLimit, RateLimitScope};
use lapin::options::BasicGetOptions;
use lapin::{Channel, Connection};
use tokio::sync::Mutex;
use tracing::warn;

use crate::Error;
use crate::rate_limits::RateLimits;

/// Whether a task may start now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It has no limit, or took a token.
    Run,
    /// It is over its limit; a token is expected for it after this long
    /// (after those expected for the tasks turned away before it).
    Wait(Duration),
}

/// A session's admission of rate-limited tasks.
pub(crate) struct RateLimiter {
    /// The limits and the worker-scope buckets, shared by every session.
    limits: Arc<RateLimits>,
    /// Opens the channel tokens are taken on, again after an error.
    connection: Arc<Connection>,
    /// The channel tokens are taken on; `None` until opened, and after an
    /// error closed it.
    channel: Mutex<Option<Channel>>,
}

impl RateLimiter {
    /// Declares the token queue of every task with a cluster-wide limit
    /// (one declared with another burst is
    /// [`celeriac_shared::Error::RateLimitMismatch`], which reconnecting
    /// cannot mend) and opens the channel tokens are taken on.
    pub(crate) async fn start(
        connection: &Arc<Connection>,
        limits: Arc<RateLimits>,
    ) -> Result<Self, Error> {
        let limiter = Self {
            limits,
            connection: Arc::clone(connection),
            channel: Mutex::new(None),
        };
        if !limiter.limits.cluster().is_empty() {
            limiter.channel().await?;
        }
        Ok(limiter)
    }

    /// Whether `task` may start now; takes its token if so.
    pub(crate) async fn admit(&self, task: &str) -> Admission {
        let Some(limit) = self.limits.limit(task) else {
            return Admission::Run;
        };
        let interval = limit.rate.interval();
        let wait = match limit.scope {
            RateLimitScope::Worker => match self.limits.take_local(task, Instant::now()) {
                Ok(()) => return Admission::Run,
                Err(wait) => wait,
            },
            RateLimitScope::Cluster => match self.take_token(task).await {
                Ok(true) => return Admission::Run,
                Ok(false) => interval,
                Err(err) => {
                    warn!(
                        task, error = %ErrorChain(&err),
                        "cannot take a rate-limit token for {task}; the task waits"
                    );
                    interval
                }
            },
        };
        let back = self
            .limits
            .book_return(task, interval, wait, Instant::now());
        Admission::Wait(back)
    }

    /// Takes one token of `task` from its queue: `false` when the queue is
    /// empty.
    async fn take_token(&self, task: &str) -> Result<bool, Error> {
        let channel = self.channel().await?;
        let queue = RateLimit::token_queue(task);
        let options = BasicGetOptions { no_ack: true };
        match channel.basic_get(queue.as_str().into(), options).await {
            Ok(token) => Ok(token.is_some()),
            Err(err) => {
                self.channel.lock().await.take();
                Err(Error::amqp("basic.get")(err))
            }
        }
    }

    /// The channel tokens are taken on, opened (and every token queue
    /// declared on it) when there is none or it closed.
    async fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.channel.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(Error::amqp("channel.open"))?;
        for (task, limit) in self.limits.cluster() {
            if let Err(err) = limit.declare_token_queue(&channel, task).await {
                let _ = channel.close(200, "OK".into()).await;
                return Err(err.into());
            }
        }
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Closes the channel, before the session closes its connection.
    pub(crate) async fn close(&self) {
        if let Some(channel) = self.channel.lock().await.take() {
            let _ = channel.close(200, "worker shutdown".into()).await;
        }
    }
}
