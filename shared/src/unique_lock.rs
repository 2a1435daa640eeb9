//! The broker side of a uniqueness key: three tiny queues per key and the
//! operations on them that producers (acquire, read the holder) and
//! workers (release) share.
//!
//! - The **lock queue** `celeriac.unique.lock.<key>` holds at most one
//!   *ready* message (`x-max-length` 1, `x-overflow` `reject-publish`).
//!   Acquiring is publishing a lock message (persistent, `mandatory`,
//!   per-message `expiration` = the TTL) and waiting for the publisher
//!   confirm: ack = won, nack = held by someone else. The lock message is
//!   **never read**: RabbitMQ's length limit counts ready messages only,
//!   so a `basic.get` (even one rejected straight after) would let a
//!   concurrent publish in, and the key would have two holders.
//! - The **holder queue** `celeriac.unique.holder.<key>` (`x-max-length`
//!   1, `drop-head`) holds the id of the task that holds the key, written
//!   by the winner, confirmed, *before* it publishes the task. Losers read
//!   it with `basic.get` and put it back with `basic.reject(requeue)`.
//!   While one reader holds it, others see the queue empty and try again.
//! - The **release queue** `celeriac.unique.release.<key>` (same shape)
//!   holds the same id, written with the holder record, and is read only
//!   by the worker that releases the key. A worker reading the holder
//!   queue could find it empty time after time while losers keep reading
//!   it, and give up, leaving the key held until its TTL.
//!
//! All three are classic and durable, with `x-expires` =
//! [`UNIQUE_QUEUE_EXPIRES`] (above [`MAX_UNIQUE_TTL`](crate::MAX_UNIQUE_TTL)),
//! and the same arguments on every declaration. Every acquisition declares
//! them again, which restarts that clock, so a lock queue never expires
//! while a lock message (whose TTL is shorter) lives in it, and idle ones
//! disappear by themselves.
//!
//! Why at most one sender holds a key at a time: the broker processes a
//! queue's publishes one at a time, and the lock queue's one ready message
//! makes it refuse every other publish until that message is gone. It
//! goes only three ways: its TTL runs out; [`UniqueLock::release`] purges
//! it; or the queue expires, which cannot happen within
//! [`UNIQUE_QUEUE_EXPIRES`] of the winner's declaration. Release purges and
//! never deletes the lock queue: a publish routed to a queue that is
//! being deleted is *confirmed* by RabbitMQ though nothing stores it, so a
//! loser racing a deletion could believe it won while a third sender wins
//! the new queue.
//!
//! A worker releases only when the release record names its own task, and
//! deletes the holder and release queues (dropping the record it holds
//! unacknowledged, and any copy a reader is about to put back) *before*
//! it purges the lock, so that the next winner's records cannot be
//! removed by this release. The next winner may have declared the holder
//! queue before that deletion, so it declares both again right before
//! writing its records (and writes them again if the broker returned
//! one). Both records expire a margin ([`holder_record_ttl`]) before the
//! lock message, so a record still readable names the task whose lock is
//! still held. What remains: a
//! release that reads its record and then stalls for longer than that
//! margin (at most 1 s) while the TTL runs out and another sender wins,
//! would purge the new winner's lock. See
//! docs/schedules-uniqueness-rate-limits.md.

use std::time::Duration;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, BasicRejectOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use sha2::{Digest, Sha256};

use crate::{expire_unused, is_not_found};

/// How long a key's queue (lock, holder, release) lives unused
/// (`x-expires`): 25 hours, above the longest TTL a key may have.
pub const UNIQUE_QUEUE_EXPIRES: Duration = Duration::from_secs(25 * 3600);

/// The prefix of every lock queue's name.
pub const UNIQUE_LOCK_PREFIX: &str = "celeriac.unique.lock.";

/// The prefix of every holder queue's name.
pub const UNIQUE_HOLDER_PREFIX: &str = "celeriac.unique.holder.";

