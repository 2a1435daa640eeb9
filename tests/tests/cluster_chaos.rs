//! Chaos on the 3-node cluster of `scripts/cluster`, the long form only
//! (`scripts/chaos --cluster`; `scripts/test` runs the short failover test
//! of `cluster_failover.rs` instead). Two producer processes publish
//! 20,000 tasks (`CELERIAC_CHAOS_TASKS`) to a quorum queue while two
//! worker processes consume, each client given the three addresses in a
//! different order. Meanwhile:
//!
//! - the node that leads the task queue is SIGKILLed, and later restarted;
//! - the node a worker is connected to is SIGKILLed while the worker holds
//!   unacknowledged tasks, and later restarted;
//! - the node the producers are connected to is SIGKILLed, and later
//!   restarted;
//! - all three nodes are restarted one after the other (a rolling restart:
//!   each node stopped cleanly and started again, the next one once tasks
//!   run at full pace again).
//!
//! Every task whose publish the broker confirmed must have run at least
//! once, as counted in a Redis ledger the tasks write. The report gives
//! the duplicates and, for each fault, how long it lasted, how long until
//! the next task ran and how long until tasks ran at the producers' pace
//! again.
#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::time::Duration;

use celeriac_shared::BrokerUrl;
use celeriac_tests::redis_ledger::{RedisLedger, redis_url};
use celeriac_tests::{Cluster, DemoWorker, init_logging, unique, workspace_binary};
use tokio::process::Child;
use tokio::time::Instant;

/// How long the producers take without faults: long enough for every
/// fault, a rolling restart included, to hit a run in progress.
const RUN_SECONDS: f64 = 150.0;

/// How long any single step (a fault, a recovery) may take.
const STEP_GUARD: Duration = Duration::from_secs(240);

/// How long the tasks may take to drain once the producers are done
/// before missing ones count as lost.
const DRAIN_GUARD: Duration = Duration::from_secs(180);

/// The window over which the rate of runs is measured.
const WINDOW: Duration = Duration::from_secs(1);

/// The fraction of the producers' pace that counts as full throughput.
const FULL: f64 = 0.9;

/// One fault and how the system came back from it.
struct Recovery {
    fault: String,
    /// How long the fault itself took: the kill, or the restart.
    outage: Duration,
    /// From the end of the fault to the next task run.
    resumed: Option<Duration>,
    /// From the start of the fault until tasks ran at [`FULL`] of the
    /// producers' pace over a [`WINDOW`]; `None` when every task had run.
    full: Option<Duration>,
}

/// Everything the processes of one run share.
struct Run {
    cluster: Cluster,
    ledger: RedisLedger,
    name: String,
    tasks: u64,
    /// Tasks per second, both producers together.
    pace: f64,
}

impl Run {
    fn worker_name(&self, n: usize) -> String {
        format!("{}-worker-{n}", self.name)
    }

    fn producer_name(&self, n: usize) -> String {
        format!("{}-producer-{n}", self.name)
    }

    /// Worker `n`, given the addresses starting at node `first`.
    async fn worker(&self, n: usize, first: usize) -> DemoWorker {
        let name = self.worker_name(n);
        let url = self.cluster.url_from(first);
        let args = [
            "--ledger",
            &self.name,
            "--queue",
            &self.name,
            "--queue-type",
            "quorum",
            "--name",
            &name,
        ];
        let env = [
            ("CELERIAC_BROKER_URL", url.expose()),
            ("CELERIAC_REDIS_URL", &redis_url()),
        ];
        let mut worker = DemoWorker::spawn_program("chaos-worker", &args, &env).unwrap();
        worker.wait_for_line("worker ready").await.unwrap();
        worker
    }

