//! Claiming a send's uniqueness key before the task is published: win the
//! key's lock and record this task as its holder, or learn which task
//! holds it. The queues and the proof are in
//! [`celeriac_shared::UniqueLock`].

use std::time::Duration;

use celeriac_shared::{Acquire, UniqueLock, Uniqueness, holder_record_ttl};
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;
use tokio::time::Instant;
use tracing::debug;

use crate::Error;
use crate::channels::Channels;

/// The shortest pause before looking again at a key whose holder was not
/// readable.
const MIN_PAUSE: Duration = Duration::from_millis(5);
/// The longest such pause.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Who holds a key after a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claim {
    /// This send holds the key (it won it now, or the holder record
    /// already names this task id): publish the task.
    Won,
    /// Task `.0` holds the key: publish nothing.
    Held(String),
}

/// What one look at the key found.
enum Look {
    /// Won the lock just now; the holder record is still to be written.
    Won(Instant),
    /// The holder record names this task.
    Holder(String),
    /// The lock is held, but its record was not readable right now (being
    /// written or read by another sender, or removed by a release): look
    /// again.
    Unknown,
}

/// Claims `unique`'s key for `task_id`, looking again (with short jittered
/// pauses) while the holder is not readable, and through broker outages,
/// for at most `timeout`.
pub(crate) async fn claim(
    channels: &Channels,
    unique: &Uniqueness,
    task_id: &str,
    timeout: Duration,
) -> Result<Claim, Error> {
    let lock = UniqueLock::new(unique.key());
    let deadline = Instant::now() + timeout;
    let mut looks = 0u32;
    let mut last: Option<Error> = None;
    loop {
        let look = on_channel(channels, |channel| {
            let lock = &lock;
            async move { look(&channel, lock, task_id, unique.ttl()).await }
        });
        match tokio::time::timeout_at(deadline, look).await {
            Ok(Ok(Look::Won(started))) => {
                record(
                    channels,
                    &lock,
                    unique.ttl(),
                    task_id,
                    started,
                    (deadline, timeout),
                )
                .await?;
                return Ok(Claim::Won);
            }
            Ok(Ok(Look::Holder(holder))) if holder == task_id => return Ok(Claim::Won),
            Ok(Ok(Look::Holder(holder))) => return Ok(Claim::Held(holder)),
            Ok(Ok(Look::Unknown)) => last = None,
            Ok(Err(err)) if err.can_be_recovered() => last = Some(err),
            Ok(Err(err)) => return Err(err),
            Err(_) => break,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let cap = MIN_PAUSE
            .saturating_mul(2u32.saturating_pow(looks.min(8)))
            .min(MAX_PAUSE);
        let pause = MIN_PAUSE + cap.saturating_sub(MIN_PAUSE).mul_f64(fastrand::f64());
        looks += 1;
        tokio::time::sleep(pause.min(left)).await;
    }
    Err(match last {
        Some(source) => Error::Unconfirmed {
            task_id: task_id.to_owned(),
            after: timeout,
            source: Box::new(source),
        },
        None => Error::HolderUnknown {
            key: unique.key().to_owned(),
            after: timeout,
        },
    })
}

/// Declares the key's queues and publishes its lock message; when it is
/// refused, reads the holder record.
async fn look(
    channel: &Channel,
    lock: &UniqueLock,
    task_id: &str,
    ttl: Duration,
) -> Result<Look, Error> {
    lock.declare(channel)
        .await
        .map_err(Error::amqp("queue.declare"))?;
    let started = Instant::now();
    let acquired = lock
        .acquire(channel, task_id, ttl)
        .await
        .map_err(Error::amqp("basic.publish"))?;
    match acquired {
        Acquire::Won => Ok(Look::Won(started)),
        Acquire::Gone => Ok(Look::Unknown),
        Acquire::Held => {
            let holder = lock
                .read_holder(channel)
                .await
                .map_err(Error::amqp("basic.get"))?;
            Ok(holder.map_or(Look::Unknown, Look::Holder))
        }
    }
}

/// Writes `task_id` as the holder of the lock won at `started`, tried
/// again through broker outages until `deadline`. Failing, the key stays
/// held until its TTL with no record: other senders of the key then fail
/// with [`Error::HolderUnknown`].
async fn record(
    channels: &Channels,
    lock: &UniqueLock,
    ttl: Duration,
    task_id: &str,
    started: Instant,
    (deadline, timeout): (Instant, Duration),
) -> Result<(), Error> {
    loop {
        let write = on_channel(channels, |channel| async move {
            let record_ttl = holder_record_ttl(ttl, started.elapsed());
            let written = lock
                .write_holder(&channel, task_id, record_ttl)
                .await
                .map_err(Error::amqp("writing the holder record"))?;
            Ok(written)
        });
        let err = match tokio::time::timeout_at(deadline, write).await {
            Ok(Ok(true)) => return Ok(()),
            Ok(Ok(false)) if Instant::now() < deadline => Error::Nacked {
                task_id: task_id.to_owned(),
            },
            Ok(Ok(false)) => {
                return Err(Error::Nacked {
                    task_id: task_id.to_owned(),
                });
            }
            Ok(Err(err)) if err.can_be_recovered() => err,
            Ok(Err(err)) => return Err(err),
            Err(_) => {
                return Err(Error::Timeout {
                    operation: "writing the uniqueness key's holder",
                    after: timeout,
                });
            }
        };
        debug!(task_id, error = %err, "holder record not written; writing again");
        tokio::time::sleep(MIN_PAUSE).await;
    }
}

/// Runs `work` on a fresh confirm-mode channel of its own (a refused
/// declaration or a missing queue closes only that channel), then closes
/// it.
async fn on_channel<T, F>(channels: &Channels, work: impl FnOnce(Channel) -> F) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let channel = channels.open().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(Error::amqp("confirm.select"))?;
    let done = work(channel.clone()).await;
    if channel.status().connected() {
        let _ = channel.close(200, "uniqueness key claimed".into()).await;
    }
    done
}
