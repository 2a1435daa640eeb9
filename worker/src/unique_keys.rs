//! Releasing unique tasks' keys: the worker's side of
//! [`UniqueLock`]. *Whether* a delivery releases its key is decided in
//! `plan.rs` ([`releases_key`](crate::plan::releases_key)); this only
//! carries it out.

use std::sync::Arc;
use std::time::Duration;

use celeriac_shared::{Release, UniqueLock};
use lapin::Connection;
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// How long one release may take before it is given up (the key's TTL
/// then releases it).
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a release looks again when the holder record is not there:
/// a sender may be reading it at this moment.
const NO_RECORD_LOOKS: u32 = 10;

/// The pause between two such looks.
const NO_RECORD_PAUSE: Duration = Duration::from_millis(20);

/// Releases uniqueness keys on channels of their own.
pub(crate) struct UniqueKeys {
    /// Opens a short-lived channel per release: a missing queue closes
    /// it, never the publisher's.
    connection: Arc<Connection>,
}

impl UniqueKeys {
    /// Releases keys over `connection`.
    pub(crate) fn new(connection: Arc<Connection>) -> Self {
        Self { connection }
    }

    /// Releases `key` if task `task_id` holds it. Never fails the task:
    /// a key that cannot be released now is released by its TTL, and the
    /// reason is logged.
    pub(crate) async fn release(&self, key: &str, task_id: &str) {
        let lock = UniqueLock::new(key);
        let deadline = Instant::now() + RELEASE_TIMEOUT;
        let mut looks = 1;
        loop {
            let released = tokio::time::timeout_at(deadline, self.release_once(&lock, task_id));
            match released.await {
                Ok(Ok(Release::Released)) => {
                    debug!(task_id, key, "uniqueness key released");
                    return;
                }
                Ok(Ok(Release::HeldBy(holder))) => {
                    info!(task_id, key, holder = %holder, "uniqueness key not released: its TTL ran out and task {holder} holds it now");
                    return;
                }
                Ok(Ok(Release::NoRecord)) if looks < NO_RECORD_LOOKS => looks += 1,
                Ok(Ok(Release::NoRecord)) => {
                    debug!(
                        task_id,
                        key, "uniqueness key not held (its TTL ran out, or it was released)"
                    );
                    return;
                }
                Ok(Err(err)) => {
                    warn!(task_id, key, error = %err, "uniqueness key not released; its TTL will release it");
                    return;
                }
                Err(_) => {
                    warn!(task_id, key, timeout = ?RELEASE_TIMEOUT, "uniqueness key not released in time; its TTL will release it");
                    return;
                }
            }
            tokio::time::sleep(NO_RECORD_PAUSE).await;
        }
    }

    async fn release_once(
        &self,
        lock: &UniqueLock,
        task_id: &str,
    ) -> Result<Release, lapin::Error> {
        let channel = self.connection.create_channel().await?;
        let released = lock.release(&channel, task_id).await;
        if channel.status().connected() {
            let _ = channel.close(200, "uniqueness key released".into()).await;
        }
        released
    }
}
