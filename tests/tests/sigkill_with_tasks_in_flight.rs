//! A worker killed with SIGKILL while 1,000 tasks are in flight loses none:
//! after another worker drains the queue, every task has run at least once
//! (counted in a ledger the tasks write); some may have run twice.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

use celeriac_shared::SendOptions;
use celeriac_tests::ledger::{self, Record};
use celeriac_tests::{GUARD, TestWorker, broker_url, delete_queues, producer_for, unique};
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::time::Instant;

const TASKS: usize = 1000;

#[tokio::test(flavor = "multi_thread")]
async fn no_task_is_lost_when_a_worker_is_killed_with_a_thousand_in_flight() {
    let queue = unique("sigkill");
    let ledger_path = std::env::temp_dir().join(format!("{queue}.ledger"));
    let producer = producer_for(&queue).await.unwrap();
    producer.declare_queue(&queue).await.unwrap();

    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_ledger-worker"))
        .args([ledger_path.to_str().unwrap(), &queue, "1000"])
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut log = BufReader::new(doomed.stdout.take().unwrap()).lines();
    let ready = async {
        while let Some(line) = log.next_line().await.unwrap() {
            if line.contains("worker ready") {
                return;
            }
        }
    };
    tokio::time::timeout(GUARD, ready).await.unwrap();

    // Durations from 0 to 4 s, so some tasks finish before the kill and
    // most are running when it comes.
    let ids: Vec<String> = futures::stream::iter(0..TASKS)
        .map(|i| {
            let producer = producer.clone();
            let millis = (i as u64 * 37) % 4000;
            async move {
                let handle = producer
                    .send_with::<Record>(&(millis,), SendOptions::ignore_result())
                    .await
                    .unwrap();
                handle.id().to_owned()
            }
        })
        .buffer_unordered(200)
        .collect()
        .await;

    // Kill once every task has reached the doomed worker.
    let mut received = 0;
    let all_received = async {
        while let Some(line) = log.next_line().await.unwrap() {
            received += usize::from(line.contains("received"));
            if received == TASKS {
                return;
            }
        }
    };
    tokio::time::timeout(GUARD, all_received).await.unwrap();
    doomed.kill().await.unwrap();
    doomed.wait().await.unwrap();
    let finished: HashSet<String> = ledger::runs(&ledger_path).into_iter().collect();
    let finished_before_kill = finished.len();
    let cut_short: Vec<&String> = ids.iter().filter(|id| !finished.contains(*id)).collect();
    assert!(
        !cut_short.is_empty(),
        "the kill must hit tasks that had not finished; all {TASKS} had"
    );

    let killed_at = Instant::now();
    let config = celeriac_worker::WorkerConfig {
        broker_url: broker_url(),
        queues: vec![queue.clone()],
        concurrency: TASKS,
        ..Default::default()
    };
    let rescuer = TestWorker::start_with(config, ledger::registry(ledger_path.clone()))
        .await
        .unwrap();
    let expected: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let deadline = Instant::now() + GUARD * 2;
    let runs = loop {
        let runs = ledger::runs(&ledger_path);
        let seen: HashSet<&str> = runs.iter().map(String::as_str).collect();
        if expected.iter().all(|id| seen.contains(id)) {
            break runs;
        }
        assert!(
            Instant::now() < deadline,
            "{} tasks never ran",
            expected.len() - seen.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered_in = killed_at.elapsed();

    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &runs {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let lost = expected
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .count();
    let twice = counts.values().filter(|&&n| n > 1).count();
    println!(
        "{TASKS} tasks: lost {lost}, ran twice {twice}, finished before the kill {finished_before_kill}, \
         all done {recovered_in:?} after the kill"
    );
    assert_eq!(lost, 0);
    assert!(
        cut_short.iter().all(|id| counts.contains_key(id.as_str())),
        "every task the kill cut short ran again"
    );
    assert!(
        counts.keys().all(|id| expected.contains(id)),
        "no unknown runs"
    );

    // Cleanup, not part of what this test proves (graceful shutdown has
    // its own tests); a slow stop on a loaded machine is reported, not
    // failed.
    if let Err(err) = rescuer.stop().await {
        eprintln!("warning: the rescuer did not stop cleanly: {err:#}");
    }
    let _ = std::fs::remove_file(&ledger_path);
    delete_queues(&[&queue]).await;
}