/// The prefix of every release queue's name.
pub const UNIQUE_RELEASE_PREFIX: &str = "celeriac.unique.release.";

/// Keys up to this length made of `[A-Za-z0-9._:@-]` appear in queue
/// names as they are; others are hashed.
const MAX_PLAIN_KEY: usize = 200;

/// How much of an odd key stays readable in front of its hash.
const READABLE_PREFIX: usize = 48;

/// The longest margin between the holder record's expiry and the lock's.
const MAX_MARGIN: Duration = Duration::from_secs(1);

/// The three queues of one uniqueness key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UniqueLock {
    /// Holds the lock message; never read.
    lock_queue: String,
    /// Holds the holder's task id, for senders that find the key held.
    holder_queue: String,
    /// Holds the holder's task id too, for the worker that releases the
    /// key (and nobody else, so that it never finds it taken).
    release_queue: String,
}

/// What publishing a lock message came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acquire {
    /// The broker stored the lock message: this sender holds the key.
    Won,
    /// The broker refused it: someone holds the key. (Also what a channel
    /// that is not in confirm mode reads as: nothing is known, so the key
    /// is not won.)
    Held,
    /// The lock queue was gone when the message was routed (deleted by
    /// hand between the declaration and the publish): declare and try
    /// again.
    Gone,
}

/// What a worker's release came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// The release record named this task: the key is free.
    Released,
    /// Another task holds the key now (this task's TTL ran out before);
    /// nothing was touched.
    HeldBy(String),
    /// No release record: the key's TTL ran out, or it was released
    /// before (or another worker is reading the record this moment).
    /// Nothing was touched.
    NoRecord,
}

impl UniqueLock {
    /// The queues of `key`: `celeriac.unique.lock.<key>`,
    /// `celeriac.unique.holder.<key>` and `celeriac.unique.release.<key>`,
    /// with a key that is long or holds other characters than
    /// `[A-Za-z0-9._:@-]` written as a readable prefix, `~`, and 32 hex
    /// digits of its SHA-256.
    pub fn new(key: &str) -> Self {
        let name = queue_key(key);
        Self {
            lock_queue: format!("{UNIQUE_LOCK_PREFIX}{name}"),
            holder_queue: format!("{UNIQUE_HOLDER_PREFIX}{name}"),
            release_queue: format!("{UNIQUE_RELEASE_PREFIX}{name}"),
        }
    }

    /// All three queues' names: lock, holder, release.
    pub fn queues(&self) -> [&str; 3] {
        [&self.lock_queue, &self.holder_queue, &self.release_queue]
    }

    /// The lock queue's name.
    pub fn lock_queue(&self) -> &str {
        &self.lock_queue
    }

    /// The holder queue's name.
    pub fn holder_queue(&self) -> &str {
        &self.holder_queue
    }

    /// The release queue's name.
    pub fn release_queue(&self) -> &str {
        &self.release_queue
    }

    /// The lock queue's arguments: classic, one ready message at most,
    /// refusing publishes beyond it, expiring unused.
    pub fn lock_arguments() -> FieldTable {
        arguments("reject-publish")
    }

    /// The holder and release queues' arguments: classic, one message at
    /// most (a new record replaces the old), expiring unused.
    pub fn holder_arguments() -> FieldTable {
        arguments("drop-head")
    }

