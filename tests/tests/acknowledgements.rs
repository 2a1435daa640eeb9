//! A worker acknowledges deliveries in batches (`basic.ack` with
//! `multiple`), but never one whose handler has not finished, and a long
//! task never holds the prefetch slots of short tasks that finished after
//! it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Sleep, SleepArgs};
use celeriac_shared::SendOptions;
use celeriac_tests::{
    GUARD, TestWorker, broker_url, channel, delete_queues, message_count, producer_for, unique,
    within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use tokio::sync::{Notify, mpsc};

/// `demo.sleep` blocks until `release` is notified (whatever its
/// argument); `demo.add` adds.
fn registry(started: mpsc::UnboundedSender<()>, release: Arc<Notify>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Sleep, _, _>(move |args: SleepArgs, _ctx| {
        started.send(()).unwrap();
        let release = Arc::clone(&release);
        async move {
            release.notified().await;
            Ok::<f64, TaskError>(args.seconds)
        }
    });
    registry.register::<Add, _, _>(|args: AddArgs, _ctx| async move {
        Ok::<i64, TaskError>(args.x + args.y)
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn short_tasks_behind_a_long_one_are_acknowledged_and_free_their_prefetch_slots() {
    let queue = unique("acks");
    let (started, mut starts) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    // Two slots: the long task takes one; every short task must free the
    // other for the next one to be delivered at all.
    let config = WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.clone()],
        concurrency: 2,
        prefetch: Some(2),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry(started, Arc::clone(&release)))
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let long = producer
        .send::<Sleep>(&SleepArgs { seconds: 0.0 })
        .await
        .unwrap();
    within("the task to start", starts.recv()).await.unwrap();
    for y in 0..20 {
        let sum = producer
            .call::<Add>(&AddArgs { x: 1, y }, GUARD)
            .await
            .unwrap();
        assert_eq!(sum, 1 + y);
    }
    release.notify_one();
    assert_eq!(long.wait(GUARD).await.unwrap(), 0.0);
    worker.stop().await.unwrap();
    let (connection, channel) = channel().await.unwrap();
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 0);
    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_of_quick_tasks_is_acknowledged_without_covering_a_running_one() {
    let queue = unique("acks-batch");
    let (started, mut starts) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let config = WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.clone()],
        concurrency: 64,
        grace_period: Duration::from_millis(200),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry(started, Arc::clone(&release)))
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    // The long task is delivered first, so every quick one's tag is above
    // it: a careless multiple ack for a quick one would cover it too.
    let long = producer
        .send_with::<Sleep>(&SleepArgs { seconds: 0.0 }, SendOptions::ignore_result())
        .await
        .unwrap();
    within("the task to start", starts.recv()).await.unwrap();
    let group = producer
        .map::<Add>((0..200).map(|y| AddArgs { x: 0, y }))
        .await
        .unwrap();
    let sums = group.join(GUARD).await;
    assert_eq!(sums.len(), 200);
    assert!(sums.iter().all(Result::is_ok));
    // Stop without releasing the long task: after the short grace period
    // its message must still be unacknowledged, so the broker puts it
    // back in the queue when the worker's connection closes.
    worker.stop().await.unwrap();
    drop(long);
    let (connection, channel) = channel().await.unwrap();
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if message_count(&channel, &queue).await.unwrap() == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running task's message did not come back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}
