//! On shutdown a worker stops taking deliveries, lets in-flight tasks
//! finish within the grace period, and requeues what is left.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use celeriac_demo::{Sleep, SleepArgs};
use celeriac_shared::SendOptions;
use celeriac_tests::{
    DemoWorker, GUARD, TestWorker, broker_url, delete_queues, producer_for, unique, within,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use tokio::sync::mpsc;

/// A `demo.sleep` handler that reports when it starts and when it ends.
fn sleeper(started: mpsc::UnboundedSender<String>, finished: Arc<AtomicBool>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<Sleep, _, _>(move |args: SleepArgs, ctx| {
        started.send(ctx.id().to_owned()).unwrap();
        let finished = Arc::clone(&finished);
        async move {
            tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
            finished.store(true, Ordering::SeqCst);
            Ok::<f64, TaskError>(args.seconds)
        }
    });
    registry
}

fn config(queue: &str, grace: Duration) -> WorkerConfig {
    WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.to_owned()],
        grace_period: grace,
        ..WorkerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_tasks_finish_and_send_their_results_before_the_worker_exits() {
    let queue = unique("graceful");
    let (started, mut starts) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicBool::new(false));
    let worker = TestWorker::start_with(
        config(&queue, GUARD),
        sleeper(started, Arc::clone(&finished)),
    )
    .await
    .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let handle = producer
        .send::<Sleep>(&SleepArgs { seconds: 0.5 })
        .await
        .unwrap();
    assert_eq!(
        within("the task to start", starts.recv()).await.unwrap(),
        handle.id()
    );

    worker.stop().await.unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "the task finished before run returned"
    );
    assert_eq!(handle.wait(Duration::from_secs(1)).await.unwrap(), 0.5);
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tasks_still_running_after_the_grace_period_are_requeued() {
    let queue = unique("grace-over");
    let (started, mut starts) = mpsc::unbounded_channel();
    let finished = Arc::new(AtomicBool::new(false));
    let registry = sleeper(started, Arc::clone(&finished));
    let worker = TestWorker::start_with(config(&queue, Duration::from_millis(200)), registry)
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let id = producer
        .send_with::<Sleep>(&SleepArgs { seconds: 3600.0 }, SendOptions::ignore_result())
        .await
        .unwrap()
        .id()
        .to_owned();
    assert_eq!(
        within("the task to start", starts.recv()).await.unwrap(),
        id
    );
    worker.stop().await.unwrap();
    assert!(!finished.load(Ordering::SeqCst));

    let (again, mut runs) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Sleep, _, _>(move |_args: SleepArgs, ctx| {
        again
            .send((ctx.id().to_owned(), ctx.redelivered()))
            .unwrap();
        async { Ok::<f64, TaskError>(0.0) }
    });
    let next = TestWorker::start(&[&queue], registry).await.unwrap();
    let run = tokio::time::timeout(GUARD, runs.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        run,
        (id, true),
        "the unfinished task was requeued and ran again"
    );
    next.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_worker_exits_zero_on_sigterm_after_finishing_its_task() {
    let queue = unique("sigterm");
    let mut worker = DemoWorker::start(&["--queues", &queue]).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();
    let handle = producer
        .send::<Sleep>(&SleepArgs { seconds: 1.0 })
        .await
        .unwrap();
    worker
        .wait_for_line(&format!("demo.sleep[{}] received", handle.id()))
        .await
        .unwrap();
    let pid = worker.child.id().unwrap().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(GUARD, worker.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(handle.wait(Duration::from_secs(1)).await.unwrap(), 1.0);
    let log = worker.read_to_end().await.unwrap();
    assert!(
        !log.iter().any(|line| line.contains("ERROR")),
        "a clean stop logs no ERROR:\n{}",
        log.join("\n")
    );
    delete_queues(&[&queue]).await;
}
