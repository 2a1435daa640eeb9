//! Celery's `add_consumer` and `cancel_consumer` control commands change
//! what a running Rust worker consumes, without restarting it. In a vhost
//! of its own (the pidbox exchanges are fixed names).
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_admin::Control;
use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{DEFAULT_QUEUE, SendOptions};
use celeriac_tests::{GUARD, TestWorker, Vhost, init_logging};
use celeriac_worker::WorkerConfig;
use serde_json::{Map, Value, json};

fn queue_argument(queue: &str) -> Map<String, Value> {
    Map::from_iter([("queue".to_owned(), json!(queue))])
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_worker_starts_and_stops_consuming_a_queue_on_command() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let producer = Producer::connect(ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let control = Control::new(&producer).with_timeout(Duration::from_secs(5));
    let me = format!("celeriac-worker-{}@", std::process::id());
    let pings = control.ping().await.unwrap();
    let (hostname, _) = pings
        .iter()
        .find(|(name, _)| name.starts_with(&me))
        .unwrap();
    let control = control.with_destination(vec![hostname.clone()]);

    let added = control
        .command("add_consumer", queue_argument("extra"))
        .await
        .unwrap();
    assert_eq!(
        added,
        [(hostname.clone(), json!({"ok": "add consumer extra"}))]
    );
    let options = SendOptions::queue("extra");
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, options)
        .await
        .unwrap();
    assert_eq!(
        handle.wait(GUARD).await.unwrap(),
        3,
        "the added queue is consumed"
    );
    let queues = control.inspect("active_queues").await.unwrap();
    let names: Vec<&str> = queues[0]
        .1
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert!(names.contains(&"extra"), "{names:?}");

    let cancelled = control
        .command("cancel_consumer", queue_argument("extra"))
        .await
        .unwrap();
    assert_eq!(
        cancelled,
        [(
            hostname.clone(),
            json!({"ok": "no longer consuming from extra"})
        )]
    );
    let stats = producer.queue_stats("extra").await.unwrap().unwrap();
    assert_eq!(stats.consumers, 0, "the consumer is gone");
    let handle = producer.send::<Add>(&AddArgs { x: 2, y: 2 }).await.unwrap();
    assert_eq!(
        handle.wait(GUARD).await.unwrap(),
        4,
        "the worker goes on with its own queue"
    );
    worker.stop().await.unwrap();
}
