//! `celeriac dlq` against dead letters a real worker wrote: listing leaves
//! them in place and in order, `show` tells everything, `replay` puts the
//! chosen ones back to run again.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use celeriac_producer::Producer;
use celeriac_shared::{DeadLetterTopology, Task};
use celeriac_tests::{
    GUARD, TestWorker, celeriac, channel, delete_queues, drain_task_ids, message_count,
    producer_for, unique,
};
use celeriac_worker::{Backoff, Registry, RetryPolicy, TaskError, TaskOptions};
use serde_json::Value;
use tokio::sync::mpsc;

struct Report;

impl Task for Report {
    const NAME: &'static str = "test.dlq.report";
    type Args = (u32,);
    type Output = u32;
}

struct Mail;

impl Task for Mail {
    const NAME: &'static str = "test.dlq.mail";
    type Args = (u32,);
    type Output = u32;
}

struct Invoice;

impl Task for Invoice {
    const NAME: &'static str = "test.dlq.invoice";
    type Args = (String, u32);
    type Output = ();
}

/// A successful run: task id, its `retries`, its replay count header.
type Run = (String, u32, Option<Value>);

/// `test.dlq.report` retries once after 1 s and is then dead-lettered,
/// `test.dlq.mail` is rejected at once, both until `fixed` is set; then
/// they succeed and report their run on `ran`.
fn registry(fixed: &Arc<AtomicBool>, ran: mpsc::UnboundedSender<Run>) -> Registry {
    let once = TaskOptions {
        retry: Some(RetryPolicy {
            max_retries: 1,
            backoff: Backoff::Fixed(Duration::from_secs(1)),
            retry_unexpected: true,
        }),
        time_limit: None,
        soft_time_limit: None,
    };
    let mut registry = Registry::new();
    let (fixed_report, ran_report) = (Arc::clone(fixed), ran.clone());
    registry.register_with::<Report, _, _>(once, move |(n,), ctx| {
        let fixed = fixed_report.load(Ordering::SeqCst);
        let replays = ctx.headers().extra.get("x-celeriac-replay-count").cloned();
        if fixed {
            ran_report
                .send((ctx.id().to_owned(), ctx.retries(), replays))
                .unwrap();
        }
        async move {
            fixed
                .then_some(n)
                .ok_or_else(|| TaskError::retry(format!("report {n}: printer offline")))
        }
    });
    let fixed_mail = Arc::clone(fixed);
    registry.register::<Mail, _, _>(move |(n,), ctx| {
        let fixed = fixed_mail.load(Ordering::SeqCst);
        if fixed {
            ran.send((ctx.id().to_owned(), ctx.retries(), None))
                .unwrap();
        }
        async move {
            fixed
                .then_some(n)
                .ok_or_else(|| TaskError::reject(format!("mail {n} is broken")))
        }
    });
    registry.register_with::<Invoice, _, _>(
        TaskOptions {
            retry: Some(RetryPolicy::never()),
            time_limit: None,
            soft_time_limit: None,
        },
        |(file, _copies), _ctx| async move {
            let cause = std::io::Error::other("disk full");
            let error = RenderError { file, cause };
            Err::<(), _>(TaskError::from_error(&error))
        },
    );
    registry
}

#[derive(Debug, thiserror::Error)]
#[error("cannot render {file}")]
struct RenderError {
    file: String,
    #[source]
    cause: std::io::Error,
}

