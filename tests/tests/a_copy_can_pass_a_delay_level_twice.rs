//! A message that went through the delay ladder once can go through the
//! same levels again: a retry (or a postponed or rate-limited copy) does
//! not carry the `x-death` header of its earlier trip, which would make
//! RabbitMQ's dead-letter cycle detection drop it silently.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_shared::Task;
use celeriac_tests::{GUARD, TestWorker, delete_queues, producer_for, unique};
use celeriac_worker::{Registry, TaskContext, TaskError};
use serde::{Deserialize, Serialize};

/// Fails twice, asking to be retried after 1 s and then after 3 s.
struct TwiceRetried;

#[derive(Serialize, Deserialize)]
struct NoArgs {}

impl Task for TwiceRetried {
    const NAME: &'static str = "ladder.twice_retried";
    type Args = NoArgs;
    type Output = u32;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_through_a_level_the_previous_retry_passed_arrives() {
    let queue = unique("ladder-twice");
    let mut registry = Registry::new();
    registry.register::<TwiceRetried, _, _>(|_: NoArgs, ctx: TaskContext| async move {
        // 1 s waits in level 0; 3 s in level 1, then level 0 again.
        match ctx.retries() {
            0 => Err(TaskError::retry_after("first", Duration::from_secs(1))),
            1 => Err(TaskError::retry_after("second", Duration::from_secs(3))),
            retries => Ok(retries),
        }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer.send::<TwiceRetried>(&NoArgs {}).await.unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 2);

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