    /// Declares the lock and holder queues (durable), which also restarts
    /// their `x-expires` clock.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        declare(channel, &self.lock_queue, Self::lock_arguments()).await?;
        declare(channel, &self.holder_queue, Self::holder_arguments()).await
    }

    /// Publishes the lock message for `task_id` with `ttl` on `channel`
    /// (in confirm mode), after [`UniqueLock::declare`], and reads the
    /// broker's confirm.
    pub async fn acquire(
        &self,
        channel: &Channel,
        task_id: &str,
        ttl: Duration,
    ) -> Result<Acquire, lapin::Error> {
        let confirmation = publish(channel, &self.lock_queue, task_id, ttl).await?;
        Ok(match confirmation {
            Confirmation::Ack(None) => Acquire::Won,
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Acquire::Gone,
            Confirmation::Nack(None) | Confirmation::NotRequested => Acquire::Held,
        })
    }

    /// Writes `task_id` as the holder into the holder and release
    /// queues, expiring after `ttl` (see [`holder_record_ttl`]), on
    /// `channel` in confirm mode, each after declaring its queue again:
    /// the release that let this sender win may have deleted them after
    /// this sender's first declaration. `false` when the broker did not
    /// store one (write them again).
    pub async fn write_holder(
        &self,
        channel: &Channel,
        task_id: &str,
        ttl: Duration,
    ) -> Result<bool, lapin::Error> {
        for queue in [&self.release_queue, &self.holder_queue] {
            declare(channel, queue, Self::holder_arguments()).await?;
            let confirmation = publish(channel, queue, task_id, ttl).await?;
            if !matches!(confirmation, Confirmation::Ack(None)) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The holder's task id, read and put back. `None` when the record
    /// is not there right now (being written, read by someone else, gone
    /// with a release or its TTL). A missing holder queue closes
    /// `channel` and reads as `None`.
    pub async fn read_holder(&self, channel: &Channel) -> Result<Option<String>, lapin::Error> {
        let options = BasicGetOptions { no_ack: false };
        let got = match channel
            .basic_get(self.holder_queue.as_str().into(), options)
            .await
        {
            Ok(got) => got,
            Err(err) if is_not_found(&err) => return Ok(None),
            Err(err) => return Err(err),
        };
        let Some(message) = got else {
            return Ok(None);
        };
        let holder = String::from_utf8_lossy(&message.delivery.data).into_owned();
        channel
            .basic_reject(
                message.delivery.delivery_tag,
                BasicRejectOptions { requeue: true },
            )
            .await?;
        Ok(Some(holder))
    }

    /// Releases the key if its release record names `task_id`: deletes
    /// the holder and release queues, then purges the lock queue.
    /// `channel` is a plain channel the caller closes afterwards (a
    /// missing queue closes it).
    pub async fn release(&self, channel: &Channel, task_id: &str) -> Result<Release, lapin::Error> {
        let options = BasicGetOptions { no_ack: false };
        let got = match channel
            .basic_get(self.release_queue.as_str().into(), options)
            .await
        {
            Ok(got) => got,
            Err(err) if is_not_found(&err) => return Ok(Release::NoRecord),
            Err(err) => return Err(err),
        };
        let Some(message) = got else {
            return Ok(Release::NoRecord);
        };
        let holder = String::from_utf8_lossy(&message.delivery.data).into_owned();
        if holder != task_id {
            let requeue = BasicRejectOptions { requeue: true };
            channel
                .basic_reject(message.delivery.delivery_tag, requeue)
                .await?;
            return Ok(Release::HeldBy(holder));
        }
        for queue in [&self.holder_queue, &self.release_queue] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        match channel
            .queue_purge(
                self.lock_queue.as_str().into(),
                QueuePurgeOptions::default(),
            )
            .await
        {
            Ok(_) => Ok(Release::Released),
            Err(err) if is_not_found(&err) => Ok(Release::Released),
            Err(err) => Err(err),
        }
    }
}

/// How long the winner's holder record lives: the key's `ttl`, less the
/// time `elapsed` since just before the lock message was published, less
/// a margin (a tenth of the TTL, at most 1 s), so that the record expires
/// before the lock does. At least 1 ms.
pub fn holder_record_ttl(ttl: Duration, elapsed: Duration) -> Duration {
    let margin = (ttl / 10).min(MAX_MARGIN);
    ttl.saturating_sub(margin)
        .saturating_sub(elapsed)
        .max(Duration::from_millis(1))
}

async fn declare(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
) -> Result<(), lapin::Error> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await
        .map(|_| ())
}

