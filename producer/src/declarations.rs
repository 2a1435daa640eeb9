//! What a producer has declared, so that each queue is declared once, on
//! its first use, however many first sends race for it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};

use celeriac_shared::{DelayTopology, QueueDef};
use tokio::sync::{Mutex, OnceCell};
use tracing::debug;

use crate::Error;
use crate::channels::Channels;

/// The producer's declaration cache.
#[derive(Default)]
pub(crate) struct Declarations {
    /// Queues declared (or being declared): concurrent first sends to a
    /// queue wait for its one declaration.
    queues: SyncMutex<HashMap<String, Arc<OnceCell<()>>>>,
    /// Whether the delay topology was declared, and the queues already
    /// bound to its delivery exchange.
    delayed: Mutex<(bool, HashSet<String>)>,
}

impl Declarations {
    /// Declares `queue` on its first use.
    pub(crate) async fn ensure_queue(
        &self,
        channels: &Channels,
        queue: &QueueDef,
    ) -> Result<(), Error> {
        let cell = {
            let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
            match queues.get(&queue.name) {
                Some(cell) => Arc::clone(cell),
                None => Arc::clone(queues.entry(queue.name.clone()).or_default()),
            }
        };
        cell.get_or_try_init(|| declare(channels, queue)).await?;
        Ok(())
    }

    /// Declares the delay topology once and binds `queue` to its delivery
    /// exchange once.
    pub(crate) async fn ensure_delay(
        &self,
        channels: &Channels,
        delay: &DelayTopology,
        queue: &str,
    ) -> Result<(), Error> {
        let mut delayed = self.delayed.lock().await;
        if delayed.0 && delayed.1.contains(queue) {
            return Ok(());
        }
        let channel = channels.open().await?;
        if !delayed.0 {
            delay.declare(&channel).await?;
            delayed.0 = true;
        }
        DelayTopology::bind_queue(&channel, queue).await?;
        let _ = channel.close(200, "OK".into()).await;
        delayed.1.insert(queue.to_owned());
        Ok(())
    }

    /// Forgets every declaration, so that the next send declares again:
    /// after the broker lost its definitions (a new broker without its
    /// data, a queue deleted by hand).
    pub(crate) async fn forget(&self) {
        self.queues
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        *self.delayed.lock().await = (false, HashSet::new());
    }
}

/// Declares `queue`, its exchange and binding, on a channel of its own
/// (a refused declaration closes the channel).
pub(crate) async fn declare(channels: &Channels, queue: &QueueDef) -> Result<(), Error> {
    let channel = channels.open().await?;
    queue.declare(&channel).await?;
    let _ = channel.close(200, "OK".into()).await;
    debug!(queue = %queue.name, "declared queue");
    Ok(())
}
