//! Failures decide a message's fate: retries go through the broker-side
//! delay with growing delays, permanent failures and exhausted retries end
//! in the dead-letter queue with the error and the original message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Fail, FailArgs, Flaky, FlakyArgs};
use celeriac_shared::{CallError, DeadLetter, DeadLetterTopology, Task, TaskMessage};
use celeriac_tests::{
    GUARD, TestWorker, channel, delete_queues, next_delivery, producer_for, unique,
};
use celeriac_worker::{Backoff, Registry, RetryPolicy, TaskError, TaskOptions};
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use tokio::sync::mpsc;
use tokio::time::Instant;

struct AlwaysFails;

impl Task for AlwaysFails {
    const NAME: &'static str = "test.always_fails";
    type Args = (String,);
    type Output = ();
}

/// The next dead letter of `queue`, with its decoded task message.
async fn next_dead_letter(consumer: &mut lapin::Consumer) -> (DeadLetter, TaskMessage, Vec<u8>) {
    let delivery = next_delivery(consumer).await.unwrap();
    let letter = DeadLetter::from_headers(delivery.properties.headers().as_ref().unwrap()).unwrap();
    let message = TaskMessage::decode(&delivery.properties, &delivery.data, 1 << 20).unwrap();
    (letter, message, delivery.data)
}