/// Publishes a persistent message whose body is `task_id` to `queue`
/// through the default exchange, `mandatory`, expiring after `ttl`.
async fn publish(
    channel: &Channel,
    queue: &str,
    task_id: &str,
    ttl: Duration,
) -> Result<Confirmation, lapin::Error> {
    let millis = ttl.as_millis().max(1).to_string();
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_expiration(ShortString::from(millis))
        .with_correlation_id(ShortString::from(task_id.to_owned()));
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            options,
            task_id.as_bytes(),
            properties,
        )
        .await?
        .await
}

fn arguments(overflow: &str) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("classic".into()),
    );
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
    args.insert("x-overflow".into(), AMQPValue::LongString(overflow.into()));
    expire_unused(&mut args, UNIQUE_QUEUE_EXPIRES);
    args
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:@-".contains(c)
}

/// `key` as it appears in queue names: itself when it is short and plain,
/// else a readable prefix, `~` (never in a plain key) and a hash.
fn queue_key(key: &str) -> String {
    if key.len() <= MAX_PLAIN_KEY && key.chars().all(is_plain) {
        return key.to_owned();
    }
    let prefix: String = key
        .chars()
        .take(READABLE_PREFIX)
        .map(|c| if is_plain(c) { c } else { '_' })
        .collect();
    let digest = Sha256::digest(key.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}~{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MAX_UNIQUE_KEY_BYTES;

    #[test]
    fn plain_keys_are_kept_and_odd_or_long_ones_hashed_into_valid_names() {
        let plain = UniqueLock::new("report:42");
        assert_eq!(plain.lock_queue(), "celeriac.unique.lock.report:42");
        assert_eq!(plain.holder_queue(), "celeriac.unique.holder.report:42");
        assert_eq!(plain.release_queue(), "celeriac.unique.release.report:42");

        let odd = UniqueLock::new("report for Zoë/2026");
        let name = odd.lock_queue().strip_prefix(UNIQUE_LOCK_PREFIX).unwrap();
        let (prefix, hash) = name.split_once('~').unwrap();
        assert_eq!(prefix, "report_for_Zo__2026");
        assert_eq!(hash.len(), 32);
        assert_ne!(
            UniqueLock::new("report for Zoë/2026"),
            UniqueLock::new("report for Zoë/2027")
        );

        let longest = UniqueLock::new(&"é".repeat(MAX_UNIQUE_KEY_BYTES / 2));
        assert!(longest.holder_queue().len() <= 255);
        let plain_longest = UniqueLock::new(&"k".repeat(MAX_PLAIN_KEY));
        assert!(plain_longest.holder_queue().len() <= 255);
        assert!(
            UniqueLock::new(&"k".repeat(MAX_PLAIN_KEY + 1))
                .lock_queue()
                .contains('~')
        );
    }

    #[test]
    fn the_queues_of_different_keys_never_coincide() {
        for (a, b) in [("x", "holder.x"), ("x", "release.x"), ("x", "lock.x")] {
            let (a, b) = (UniqueLock::new(a), UniqueLock::new(b));
            for name in a.queues() {
                assert!(!b.queues().contains(&name), "{name}");
            }
        }
    }

    #[test]
    fn the_holder_record_expires_a_margin_before_the_lock() {
        let hour = Duration::from_secs(3600);
        assert_eq!(
            holder_record_ttl(hour, Duration::from_millis(20)),
            hour - Duration::from_millis(1020)
        );
        let short = Duration::from_secs(2);
        assert_eq!(
            holder_record_ttl(short, Duration::ZERO),
            Duration::from_millis(1800)
        );
        assert_eq!(
            holder_record_ttl(short, hour),
            Duration::from_millis(1),
            "never zero: a record that expires at once is still written"
        );
    }
}
