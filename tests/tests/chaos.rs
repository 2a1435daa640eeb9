//! Chaos: two producer processes publish while two worker processes
//! consume, and meanwhile the broker's application is restarted, a worker
//! is killed with SIGKILL (and a new one started), and the broker's whole
//! node is killed and booted again. Every task whose publish the broker
//! confirmed must have run at least once, as counted in a Redis ledger the
//! tasks write; the test reports lost (must be 0) and duplicated tasks and
//! how long each fault took to recover from.
//!
//! `cargo test` runs a short form (`CELERIAC_CHAOS_TASKS`, default 2,000
//! tasks); `scripts/chaos` runs the long form (20,000) and prints the
//! report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_tests::redis_ledger::{RedisLedger, redis_url};
use celeriac_tests::{DemoWorker, ScratchBroker, init_logging, unique, workspace_binary};
use tokio::process::Child;
use tokio::time::Instant;

/// How long the whole run may take after the producers are done before
/// missing tasks count as lost.
const DRAIN_GUARD: Duration = Duration::from_secs(120);

/// How long publishing takes without faults: the producers pace
/// themselves so that every fault hits a run in progress.
const RUN_SECONDS: f64 = 12.0;

/// How long any single step (a fault, a recovery) may take.
const STEP_GUARD: Duration = Duration::from_secs(120);

/// One fault and how the system came back from it.
struct Recovery {
    fault: &'static str,
    /// From the fault to the moment the broker or worker was back.
    outage: Duration,
    /// From the broker or worker being back to the next task run; `None`
    /// when every task had already run (on a loaded machine the producers
    /// can finish before a slow fault does).
    resumed: Option<Duration>,
}

/// Everything the processes of one run share.
struct Run {
    broker: ScratchBroker,
    ledger: RedisLedger,
    name: String,
    tasks: u64,
}

impl Run {
    async fn worker(&self) -> DemoWorker {
        let url = self.broker.url();
        let mut worker = DemoWorker::spawn_program(
            "chaos-worker",
            &["--ledger", &self.name, "--queue", &self.name],
            &[
                ("CELERIAC_BROKER_URL", url.expose()),
                ("CELERIAC_REDIS_URL", &redis_url()),
            ],
        )
        .unwrap();
        worker.wait_for_line("worker ready").await.unwrap();
        worker
    }

    fn producer(&self, count: u64) -> Child {
        tokio::process::Command::new(workspace_binary("chaos-producer").unwrap())
            .args(["--ledger", &self.name, "--queue", &self.name])
            .args(["--count", &count.to_string()])
            .args([
                "--rate",
                &(self.tasks as f64 / RUN_SECONDS / 2.0).to_string(),
            ])
            .env("CELERIAC_BROKER_URL", self.broker.url().expose())
            .env("CELERIAC_REDIS_URL", redis_url())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Waits until `fraction` of the tasks have run.
    async fn progress(&self, fraction: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let target = (self.tasks as f64 * fraction) as usize;
        self.until(|ran| ran >= target).await;
    }

    /// Waits until the number of distinct tasks run satisfies `done`;
    /// returns how long that took.
    async fn until(&self, done: impl Fn(usize) -> bool) -> Duration {
        let started = Instant::now();
        loop {
            let ran = self.ledger.tasks_run().await.unwrap();
            if done(ran) {
                return started.elapsed();
            }
            assert!(started.elapsed() < STEP_GUARD, "stuck at {ran} tasks run");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Measures the time from now to the next task that runs; `None` when
    /// every task has run already, so no next one will.
    async fn next_run(&self) -> Option<Duration> {
        let before = self.ledger.tasks_run().await.unwrap();
        let total = usize::try_from(self.tasks).unwrap();
        let waited = self.until(|ran| ran > before || ran >= total).await;
        (before < total).then_some(waited)
    }
}

fn chaos_tasks() -> u64 {
    std::env::var("CELERIAC_CHAOS_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000)
}

#[tokio::test(flavor = "multi_thread")]
async fn no_confirmed_task_is_lost_through_broker_restarts_and_a_killed_worker() {
    init_logging();
    let name = unique("chaos");
    let run = Run {
        broker: ScratchBroker::start().await.unwrap(),
        ledger: RedisLedger::open(&name).await.unwrap(),
        name,
        tasks: chaos_tasks(),
    };
    let mut first = run.worker().await;
    let _second = run.worker().await;
    let started = Instant::now();
    let producers = [
        run.producer(run.tasks / 2),
        run.producer(run.tasks - run.tasks / 2),
    ];
    let mut recoveries = Vec::new();

    run.progress(0.2).await;
    let fault = Instant::now();
    run.broker.stop_app().await.unwrap();
    run.broker.start_app().await.unwrap();
    recoveries.push(Recovery {
        fault: "broker application restarted (stop_app, start_app)",
        outage: fault.elapsed(),
        resumed: run.next_run().await,
    });

    run.progress(0.45).await;
    let fault = Instant::now();
    first.kill().await.unwrap();
    let _third = run.worker().await;
    recoveries.push(Recovery {
        fault: "worker killed with SIGKILL, a new one started",
        outage: fault.elapsed(),
        resumed: run.next_run().await,
    });

    run.progress(0.7).await;
    let fault = Instant::now();
    run.broker.kill().await.unwrap();
    run.broker.boot().await.unwrap();
    recoveries.push(Recovery {
        fault: "broker node killed with SIGKILL and booted again",
        outage: fault.elapsed(),
        resumed: run.next_run().await,
    });

    for producer in producers {
        let output = tokio::time::timeout(STEP_GUARD, producer.wait_with_output())
            .await
            .expect("a producer did not finish")
            .unwrap();
        assert!(output.status.success(), "a producer failed");
    }
    let published = started.elapsed();
    let confirmed = run.ledger.tally().await.unwrap().confirmed.len();
    assert_eq!(
        confirmed as u64, run.tasks,
        "every producer confirmed its count"
    );
    let tally = run.ledger.settled(DRAIN_GUARD).await.unwrap();
    let drained = started.elapsed();

    println!(
        "\n## Chaos run: {} tasks, 2 producers, 2 workers\n",
        run.tasks
    );
    println!("| fault | outage | first task after |\n|---|---|---|");
    for r in &recoveries {
        let resumed = match r.resumed {
            Some(resumed) => format!("{:.3} s", resumed.as_secs_f64()),
            None => "– (every task had run)".to_owned(),
        };
        println!(
            "| {} | {:.2} s | {resumed} |",
            r.fault,
            r.outage.as_secs_f64()
        );
    }
    println!(
        "\n{}; all published in {:.1} s, all run in {:.1} s",
        tally.summary(),
        published.as_secs_f64(),
        drained.as_secs_f64()
    );
    run.ledger.delete().await.unwrap();
    assert!(tally.lost().is_empty(), "lost tasks: {:?}", tally.lost());
}
