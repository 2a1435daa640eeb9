//! When the producer's connection (and so its exclusive reply queue) is
//! lost, waiting calls fail at once with a clear error instead of hanging,
//! and the next call works on a fresh connection.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{CallError, Router};
use celeriac_tests::{
    GUARD, TestWorker, close_connections_named, delete_queues, named_producer, unique,
};

#[tokio::test(flavor = "multi_thread")]
async fn waiting_calls_fail_promptly_when_the_reply_queue_is_lost() {
    let queue = unique("reply-loss");
    let (producer, connection) = named_producer(Router::new(vec![], &queue)).await.unwrap();
    let handle = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    let id = handle.id().to_owned();

    assert_eq!(close_connections_named(&connection).unwrap(), 1);
    let started = tokio::time::Instant::now();
    match handle.wait(GUARD).await {
        Err(CallError::ResultLost { task_id, reason }) => {
            assert_eq!(task_id, id);
            assert!(reason.to_string().contains("reply"), "{reason}");
        }
        other => panic!("expected ResultLost, got {other:?}"),
    }
    assert!(
        started.elapsed() < GUARD / 2,
        "failed promptly, not by timing out"
    );

    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    let sum = producer
        .call::<Add>(&AddArgs { x: 20, y: 22 }, GUARD)
        .await
        .unwrap();
    assert_eq!(
        sum, 42,
        "the producer reconnected and declared a new reply queue"
    );

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
