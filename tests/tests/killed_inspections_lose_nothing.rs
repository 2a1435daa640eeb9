//! A `celeriac dlq replay` of 1,000 dead letters killed with SIGKILL in
//! the middle: afterwards every message is in the work queue, in the
//! dead-letter queue, or in both; none is lost. A `celeriac dlq list`
//! killed in the middle leaves the dead-letter queue as it was.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use celeriac_shared::{DeadLetterTopology, TaskMessage};
use celeriac_tests::{
    GUARD, broker_url, channel, declare_with_dead_letters, delete_queues, drain_task_ids,
    next_delivery, publish_dead_letters, rejected, unique, workspace_binary,
};
use chrono::Utc;
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::Value;

/// The consumer count of `queue`.
async fn consumers(channel: &lapin::Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap()
        .consumer_count()
}

/// Waits until `queue` has no consumer: the killed process's connection
/// is closed and the broker has requeued what it held.
async fn wait_until_unconsumed(channel: &lapin::Channel, queue: &str) {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        if consumers(channel, queue).await == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue} still consumed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replay_killed_midway_leaves_every_message_somewhere() {
    let queue = unique("dlq-kill");
    let dead = DeadLetterTopology::queue_name(&queue);
    let (_connection, channel) = channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let letters: Vec<_> = (0..1000)
        .map(|n| {
            let message =
                TaskMessage::new("test.dlq.bulk", vec![Value::from(n)], Default::default());
            (message, rejected(&queue, Utc::now()))
        })
        .collect();
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();

    // Watch the work queue: the first replayed message to arrive shows the
    // replay is under way. It is held unacknowledged, then given back.
    let (_watch_connection, watch) = celeriac_tests::channel().await.unwrap();
    watch
        .basic_qos(1, BasicQosOptions::default())
        .await
        .unwrap();
    let mut arrivals = watch
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut replay = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(["dlq", "replay", "--all", "--queue", &queue])
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    next_delivery(&mut arrivals).await.unwrap();
    replay.start_kill().unwrap();
    let status = replay.wait().await.unwrap();
    assert!(!status.success(), "killed before it finished: {status:?}");
    watch.close(200, "OK".into()).await.unwrap();
    wait_until_unconsumed(&channel, &dead).await;
    wait_until_unconsumed(&channel, &queue).await;

    let in_work = drain_task_ids(&channel, &queue).await.unwrap();
    let in_dead = drain_task_ids(&channel, &dead).await.unwrap();
    let (work, still_dead): (HashSet<_>, HashSet<_>) =
        (in_work.iter().collect(), in_dead.iter().collect());
    let lost: Vec<_> = ids
        .iter()
        .filter(|id| !work.contains(id) && !still_dead.contains(id))
        .collect();
    assert!(lost.is_empty(), "lost {} messages: {lost:?}", lost.len());
    assert!(
        !in_work.is_empty() && in_work.len() < 1000,
        "interrupted in the middle: {} replayed",
        in_work.len()
    );
    // The replay publishes one message at a time, so only messages in
    // flight at the kill can be in both; the bound is loose so as not to
    // depend on how the broker schedules the last acknowledgements.
    let both = work.intersection(&still_dead).count();
    assert!(both < 10, "only messages in flight are in both: {both}");
    assert_eq!(in_work.len() + in_dead.len(), 1000 + both);
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_killed_midway_leaves_the_queue_as_it_was() {
    let queue = unique("dlq-list-kill");
    let dead = DeadLetterTopology::queue_name(&queue);
    let (_connection, channel) = channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let letters: Vec<_> = (0..3000)
        .map(|n| {
            let message =
                TaskMessage::new("test.dlq.bulk", vec![Value::from(n)], Default::default());
            (message, rejected(&queue, Utc::now()))
        })
        .collect();
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();

    let mut list = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(["dlq", "list", "--queue", &queue, "--json"])
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // The browse is under way once its exclusive consumer is attached.
    let deadline = tokio::time::Instant::now() + GUARD;
    while consumers(&channel, &dead).await == 0 {
        assert!(
            list.try_wait().unwrap().is_none(),
            "list ended before it was seen"
        );
        assert!(tokio::time::Instant::now() < deadline, "no browse started");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    list.start_kill().unwrap();
    assert!(
        !list.wait().await.unwrap().success(),
        "killed before it finished"
    );
    wait_until_unconsumed(&channel, &dead).await;

    let held = drain_task_ids(&channel, &dead).await.unwrap();
    assert_eq!(held.len(), ids.len(), "none lost, none duplicated");
    assert!(held == ids, "the same order as before");
    delete_queues(&[&queue]).await;
}
