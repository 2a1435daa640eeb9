//! `celeriac dlq purge` deletes only what it is asked to and only with
//! `--yes`; mistakes (unknown id, unknown queue, broker down) exit non-zero
//! with a clear message.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use celeriac_shared::{DeadLetterTopology, TaskMessage};
use celeriac_tests::{
    celeriac, channel, declare_with_dead_letters, delete_queues, drain_task_ids, message_count,
    publish_dead_letters, rejected, unique,
};
use chrono::Utc;
use serde_json::Value;

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_older_than_deletes_only_the_old_dead_letters() {
    let queue = unique("dlq-purge");
    let (_connection, channel) = channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let old = Utc::now() - chrono::Duration::days(40);
    let letters: Vec<_> = (0..10)
        .map(|n| {
            let message = TaskMessage::new(
                "test.dlq.old_or_new",
                vec![Value::from(n)],
                Default::default(),
            );
            let failed_at = if n % 3 == 0 { old } else { Utc::now() };
            (message, rejected(&queue, failed_at))
        })
        .collect();
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();
    let young: Vec<String> = ids
        .iter()
        .enumerate()
        .filter(|(n, _)| n % 3 != 0)
        .map(|(_, id)| id.clone())
        .collect();

    let refused = celeriac(&["dlq", "purge", "--queue", &queue, "--older-than", "30d"])
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("4 would be deleted; pass --yes"),
        "{}",
        stderr(&refused)
    );
    let dead = DeadLetterTopology::queue_name(&queue);
    assert_eq!(
        message_count(&channel, &dead).await.unwrap(),
        10,
        "nothing deleted without --yes"
    );

    let purged = celeriac(&[
        "dlq",
        "purge",
        "--queue",
        &queue,
        "--older-than",
        "30d",
        "--yes",
    ])
    .await
    .unwrap();
    assert!(purged.status.success(), "{}", stderr(&purged));
    assert!(
        stdout(&purged).contains("purged 4, kept 6"),
        "{}",
        stdout(&purged)
    );
    assert_eq!(
        drain_task_ids(&channel, &dead).await.unwrap(),
        young,
        "the young ones, in order"
    );
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mistakes_exit_non_zero_with_a_clear_message() {
    let queue = unique("dlq-errors");
    let (_connection, channel) = channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let nobody = uuid::Uuid::new_v4().to_string();

    let show = celeriac(&["dlq", "show", &nobody, "--queue", &queue])
        .await
        .unwrap();
    assert!(!show.status.success());
    assert!(
        stderr(&show).contains(&format!("no dead letter with task id {nobody}")),
        "{}",
        stderr(&show)
    );
    let replay = celeriac(&["dlq", "replay", &nobody, "--queue", &queue, "--json"])
        .await
        .unwrap();
    assert!(!replay.status.success());
    assert!(
        stderr(&replay).contains(&format!("no dead letter with task id {nobody}")),
        "{}",
        stderr(&replay)
    );
    let unspecific = celeriac(&["dlq", "replay", "--queue", &queue])
        .await
        .unwrap();
    assert!(!unspecific.status.success());
    assert!(
        stderr(&unspecific).contains("--all"),
        "{}",
        stderr(&unspecific)
    );

    let missing = unique("dlq-no-such-queue");
    for args in [
        &["dlq", "list"][..],
        &["dlq", "purge", "--yes"],
        &["retries"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--queue", &missing, "--json"]);
        let output = celeriac(&args).await.unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(
            stderr(&output).contains(&format!("unknown queue `{missing}`")),
            "{}",
            stderr(&output)
        );
    }

    let down = celeriac(&[
        "--broker",
        "amqp://guest:guest@127.0.0.1:1/%2f",
        "dlq",
        "list",
    ])
    .await
    .unwrap();
    assert!(!down.status.success());
    assert!(
        stderr(&down).contains("cannot reach the broker at amqp://guest:***@127.0.0.1:1/%2f"),
        "{}",
        stderr(&down)
    );
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_letter_that_cannot_be_published_stays_in_place() {
    let queue = unique("dlq-unroutable");
    let (_connection, channel) = channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let nowhere = |exchange: &str| {
        let message = TaskMessage::new("test.dlq.lost", vec![], Default::default());
        let mut letter = rejected(&queue, Utc::now());
        letter.original_exchange = exchange.into();
        letter.original_routing_key = unique("no-such-key");
        (message, letter)
    };
    // An exchange that does not exist, and one that routes nowhere.
    let letters = [nowhere(&unique("no-such-exchange")), nowhere("amq.direct")];
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();

    let replay = celeriac(&["dlq", "replay", "--all", "--queue", &queue, "--json"])
        .await
        .unwrap();
    assert!(!replay.status.success(), "a failed replay exits non-zero");
    let summary: Value = serde_json::from_slice(&replay.stdout).unwrap();
    assert_eq!(summary["replayed"], 0);
    let failed = summary["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 2, "{summary}");
    assert!(
        failed[0]["error"].as_str().unwrap().contains("NOT_FOUND"),
        "{summary}"
    );
    assert!(
        failed[1]["error"].as_str().unwrap().contains("unroutable"),
        "{summary}"
    );
    let dead = DeadLetterTopology::queue_name(&queue);
    assert_eq!(
        drain_task_ids(&channel, &dead).await.unwrap(),
        ids,
        "both still there, in order"
    );
    delete_queues(&[&queue]).await;
}