    /// Producer `n` sending `count` tasks, given `url`.
    fn producer(&self, n: usize, url: &BrokerUrl, count: u64) -> Child {
        tokio::process::Command::new(workspace_binary("chaos-producer").unwrap())
            .args(["--ledger", &self.name, "--queue", &self.name])
            .args(["--queue-type", "quorum", "--name", &self.producer_name(n)])
            .args(["--count", &count.to_string()])
            .args(["--rate", &(self.pace / 2.0).to_string()])
            .env("CELERIAC_BROKER_URL", url.expose())
            .env("CELERIAC_REDIS_URL", redis_url())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    fn total(&self) -> usize {
        usize::try_from(self.tasks).unwrap()
    }

    /// Waits until `fraction` of the tasks have run.
    async fn progress(&self, fraction: f64) {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let target = (self.tasks as f64 * fraction) as usize;
        let started = Instant::now();
        loop {
            let ran = self.ledger.tasks_run().await.unwrap();
            if ran >= target {
                return;
            }
            assert!(started.elapsed() < STEP_GUARD, "stuck at {ran} tasks run");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `fault` and measures the recovery from it.
    async fn recover(&self, fault: String, outage: Duration, started: Instant) -> Recovery {
        let recovered = Instant::now();
        let before = self.ledger.tasks_run().await.unwrap();
        let mut resumed = None;
        let mut window: VecDeque<(Instant, usize)> = VecDeque::new();
        let full = loop {
            let ran = self.ledger.tasks_run().await.unwrap();
            let now = Instant::now();
            if resumed.is_none() && ran > before {
                resumed = Some(now - recovered);
            }
            if ran >= self.total() {
                break None;
            }
            window.push_back((now, ran));
            while window
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > WINDOW)
            {
                window.pop_front();
            }
            let (oldest, count) = window[0];
            let span = now.duration_since(oldest).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = (ran - count) as f64 / span.max(f64::EPSILON);
            if span >= WINDOW.as_secs_f64() * 0.8 && rate >= FULL * self.pace {
                break Some(started.elapsed());
            }
            assert!(
                recovered.elapsed() < STEP_GUARD,
                "{fault}: stuck at {ran} tasks run"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        Recovery {
            fault,
            outage,
            resumed,
            full,
        }
    }

    /// SIGKILLs `node`, measures the recovery, then restarts the node.
    async fn kill_and_restart(&mut self, node: usize, what: &str) -> Recovery {
        let started = Instant::now();
        self.cluster.kill(node).await.unwrap();
        let outage = started.elapsed();
        let fault = format!("{what} (node {node}) SIGKILLed");
        let recovery = self.recover(fault, outage, started).await;
        self.cluster.restart(node).await.unwrap();
        recovery
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// Reads `confirmed=N failed=M` from a producer's output: its `M`.
fn failed_sends(stdout: &[u8]) -> u64 {
    String::from_utf8_lossy(stdout)
        .split_whitespace()
        .find_map(|word| word.strip_prefix("failed="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "minutes long; run by scripts/chaos --cluster"]
async fn no_confirmed_task_is_lost_when_cluster_nodes_fail() {
    init_logging();
    let name = unique("cluster-chaos");
    let tasks = env_number("CELERIAC_CHAOS_TASKS", 20_000);
    #[allow(clippy::cast_precision_loss)]
    let pace = tasks as f64 / RUN_SECONDS;
    // Built before anything is timed.
    for program in ["chaos-worker", "chaos-producer"] {
        workspace_binary(program).unwrap();
    }
    let mut run = Run {
        cluster: Cluster::start().await.unwrap(),
        ledger: RedisLedger::open(&name).await.unwrap(),
        name,
        tasks,
        pace,
    };
    // Worker 1 declares the queue from node 1, which then leads it.
    let _first = run.worker(1, 1).await;
    let _second = run.worker(2, 3).await;
    let started = Instant::now();
    let producers_url = run.cluster.url_from(2);
    let producers = [
        run.producer(1, &producers_url, tasks / 2),
        run.producer(2, &producers_url, tasks - tasks / 2),
    ];
    let mut recoveries = Vec::new();

    run.progress(0.04).await;
    let leader = run.cluster.leader_of(&run.name).unwrap();
    let recovery = run
        .kill_and_restart(leader, "the task queue's leader")
        .await;
    recoveries.push(recovery);

    run.progress(0.16).await;
    let nodes = run.cluster.nodes_of(&run.worker_name(2)).unwrap();
    assert_eq!(nodes.len(), 1, "worker 2's connections: {nodes:?}");
    let recovery = run
        .kill_and_restart(nodes[0], "worker 2's node, tasks unacked")
        .await;
    recoveries.push(recovery);

    run.progress(0.28).await;
    let nodes = run.cluster.nodes_of(&run.producer_name(1)).unwrap();
    assert_eq!(nodes.len(), 1, "producer 1's connections: {nodes:?}");
    let recovery = run.kill_and_restart(nodes[0], "the producers' node").await;
    recoveries.push(recovery);

    run.progress(0.4).await;
    for node in 1..=3 {
        let started = Instant::now();
        run.cluster.restart(node).await.unwrap();
        let fault = format!("rolling restart: node {node} stopped and started");
        let recovery = run.recover(fault, started.elapsed(), started).await;
        recoveries.push(recovery);
    }

    let mut failed = 0;
    for producer in producers {
        let output = tokio::time::timeout(STEP_GUARD, producer.wait_with_output())
            .await
            .expect("a producer did not finish")
            .unwrap();
        assert!(output.status.success(), "a producer failed");
        failed += failed_sends(&output.stdout);
    }
    let published = started.elapsed();
    let confirmed = run.ledger.tally().await.unwrap().confirmed.len();
    assert_eq!(
        confirmed as u64, tasks,
        "every producer confirmed its count"
    );
    let tally = run.ledger.settled(DRAIN_GUARD).await.unwrap();
    let drained = started.elapsed();

    println!(
        "\n## Cluster chaos: {tasks} tasks at {pace:.0}/s, 2 producers, 2 workers, 3 nodes, quorum queue\n"
    );
    println!("| fault | fault took | next task after | full throughput after |\n|---|---|---|---|");
    let seconds = |d: Option<Duration>| {
        d.map_or_else(
            || "– (every task had run)".to_owned(),
            |d| format!("{:.2} s", d.as_secs_f64()),
        )
    };
    for r in &recoveries {
        println!(
            "| {} | {:.2} s | {} | {} |",
            r.fault,
            r.outage.as_secs_f64(),
            seconds(r.resumed),
            seconds(r.full)
        );
    }
    println!(
        "\n{}; {failed} sends refused or unconfirmed (sent again as new tasks); \
         all published in {:.1} s, all run in {:.1} s",
        tally.summary(),
        published.as_secs_f64(),
        drained.as_secs_f64()
    );
    run.ledger.delete().await.unwrap();
    assert!(tally.lost().is_empty(), "lost tasks: {:?}", tally.lost());
}
