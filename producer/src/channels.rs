//! A small set of confirm-mode channels shared by concurrent sends.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use celeriac_shared::BrokerUrl;
use lapin::Channel;
use lapin::options::ConfirmSelectOptions;
use tokio::sync::Mutex;

use crate::Error;
use crate::broker_manager::BrokerManager;

/// The producer's connection pool.
pub(crate) type Pool = deadpool::managed::Pool<BrokerManager>;

/// Round-robins publishes over a fixed number of channel slots, each
/// (re)opened lazily in confirm mode on a pooled connection.
///
/// lapin lets many tasks publish on one channel at once, each awaiting its
/// own confirm, so a handful of channels carries thousands of concurrent
/// sends with their confirms pipelined.
pub(crate) struct Channels {
    /// Where connections come from; a broken one is replaced by the pool,
    /// on the broker's next address.
    pool: Pool,
    /// For error messages: every address, redacted.
    url: BrokerUrl,
    /// One open channel per slot, or `None` before first use and after it
    /// was found closed.
    slots: Vec<Mutex<Option<Channel>>>,
    /// The next slot to use.
    next: AtomicUsize,
    /// How long opening a channel may take.
    open_timeout: Duration,
}

impl Channels {
    pub(crate) fn new(pool: Pool, url: BrokerUrl, count: usize, open_timeout: Duration) -> Self {
        Self {
            pool,
            url,
            slots: (0..count.max(1)).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
            open_timeout,
        }
    }

    /// An open confirm-mode channel.
    pub(crate) async fn get(&self) -> Result<Channel, Error> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let mut slot = self.slots[index].lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.open().await?;
        let select = channel.confirm_select(ConfirmSelectOptions::default());
        tokio::time::timeout(self.open_timeout, select)
            .await
            .map_err(|_| self.stalled("confirm.select"))?
            .map_err(Error::amqp("confirm.select"))?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// A fresh plain channel, for declarations and passive queries that may
    /// close it with a channel error.
    pub(crate) async fn open(&self) -> Result<Channel, Error> {
        let connection = self.pool.get().await.map_err(|source| Error::Connect {
            url: self.url.to_string(),
            source,
        })?;
        tokio::time::timeout(self.open_timeout, connection.create_channel())
            .await
            .map_err(|_| self.stalled("channel.open"))?
            .map_err(Error::amqp("channel.open"))
    }

    /// Closes `channel`, which the broker nacked a publish on, so that the
    /// next send on its slot opens a fresh one. RabbitMQ 3.10 was seen to
    /// nack every later publish of a channel that had published to a
    /// quorum queue whose leader was lost, for minutes, while a fresh
    /// channel on the same connection published to the new leader at once.
    /// Sends in flight on the channel fail as on a lost channel, and are
    /// tried again.
    pub(crate) fn retire(channel: &Channel) {
        let channel = channel.clone();
        tokio::spawn(async move {
            let _ = channel
                .close(200, "celeriac: a publish was nacked; reopening".into())
                .await;
        });
    }

    fn stalled(&self, operation: &'static str) -> Error {
        Error::Stalled {
            operation,
            after: self.open_timeout,
        }
    }
}