async fn dead_letters(channel: &lapin::Channel, queue: &str) -> lapin::Consumer {
    let dead = DeadLetterTopology::queue_name(queue);
    let options = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    channel
        .basic_consume(
            dead.as_str().into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flaky_task_is_retried_through_the_broker_until_it_succeeds() {
    let queue = unique("flaky");
    let (seen, mut attempts) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Flaky, _, _>(move |args: FlakyArgs, ctx| {
        seen.send((ctx.retries(), Instant::now())).unwrap();
        celeriac_demo::handlers::flaky(args, ctx)
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let sent = Instant::now();
    let attempts_made = producer
        .call::<Flaky>(&FlakyArgs { failures: 2 }, GUARD)
        .await
        .unwrap();
    assert_eq!(attempts_made, 3);
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(attempts.recv().await.unwrap());
    }
    let retries: Vec<u32> = runs.iter().map(|r| r.0).collect();
    assert_eq!(retries, [0, 1, 2], "the retries header counts");
    for pair in runs.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap >= Duration::from_millis(900),
            "each retry waited about a second: {gap:?}"
        );
    }
    assert!(sent.elapsed() >= Duration::from_secs(2));
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backoff_delays_grow_between_retries() {
    let queue = unique("backoff");
    let (seen, mut attempts) = mpsc::unbounded_channel();
    let policy = RetryPolicy {
        max_retries: 2,
        backoff: options_backoff(),
        retry_unexpected: true,
    };
    let options = TaskOptions {
        retry: Some(policy),
        time_limit: None,
        soft_time_limit: None,
    };
    let mut registry = Registry::new();
    registry.register_with::<AlwaysFails, _, _>(options, move |_args, ctx| {
        seen.send((ctx.retries(), Instant::now())).unwrap();
        async { Err::<(), _>(TaskError::retry("still broken")) }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let mut dead = dead_letters(&channel, &queue).await;
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer
        .send::<AlwaysFails>(&("payload".to_owned(),))
        .await
        .unwrap();
    let failed = handle.wait(GUARD).await.unwrap_err();
    assert_eq!(failed.failure().unwrap().exc_type, "Retry");
    let (letter, message, _) = next_dead_letter(&mut dead).await;
    assert_eq!(letter.reason, "max retries exceeded");
    assert_eq!(letter.retries, 2);
    assert_eq!(
        message.args,
        vec![serde_json::json!("payload")],
        "original arguments intact"
    );
    let mut runs = Vec::new();
    for _ in 0..3 {
        let run = tokio::time::timeout(GUARD, attempts.recv()).await.unwrap();
        runs.push(run.unwrap());
    }
    // Each attempt waited at least the shortest delay its retry count
    // allows; the policy's bounds grow per attempt (its unit tests).
    let backoff = &options_backoff();
    for (retry, pair) in runs.windows(2).enumerate() {
        assert_eq!(pair[1].0, pair[0].0 + 1, "attempts in order");
        let gap = pair[1].1 - pair[0].1;
        let shortest = *backoff.bounds(retry as u32).start();
        assert!(
            gap + Duration::from_millis(100) >= shortest,
            "retry {retry}: {gap:?}"
        );
    }
    assert!(backoff.bounds(1).end() > backoff.bounds(0).end());
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_always_failing_task_ends_in_the_dead_letter_queue_with_its_error() {
    let queue = unique("always-fails");
    let policy = RetryPolicy {
        max_retries: 2,
        backoff: Backoff::Fixed(Duration::from_secs(1)),
        retry_unexpected: true,
    };
    let options = TaskOptions {
        retry: Some(policy),
        time_limit: None,
        soft_time_limit: None,
    };
    let mut registry = Registry::new();
    registry.register_with::<AlwaysFails, _, _>(options, |args: (String,), _ctx| async move {
        let io = std::io::Error::other(format!("disk full while writing {}", args.0));
        Err::<(), _>(TaskError::from_error(&io))
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let mut dead = dead_letters(&channel, &queue).await;
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer
        .send::<AlwaysFails>(&("report.pdf".to_owned(),))
        .await
        .unwrap();
    let id = handle.id().to_owned();
    let err = handle.wait(GUARD).await.unwrap_err();
    assert!(matches!(err, CallError::Failed { .. }), "{err:?}");
    let (letter, message, _) = next_dead_letter(&mut dead).await;
    assert_eq!(message.id(), id);
    assert_eq!(letter.reason, "max retries exceeded");
    assert_eq!(letter.error_type, "TaskError");
    assert!(
        letter
            .error_message
            .contains("disk full while writing report.pdf")
    );
    assert_eq!(letter.retries, 2);
    assert_eq!(letter.original_queue, queue);
    assert!(letter.worker.starts_with("celeriac-worker-"));
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejecting_task_goes_to_the_dead_letter_queue_at_once() {
    let queue = unique("rejects");
    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let mut dead = dead_letters(&channel, &queue).await;
    let producer = producer_for(&queue).await.unwrap();

    let handle = producer
        .send::<Fail>(&FailArgs {
            message: "bad input".into(),
        })
        .await
        .unwrap();
    let err = handle.wait(GUARD).await.unwrap_err();
    assert_eq!(err.failure().unwrap().message, "bad input");
    let (letter, message, _) = next_dead_letter(&mut dead).await;
    assert_eq!((letter.reason.as_str(), letter.retries), ("rejected", 0));
    assert_eq!(message.headers.retries, 0, "never retried");
    assert_eq!(letter.error_message, "bad input");
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_never_expires_even_if_its_task_had_an_expiry() {
    let queue = unique("dead-expiry");
    let worker = TestWorker::start(&[&queue], celeriac_demo::registry())
        .await
        .unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let mut dead = dead_letters(&channel, &queue).await;
    let producer = producer_for(&queue).await.unwrap();
    let options = celeriac_shared::SendOptions {
        expires: Some(Duration::from_secs(60)),
        ..celeriac_shared::SendOptions::default()
    };
    let handle = producer
        .send_with::<Fail>(
            &FailArgs {
                message: "no".into(),
            },
            options,
        )
        .await
        .unwrap();
    handle.wait(GUARD).await.unwrap_err();
    let letter = next_delivery(&mut dead).await.unwrap();
    assert_eq!(
        letter.properties.expiration(),
        &None,
        "the broker must not drop it"
    );
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

/// The backoff of `backoff_delays_grow_between_retries`.
fn options_backoff() -> Backoff {
    Backoff::Exponential {
        min: Duration::from_secs(1),
        max: Duration::from_secs(4),
    }
}
