//! The refillers of cluster-wide rate limits.
//!
//! For every task it runs that has a cluster-wide limit, each worker
//! stands for election ([`Leadership`] on `celeriac.refiller.<task>`) as
//! that task's refiller; the one elected publishes a token to
//! `celeriac.rate.<task>` every `interval` of the rate, on the steady
//! schedule of a [`Pacer`]. The queue holds at most `burst` tokens and
//! refuses the rest, so tokens nobody takes never pile up beyond the
//! burst. Tokens are transient and unconfirmed: one lost costs a task a
//! little wait, never a run over the limit.
//!
//! When the refiller's worker dies or loses its connection, the broker
//! hands leadership to another candidate (at once for a dead process,
//! after missed heartbeats for a lost host), which starts its own schedule
//! one interval later: meanwhile no token is added. A refiller that loses
//! leadership or its channels stands again after a pause; the session's
//! end stops them all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use celeriac_shared::{ErrorChain, Leadership, Rate, RateLimit, TOKEN_RENEWAL};
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::Error;
use crate::pacer::Pacer;
use crate::rate_limits::RateLimits;
use crate::retry::Backoff;

/// How long the refillers get to resign when the session ends, before
/// they are aborted.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The pause before standing again after leadership or a channel was
/// lost.
const STAND_AGAIN: Backoff = Backoff::Exponential {
    min: Duration::from_millis(100),
    max: Duration::from_secs(10),
};

/// One session's refiller candidates, one per task with a cluster-wide
/// limit.
pub(crate) struct Refillers {
    /// The candidates' loops.
    tasks: JoinSet<()>,
    /// Tells them to resign and stop.
    stop: watch::Sender<bool>,
}

/// Where one refiller publishes, and how fast.
#[derive(Debug, Clone)]
struct Refill {
    /// The task whose limit this is.
    task: String,
    /// Its token queue.
    queue: String,
    /// The rate tokens are published at.
    rate: Rate,
}

impl Refillers {
    /// Stands for election as the refiller of every task with a
    /// cluster-wide limit in `limits`, on `connection`.
    pub(crate) fn start(connection: &Arc<Connection>, limits: &RateLimits) -> Self {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (task, limit) in limits.cluster() {
            let refill = Refill {
                task: task.to_owned(),
                queue: RateLimit::token_queue(task),
                rate: limit.rate,
            };
            tasks.spawn(stand(Arc::clone(connection), refill, stopped.clone()));
        }
        Self { tasks, stop }
    }

    /// Resigns every leadership held (the next candidate takes over at
    /// once) and stops.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        let stopped = tokio::time::timeout(STOP_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if stopped.is_err() {
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// Stands for election until `stop` says otherwise or the connection is
/// gone; refills while elected.
async fn stand(connection: Arc<Connection>, refill: Refill, mut stop: watch::Receiver<bool>) {
    let election = Leadership::new(RateLimit::refiller_queue(&refill.task));
    let mut failures = 0;
    loop {
        let channels = async {
            let open = || connection.create_channel();
            let election = open().await.map_err(Error::amqp("channel.open"))?;
            let tokens = open().await.map_err(Error::amqp("channel.open"))?;
            Ok::<_, Error>((election, tokens))
        };
        let ended = match channels.await {
            Ok((election_channel, tokens)) => {
                let ended = tokio::select! {
                    err = lead(&election, election_channel.clone(), &tokens, &refill, &mut failures) => Some(err),
                    _ = stop.changed() => None,
                };
                let _ = tokens.close(200, "refiller stopped".into()).await;
                let _ = election_channel.close(200, "refiller stopped".into()).await;
                ended
            }
            Err(err) => Some(err),
        };
        let Some(err) = ended else { return };
        if !connection.status().connected() || *stop.borrow() {
            return;
        }
        let pause = STAND_AGAIN.delay(failures);
        failures = failures.saturating_add(1);
        let task = refill.task.as_str();
        warn!(
            task, error = %ErrorChain(&err), retry_in = ?pause,
            "rate-limit refiller of {task} stopped; standing again"
        );
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Waits to be elected on `channel`, then publishes tokens on `tokens`
/// until leadership or a channel is lost; returns why.
async fn lead(
    election: &Leadership,
    channel: Channel,
    tokens: &Channel,
    refill: &Refill,
    failures: &mut u32,
) -> Error {
    let mut leader = match election.lead(channel).await {
        Ok(leader) => leader,
        Err(err) => return err.into(),
    };
    *failures = 0;
    let (task, rate) = (refill.task.as_str(), refill.rate);
    info!(task, %rate, "refilling the cluster-wide rate limit of {task} ({rate})");
    let mut pacer = Pacer::new(rate.interval(), Instant::now());
    let mut renewal = tokio::time::Instant::now() + TOKEN_RENEWAL;
    loop {
        let next = tokio::time::Instant::from_std(pacer.next());
        tokio::select! {
            lost = leader.lost() => return lost.into(),
            () = tokio::time::sleep_until(renewal) => {
                if let Err(err) = leader.renew().await {
                    return err.into();
                }
                renewal = tokio::time::Instant::now() + TOKEN_RENEWAL;
            }
            () = tokio::time::sleep_until(next) => {
                for _ in 0..pacer.due(Instant::now()) {
                    if let Err(err) = put_token(tokens, &refill.queue).await {
                        return err;
                    }
                }
            }
        }
    }
}

/// Publishes one token, transient and unconfirmed; the queue refuses it
/// when it holds the burst already.
async fn put_token(channel: &Channel, queue: &str) -> Result<(), Error> {
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"",
            BasicProperties::default(),
        )
        .await
        .map_err(Error::amqp("basic.publish"))?;
    Ok(())
}
