//! A worker killed in the middle of a task does not lose it: the broker
//! redelivers it to another worker, and the caller still gets its result.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Sleep, SleepArgs};
use celeriac_tests::{DemoWorker, GUARD, TestWorker, delete_queues, producer_for, unique};
use celeriac_worker::{Registry, TaskError};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread")]
async fn a_task_of_a_killed_worker_runs_again_on_another_worker() {
    let queue = unique("crash");
    let mut doomed = DemoWorker::start(&["--queues", &queue, "--concurrency", "1"])
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let handle = producer
        .send::<Sleep>(&SleepArgs { seconds: 3600.0 })
        .await
        .unwrap();
    doomed
        .wait_for_line(&format!("demo.sleep[{}] received", handle.id()))
        .await
        .unwrap();
    doomed.kill().await.unwrap();

    let (seen, mut runs) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Sleep, _, _>(move |args: SleepArgs, ctx| {
        seen.send((ctx.id().to_owned(), ctx.redelivered())).unwrap();
        async move { Ok::<f64, TaskError>(args.seconds) }
    });
    let rescuer = TestWorker::start(&[&queue], registry).await.unwrap();

    let id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 3600.0);
    assert_eq!(
        runs.recv().await.unwrap(),
        (id, true),
        "redelivered to the new worker"
    );

    rescuer.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}
