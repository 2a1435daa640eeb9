//! `celeriac retries` reads what waits in the delay ladder, for which
//! queue and roughly when it is due, and leaves it waiting. Runs in its own
//! vhost: the ladder's names are fixed and shared by everything else.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{Router, SendOptions};
use celeriac_tests::{Vhost, unique, workspace_binary};
use chrono::{DateTime, Utc};
use serde_json::Value;

async fn retries(vhost: &Vhost, args: &[&str]) -> Output {
    tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .arg("retries")
        .args(args)
        .env("CELERIAC_BROKER_URL", vhost.url().expose())
        .output()
        .await
        .unwrap()
}

async fn send_delayed(producer: &Producer, count: usize, countdown: Duration) -> Vec<String> {
    let mut ids = Vec::new();
    for x in 0..count {
        let options = SendOptions {
            countdown: Some(countdown),
            ignore_result: true,
            ..SendOptions::default()
        };
        let args = AddArgs { x: x as i64, y: 1 };
        ids.push(
            producer
                .send_with::<Add>(&args, options)
                .await
                .unwrap()
                .id()
                .to_owned(),
        );
    }
    ids
}

fn json(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn waiting_in(report: &Value, level: u64) -> u64 {
    let levels = report["levels"].as_array().unwrap();
    let level = levels.iter().find(|l| l["level"] == level).unwrap();
    level["messages"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_shows_what_waits_for_a_queue_and_when_it_is_due() {
    let vhost = Vhost::create().unwrap();
    let queue = unique("retries");
    let config = ProducerConfig {
        broker_url: vhost.url(),
        router: Router::new(vec![], &queue),
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).await.unwrap();
    let sent = Utc::now() - chrono::Duration::milliseconds(1);
    let hour = send_delayed(&producer, 3, Duration::from_secs(3600)).await;
    let soon = send_delayed(&producer, 2, Duration::from_secs(90)).await;
    let done = Utc::now();

    let report = json(&retries(&vhost, &["--queue", &queue, "--json"]).await);
    assert_eq!(report["waiting"], 5);
    // 3600 s = 2^11 + ...: level 11; 90 s = 2^6 + ...: level 6.
    assert_eq!(waiting_in(&report, 11), 3);
    assert_eq!(waiting_in(&report, 6), 2);
    assert_eq!(report["queues"][&queue]["count"], 5);
    let tasks = report["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 5);
    for task in tasks {
        let id = task["task_id"].as_str().unwrap().to_owned();
        let countdown = if hour.contains(&id) { 3600 } else { 90 };
        assert!(hour.contains(&id) || soon.contains(&id), "{task}");
        let eta: DateTime<Utc> = serde_json::from_value(task["eta"].clone()).unwrap();
        let due_by: DateTime<Utc> = serde_json::from_value(task["due_by"].clone()).unwrap();
        let countdown = chrono::Duration::seconds(countdown);
        assert!(eta >= sent + countdown && eta <= done + countdown, "{task}");
        assert!(
            due_by + chrono::Duration::seconds(2) >= eta,
            "the bound holds: {task}"
        );
        assert_eq!(task["queue"], queue.as_str());
    }

    let text = retries(&vhost, &["--queue", &queue]).await;
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(text.contains("5 message(s) waiting"), "{text}");
    assert!(text.contains("celery_delayed_11"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with(&queue) && l.contains(" 5 ")),
        "{text}"
    );

    let counted = json(&retries(&vhost, &["--queue", &queue, "--counts-only", "--json"]).await);
    assert_eq!(counted["browsed"], false);
    assert_eq!(counted["waiting"], 5, "reading gave every message back");
    let again = json(&retries(&vhost, &["--queue", &queue, "--json"]).await);
    assert_eq!(again["tasks"].as_array().unwrap().len(), 5);
}