/// Sends `count` tasks `T(n)` and waits until each has failed for good,
/// i.e. is in the dead-letter queue. Returns their ids in send order.
async fn fail_many<T: Task<Args = (u32,)>>(
    producer: &Producer,
    range: std::ops::Range<u32>,
) -> Vec<String> {
    let mut handles = Vec::new();
    for n in range {
        handles.push(producer.send::<T>(&(n,)).await.unwrap());
    }
    let ids: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
    for handle in handles {
        assert!(handle.wait(GUARD).await.is_err(), "the task must fail");
    }
    ids
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `celeriac dlq list --queue <queue> --json`, parsed.
async fn list_json(queue: &str) -> Vec<Value> {
    let output = celeriac(&["dlq", "list", "--queue", queue, "--json"])
        .await
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let doc: Value = serde_json::from_slice(&output.stdout).unwrap();
    doc["dead_letters"].as_array().unwrap().clone()
}

fn ids_of(entries: &[Value]) -> Vec<String> {
    entries
        .iter()
        .map(|e| e["task_id"].as_str().unwrap().to_owned())
        .collect()
}

async fn setup(
    prefix: &str,
) -> (
    String,
    TestWorker,
    Producer,
    Arc<AtomicBool>,
    mpsc::UnboundedReceiver<Run>,
) {
    let queue = unique(prefix);
    let fixed = Arc::new(AtomicBool::new(false));
    let (ran, runs) = mpsc::unbounded_channel();
    let worker = TestWorker::start(&[&queue], registry(&fixed, ran))
        .await
        .unwrap();
    let producer = producer_for(&queue).await.unwrap();
    (queue, worker, producer, fixed, runs)
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_dead_letters_are_listed_twice_in_order_and_stay_in_the_queue() {
    let (queue, worker, producer, _fixed, _runs) = setup("dlq-list").await;
    let sent = fail_many::<Mail>(&producer, 0..50).await;

    let first = list_json(&queue).await;
    let second = list_json(&queue).await;
    assert_eq!(first.len(), 50);
    for entry in &first {
        let message = entry["error_message"].as_str().unwrap();
        assert!(
            message.starts_with("mail ") && message.ends_with(" is broken"),
            "{entry}"
        );
        assert_eq!(entry["error_type"], "Reject");
        assert_eq!(entry["task"], Mail::NAME);
    }
    assert_eq!(ids_of(&first), ids_of(&second), "same order both times");
    let (mut listed, mut expected) = (ids_of(&first), sent.clone());
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected, "each failed task exactly once");

    let text = celeriac(&["dlq", "list", "--queue", &queue]).await.unwrap();
    assert!(text.status.success(), "{}", stderr(&text));
    let rows = stdout(&text)
        .lines()
        .filter(|l| l.contains("Reject: mail "))
        .count();
    assert_eq!(rows, 50, "{}", stdout(&text));
    assert!(stdout(&text).contains(&format!("50 of 50 dead letter(s) in {queue}.dead")));

    worker.stop().await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let held = drain_task_ids(&channel, &DeadLetterTopology::queue_name(&queue))
        .await
        .unwrap();
    assert_eq!(
        held,
        ids_of(&first),
        "the queue still holds all 50, in the listed order"
    );
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn show_prints_the_traceback_and_the_original_args() {
    let (queue, worker, producer, _fixed, _runs) = setup("dlq-show").await;
    let handle = producer
        .send::<Invoice>(&("invoice-42.pdf".into(), 7))
        .await
        .unwrap();
    let id = handle.id().to_owned();
    assert!(handle.wait(GUARD).await.is_err());

    let shown = celeriac(&["dlq", "show", &id, "--queue", &queue])
        .await
        .unwrap();
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);
    assert!(
        text.contains("TaskError: cannot render invoice-42.pdf"),
        "{text}"
    );
    assert!(text.contains("Caused by: disk full"), "{text}");
    assert!(text.contains(r#"["invoice-42.pdf",7]"#), "{text}");
    assert!(
        text.contains(&id) && text.contains("max retries exceeded"),
        "{text}"
    );

    let json = celeriac(&["dlq", "show", &id, "--queue", &queue, "--json"])
        .await
        .unwrap();
    let entry: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(entry["args"], serde_json::json!(["invoice-42.pdf", 7]));
    assert_eq!(entry["reason"], "max retries exceeded");
    assert!(
        entry["traceback"]
            .as_str()
            .unwrap()
            .contains("Caused by: disk full")
    );
    assert_eq!(entry["original_queue"], queue.as_str());
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replaying_by_task_runs_those_again_and_leaves_the_rest_dead() {
    let (queue, worker, producer, fixed, mut runs) = setup("dlq-replay").await;
    let reports = fail_many::<Report>(&producer, 0..20).await;
    let mails = fail_many::<Mail>(&producer, 0..30).await;
    let (_connection, channel) = channel().await.unwrap();
    let dead = DeadLetterTopology::queue_name(&queue);
    assert_eq!(message_count(&channel, &dead).await.unwrap(), 50);

    fixed.store(true, Ordering::SeqCst);
    let replay = celeriac(&[
        "dlq",
        "replay",
        "--queue",
        &queue,
        "--task",
        "test.dlq.rep*",
    ])
    .await
    .unwrap();
    assert!(replay.status.success(), "{}", stderr(&replay));
    assert!(
        stdout(&replay).contains("replayed 20, skipped 30, failed 0"),
        "{}",
        stdout(&replay)
    );

    let mut ran = Vec::new();
    for _ in 0..20 {
        let run = tokio::time::timeout(GUARD, runs.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.1, 0, "retries reset by the replay");
        assert_eq!(run.2, Some(Value::from(1)), "the replay is recorded");
        ran.push(run.0);
    }
    ran.sort();
    let mut expected = reports.clone();
    expected.sort();
    assert_eq!(ran, expected, "exactly the 20 reports ran again");

    let left = list_json(&queue).await;
    assert_eq!(left.len(), 30);
    assert!(left.iter().all(|e| e["task"] == Mail::NAME));
    let mut left_ids = ids_of(&left);
    left_ids.sort();
    let mut mails = mails;
    mails.sort();
    assert_eq!(left_ids, mails);
    worker.stop().await.unwrap();
    assert!(runs.try_recv().is_err(), "no mail ran");
    delete_queues(&[&queue]).await;
}
