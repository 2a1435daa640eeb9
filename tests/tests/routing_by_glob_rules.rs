//! Two queues, two workers, each consuming only its own queue, with tasks
//! routed by glob rules and per-call overrides.
#![allow(clippy::unwrap_used)]

use celeriac_shared::{Route, Router, SendOptions, Task, Topology};
use celeriac_tests::{GUARD, TestWorker, delete_queues, producer_with, unique};
use celeriac_worker::{Registry, TaskError};
use tokio::sync::mpsc;

struct DailyReport;

impl Task for DailyReport {
    const NAME: &'static str = "reports.daily";
    type Args = ();
    type Output = ();
}

struct Ping;

impl Task for Ping {
    const NAME: &'static str = "misc.ping";
    type Args = ();
    type Output = ();
}

/// A registry running both tasks, reporting `(worker, task)` for each run,
/// so that a misrouted task is seen rather than rejected.
fn recording(
    worker: &'static str,
    seen: mpsc::UnboundedSender<(&'static str, String)>,
) -> Registry {
    let mut registry = Registry::new();
    let report = seen.clone();
    registry.register::<DailyReport, _, _>(move |(), ctx| {
        report.send((worker, ctx.task().to_owned())).unwrap();
        async { Ok::<(), TaskError>(()) }
    });
    registry.register::<Ping, _, _>(move |(), ctx| {
        seen.send((worker, ctx.task().to_owned())).unwrap();
        async { Ok::<(), TaskError>(()) }
    });
    registry
}

#[tokio::test(flavor = "multi_thread")]
async fn each_worker_runs_only_the_tasks_routed_to_its_queue() {
    let reports = unique("reports");
    let default = unique("default");
    let (seen, mut runs) = mpsc::unbounded_channel();
    let worker_a = TestWorker::start(&[&reports], recording("a", seen.clone()))
        .await
        .unwrap();
    let worker_b = TestWorker::start(&[&default], recording("b", seen))
        .await
        .unwrap();
    let router = Router::new(vec![Route::new("reports.*", &reports)], &default);
    let producer = producer_with(router, Topology::default()).await.unwrap();

    let mut handles = Vec::new();
    for _ in 0..5 {
        handles.push(producer.send::<DailyReport>(&()).await.unwrap());
        handles.push(producer.send::<Ping>(&()).await.unwrap());
    }
    for handle in handles {
        handle.wait(GUARD).await.unwrap();
    }
    let mut by_worker = Vec::new();
    for _ in 0..10 {
        by_worker.push(runs.recv().await.unwrap());
    }
    assert_eq!(
        by_worker
            .iter()
            .filter(|r| *r == &("a", "reports.daily".into()))
            .count(),
        5
    );
    assert_eq!(
        by_worker
            .iter()
            .filter(|r| *r == &("b", "misc.ping".into()))
            .count(),
        5
    );

    // An explicit queue beats the rules.
    producer
        .send_with::<Ping>(&(), SendOptions::queue(&reports))
        .await
        .unwrap()
        .wait(GUARD)
        .await
        .unwrap();
    assert_eq!(runs.recv().await.unwrap(), ("a", "misc.ping".to_owned()));

    worker_a.stop().await.unwrap();
    worker_b.stop().await.unwrap();
    delete_queues(&[&reports, &default]).await;
}
