//! A handle on a sent task's result.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use celeriac_shared::{CallError, ResultLost, decode_output};
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

use crate::replies::{Delivered, Pending};

/// A sent task, confirmed by the broker. [`TaskHandle::wait`] gets its
/// result.
///
/// Dropping the handle gives up on the result: a result that arrives later
/// is discarded, so abandoned handles hold no memory.
#[must_use = "a dropped handle discards the task's result"]
pub struct TaskHandle<O> {
    task_id: String,
    task: String,
    /// The receiving end of the result slot; `None` for `ignore_result`.
    receiver: Option<oneshot::Receiver<Delivered>>,
    /// To release the slot (registered under this token) on drop.
    pending: Option<(Arc<Pending>, u64)>,
    /// Whether the send found its uniqueness key held by task `task_id`
    /// and published nothing.
    duplicate: bool,
    output: PhantomData<fn() -> O>,
}

impl<O: DeserializeOwned> TaskHandle<O> {
    pub(crate) fn new(
        task_id: String,
        task: String,
        slot: Option<(oneshot::Receiver<Delivered>, Arc<Pending>, u64)>,
    ) -> Self {
        let (receiver, pending) = match slot {
            Some((receiver, pending, token)) => (Some(receiver), Some((pending, token))),
            None => (None, None),
        };
        Self {
            task_id,
            task,
            receiver,
            pending,
            duplicate: false,
            output: PhantomData,
        }
    }

    /// The handle of a send that found its uniqueness key held by task
    /// `holder`: nothing was published.
    pub(crate) fn duplicate(holder: String, task: String) -> Self {
        Self {
            task_id: holder,
            task,
            receiver: None,
            pending: None,
            duplicate: true,
            output: PhantomData,
        }
    }

    /// Points the handle's slot at reply queue `generation` (its send is
    /// tried again after a reconnect).
    pub(crate) fn retarget(&self, generation: u64) {
        if let Some((pending, token)) = &self.pending {
            pending.retarget(&self.task_id, *token, generation);
        }
    }

    /// The task id: for a [duplicate](TaskHandle::is_duplicate), the id
    /// of the task that holds the uniqueness key.
    pub fn id(&self) -> &str {
        &self.task_id
    }

    /// Whether the send carried a uniqueness key that another task held:
    /// nothing was published, and [`TaskHandle::id`] is the holder's id.
    /// Such a handle cannot wait for the holder's result (it goes to the
    /// holder's caller): [`TaskHandle::wait`] returns
    /// [`CallError::Duplicate`] at once.
    pub fn is_duplicate(&self) -> bool {
        self.duplicate
    }

    /// Waits up to `timeout` for the result: the typed output, the worker's
    /// failure ([`CallError::Failed`]), [`CallError::Timeout`] naming the
    /// task id, or [`CallError::ResultLost`] if the reply queue went away.
    ///
    /// With a named reply queue
    /// ([`ProducerConfig::reply_queue`](crate::ProducerConfig::reply_queue())),
    /// the result reaches this handle only if it comes to this replica's
    /// [`ResultListener`](crate::ResultListener); the replicas share the
    /// results out, so rely on the listener's handler there, and keep the
    /// default exclusive queue for call-and-wait.
    pub async fn wait(mut self, timeout: Duration) -> Result<O, CallError> {
        let task_id = self.task_id.clone();
        if self.duplicate {
            return Err(CallError::Duplicate { task_id });
        }
        let Some(receiver) = self.receiver.take() else {
            return Err(CallError::ResultIgnored { task_id });
        };
        let delivered = match tokio::time::timeout(timeout, receiver).await {
            Err(_) => return Err(CallError::Timeout { task_id, timeout }),
            Ok(Err(_)) => Err(ResultLost::ProducerDropped),
            Ok(Ok(delivered)) => delivered,
        };
        let message = delivered.map_err(|reason| CallError::ResultLost {
            task_id: task_id.clone(),
            reason,
        })?;
        match message.outcome() {
            Some(Ok(raw)) => decode_output(&self.task, raw),
            Some(Err(failure)) => Err(CallError::Failed { task_id, failure }),
            None => unreachable!("only final states are delivered"),
        }
    }
}

impl<O> Drop for TaskHandle<O> {
    fn drop(&mut self) {
        if let Some((pending, token)) = &self.pending {
            pending.forget(&self.task_id, *token);
        }
    }
}

impl<O> std::fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskHandle")
            .field("task_id", &self.task_id)
            .field("task", &self.task)
            .field("awaits_result", &self.receiver.is_some())
            .field("duplicate", &self.duplicate)
            .finish()
    }
}
