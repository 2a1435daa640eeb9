//! A dead-letter queue declared with a retention keeps at most its
//! maximum length, and the worker's declaration agrees with itself across
//! restarts.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Fail, FailArgs};
use celeriac_shared::{DeadLetterRetention, DeadLetterTopology, Topology};
use celeriac_tests::{
    GUARD, TestWorker, broker_url, channel, delete_queues, drain_task_ids, message_count,
    producer_for, unique,
};
use celeriac_worker::{Worker, WorkerConfig};

fn config(queue: &str, retention: DeadLetterRetention) -> WorkerConfig {
    WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.to_owned()],
        concurrency: 1,
        topology: Topology::default().dead_letter_retention_default(retention),
        ..WorkerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_queue_keeps_at_most_its_maximum_length() {
    let queue = unique("dlq-retention");
    let retention = DeadLetterRetention {
        max_age: Some(Duration::from_secs(180 * 24 * 3600)),
        max_length: Some(3),
    };
    let registry = celeriac_demo::registry;
    let worker = TestWorker::start_with(config(&queue, retention), registry())
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let mut ids = Vec::new();
    for n in 0..5 {
        let args = FailArgs {
            message: format!("fail {n}"),
        };
        let handle = producer.send::<Fail>(&args).await.unwrap();
        ids.push(handle.id().to_owned());
        assert!(handle.wait(GUARD).await.is_err());
    }
    worker.stop().await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let dead = DeadLetterTopology::queue_name(&queue);
    assert_eq!(
        message_count(&channel, &dead).await.unwrap(),
        3,
        "the oldest were dropped"
    );

    let again = TestWorker::start_with(config(&queue, retention), registry())
        .await
        .unwrap();
    again.stop().await.unwrap();
    let unlimited =
        Worker::with_registry(config(&queue, DeadLetterRetention::UNLIMITED), registry());
    let err = tokio::time::timeout(GUARD, unlimited.run(std::future::pending()))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        format!("{err:?}").contains("PRECONDITION_FAILED"),
        "{err:?}"
    );

    assert_eq!(
        drain_task_ids(&channel, &dead).await.unwrap(),
        ids[2..].to_vec()
    );
    delete_queues(&[&queue]).await;
}
