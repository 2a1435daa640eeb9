//! Map a task over many arguments and gather the results: Celery's group,
//! Django Q's `async_iter`.

use std::time::Duration;

use celeriac_shared::{CallError, Task};
use futures_util::stream::{FuturesUnordered, StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::{Error, Producer, TaskHandle};

/// How many sends of a batch are in flight at once.
const SEND_CONCURRENCY: usize = 256;

/// The handles of a batch of sent tasks, in input order.
#[derive(Debug)]
pub struct Group<O> {
    handles: Vec<TaskHandle<O>>,
}

impl<O: DeserializeOwned + Send + 'static> Group<O> {
    pub(crate) async fn send<T: Task<Output = O>>(
        producer: &Producer,
        args: impl IntoIterator<Item = T::Args>,
    ) -> Result<Self, Error> {
        let handles = futures_util::stream::iter(args)
            .map(|args| {
                let producer = producer.clone();
                async move { producer.send::<T>(&args).await }
            })
            .buffered(SEND_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(Self { handles })
    }

    /// A group of handles already sent.
    pub(crate) fn from_handles(handles: Vec<TaskHandle<O>>) -> Self {
        Self { handles }
    }

    /// The task ids, in input order.
    pub fn ids(&self) -> Vec<&str> {
        self.handles.iter().map(TaskHandle::id).collect()
    }

    /// How many tasks the group has.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Whether the group is empty.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// Yields `(input index, result)` as each task completes, all within
    /// `timeout` from now; a failure or timeout of one item does not affect
    /// the others.
    pub fn as_completed(
        self,
        timeout: Duration,
    ) -> impl futures_util::Stream<Item = (usize, Result<O, CallError>)> {
        let deadline = Instant::now() + timeout;
        self.handles
            .into_iter()
            .enumerate()
            .map(|(index, handle)| async move {
                let left = deadline.saturating_duration_since(Instant::now());
                (index, handle.wait(left).await)
            })
            .collect::<FuturesUnordered<_>>()
    }

    /// Waits for every result (within `timeout` in all) and returns them
    /// in input order, calling `progress(done, total)` as each completes.
    pub async fn join_with_progress(
        self,
        timeout: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> Vec<Result<O, CallError>> {
        let total = self.len();
        let mut results: Vec<Option<Result<O, CallError>>> = (0..total).map(|_| None).collect();
        let mut completed = std::pin::pin!(self.as_completed(timeout));
        let mut done = 0;
        while let Some((index, result)) = completed.next().await {
            results[index] = Some(result);
            done += 1;
            progress(done, total);
        }
        results.into_iter().flatten().collect()
    }

    /// Waits for every result and returns them in input order.
    pub async fn join(self, timeout: Duration) -> Vec<Result<O, CallError>> {
        self.join_with_progress(timeout, |_, _| {}).await
    }
}
