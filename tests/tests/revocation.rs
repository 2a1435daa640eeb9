//! Revocations that stick: a revoked task never runs, whether it was
//! revoked before any worker started, while it waited in a countdown, or
//! (with `terminate`) while it ran; a worker started after the revoke
//! skips it too; Celery's own `app.control.revoke` works the same way. The
//! caller gets `REVOKED`. Each test runs in its own vhost (the revocation
//! stream has a fixed name).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{
    BrokerUrl, CallError, DEFAULT_QUEUE, REVOCATION_STREAM, Revocation, SendOptions, Task,
    check_confirm, declare_revocation_stream,
};
use celeriac_tests::{GUARD, Python, TestWorker, Vhost, channel_on, init_logging, within};
use celeriac_worker::{Registry, TaskContext, TaskError, WorkerConfig};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use tokio::sync::mpsc;

fn config(vhost: &Vhost) -> WorkerConfig {
    WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        ..WorkerConfig::default()
    }
}

async fn producer_in(vhost: &Vhost) -> Producer {
    let config = ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// Appends a revocation to the vhost's stream, as `celeriac revoke` does.
async fn revoke(url: &BrokerUrl, ids: &[&str], terminate: bool) {
    let (connection, channel) = channel_on(url).await.unwrap();
    declare_revocation_stream(&channel).await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let ids = ids.iter().map(|id| (*id).to_owned()).collect();
    let (body, properties) = Revocation::new(ids, terminate).encode().unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            REVOCATION_STREAM.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .unwrap();
    check_confirm(confirm.await.unwrap()).unwrap();
    celeriac_tests::close(&connection).await;
}

fn assert_revoked<T: std::fmt::Debug>(result: Result<T, CallError>) {
    match result {
        Err(CallError::Failed { failure, .. }) => {
            assert_eq!(failure.exc_type, "TaskRevokedError", "{failure:?}")
        }
        other => panic!("expected REVOKED, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_revoked_before_any_worker_started_never_runs() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_in(&vhost).await;
    let handle = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    revoke(&vhost.url(), &[handle.id()], false).await;
    let worker = TestWorker::start_with(config(&vhost), celeriac_demo::registry())
        .await
        .unwrap();
    assert_revoked(handle.wait(GUARD).await);
    let other = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    assert_eq!(other.wait(GUARD).await.unwrap(), 3, "other tasks still run");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn celerys_revoke_of_a_task_waiting_in_its_countdown_sticks() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let worker = TestWorker::start_with(config(&vhost), celeriac_demo::registry())
        .await
        .unwrap();
    let producer = producer_in(&vhost).await;
    let options = SendOptions {
        countdown: Some(Duration::from_secs(2)),
        ..SendOptions::default()
    };
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, options)
        .await
        .unwrap();
    let script = format!(
        "import os; from celery import Celery; \
         app = Celery(broker=os.environ['CELERIAC_BROKER_URL']); \
         print(app.control.revoke('{}', reply=True, timeout=5))",
        handle.id()
    );
    let transcript = Python::run_args(&["-c", &script], &vhost.url())
        .await
        .unwrap();
    assert!(
        transcript.stdout.contains("flagged as revoked"),
        "{transcript}"
    );
    worker.stop().await.unwrap();
    // A worker started after the revoke, when the countdown is over, skips
    // it too.
    let later = TestWorker::start_with(config(&vhost), celeriac_demo::registry())
        .await
        .unwrap();
    assert_revoked(handle.wait(GUARD).await);
    later.stop().await.unwrap();
}

/// Waits until revoked or a minute passes.
struct Stuck;

impl Task for Stuck {
    const NAME: &'static str = "test.stuck";
    type Args = ();
    type Output = ();
}

#[tokio::test(flavor = "multi_thread")]
async fn terminate_cancels_a_running_task() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (started, mut starts) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Stuck, _, _>(move |(), ctx: TaskContext| {
        let _ = started.send(ctx.id().to_owned());
        async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<(), TaskError>(())
        }
    });
    let worker = TestWorker::start_with(config(&vhost), registry)
        .await
        .unwrap();
    let producer = producer_in(&vhost).await;
    let handle = producer.send::<Stuck>(&()).await.unwrap();
    let id = within("the task to start", starts.recv()).await.unwrap();
    revoke(&vhost.url(), &[&id], true).await;
    assert_revoked(handle.wait(GUARD).await);
    worker.stop().await.unwrap();
}
