//! A task over its time limit is cancelled and counts as a failure; a task
//! received after its expiry is not run and its caller gets REVOKED.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs, Sleep, SleepArgs};
use celeriac_shared::{DeadLetterTopology, SendOptions, TaskMessage, TaskState};
use celeriac_tests::{
    GUARD, TestWorker, channel, consume, declare_plain_queue, delete_queues, next_delivery,
    producer_for, publish_raw, unique,
};
use celeriac_worker::{Registry, RetryPolicy, TaskError, TaskOptions};
use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;

#[tokio::test(flavor = "multi_thread")]
async fn a_task_over_its_time_limit_is_cancelled_and_fails() {
    let queue = unique("time-limit");
    let mut registry = Registry::new();
    let options = TaskOptions {
        retry: Some(RetryPolicy::never()),
        time_limit: Some(Duration::from_millis(300)),
        soft_time_limit: None,
    };
    registry.register_with::<Sleep, _, _>(options, celeriac_demo::handlers::sleep);
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let started = Instant::now();
    let err = producer
        .call::<Sleep>(&SleepArgs { seconds: 60.0 }, GUARD)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cancelled, not waited out"
    );
    let failure = err.failure().unwrap();
    assert_eq!(failure.exc_type, "TimeLimitExceeded");

    // The caller's `timelimit` header applies too.
    let mut registry = Registry::new();
    registry.register_with::<Sleep, _, _>(
        TaskOptions {
            retry: Some(RetryPolicy::never()),
            time_limit: None,
            soft_time_limit: None,
        },
        celeriac_demo::handlers::sleep,
    );
    worker.stop().await.unwrap();
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let options = SendOptions {
        time_limit: Some(Duration::from_millis(200)),
        ..SendOptions::default()
    };
    let handle = producer
        .send_with::<Sleep>(&SleepArgs { seconds: 60.0 }, options)
        .await
        .unwrap();
    let err = handle.wait(GUARD).await.unwrap_err();
    assert_eq!(err.failure().unwrap().exc_type, "TimeLimitExceeded");

    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_task_is_not_run_and_its_caller_gets_revoked() {
    let queue = unique("expired");
    let replies = unique("expired-replies");
    let (seen, mut runs) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, ctx| {
        seen.send(ctx.id().to_owned()).unwrap();
        async move { Ok::<i64, TaskError>(args.x + args.y) }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    declare_plain_queue(&channel, &replies).await.unwrap();

    let mut expired = TaskMessage::new("demo.add", vec![json!(1), json!(2)], Default::default());
    expired.headers.expires = Some((Utc::now() - chrono::Duration::seconds(5)).fixed_offset());
    expired.reply_to = Some(replies.clone());
    let (body, properties) = expired.encode(Utc::now()).unwrap();
    // No AMQP expiration, as if the broker had delivered it just in time.
    let mut properties = properties;
    properties = lapin::BasicProperties::default()
        .with_headers(properties.headers().clone().unwrap())
        .with_correlation_id(properties.correlation_id().clone().unwrap())
        .with_reply_to(replies.as_str().into())
        .with_content_type("application/json".into());
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();

    let mut results = consume(&channel, &replies).await.unwrap();
    let reply = next_delivery(&mut results).await.unwrap();
    let result = celeriac_shared::ResultMessage::decode(&reply.data).unwrap();
    assert_eq!(result.status, TaskState::Revoked);
    assert_eq!(result.task_id, expired.id());
    let failure = result.outcome().unwrap().unwrap_err();
    assert_eq!(failure.exc_type, "TaskRevokedError");

    // A following task runs; the expired one never did.
    let producer = producer_for(&queue).await.unwrap();
    assert_eq!(
        producer
            .call::<Add>(&AddArgs { x: 2, y: 2 }, GUARD)
            .await
            .unwrap(),
        4
    );
    let ran = runs.recv().await.unwrap();
    assert_ne!(ran, expired.id(), "the expired task did not run");
    assert!(runs.try_recv().is_err());

    worker.stop().await.unwrap();
    delete_queues(&[&queue, &replies]).await;
}
