//! A worker announces itself with Celery's worker events on the
//! `celeryev` exchange: `worker-online`, a `worker-heartbeat` every
//! interval with its queues and counts, `worker-offline` on shutdown; and
//! Celery's own monitor (what Flower uses) sees it alive.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{
    EVENT_EXCHANGE, SendOptions, WORKER_EVENTS_BINDING, WorkerEvent, WorkerEventKind,
    declare_event_exchange, field_table_to_json,
};
use celeriac_tests::dashboard::producer_on;
use celeriac_tests::{
    GUARD, TestWorker, Vhost, celery_python, channel_on, consume, init_logging, next_delivery,
    python_dir, unique,
};
use celeriac_worker::WorkerConfig;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_sends_online_heartbeats_with_its_counts_and_offline() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("heartbeat");
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    declare_event_exchange(&channel).await.unwrap();
    let events = unique("events");
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(events.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    channel
        .queue_bind(
            events.as_str().into(),
            EVENT_EXCHANGE.into(),
            WORKER_EVENTS_BINDING.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = consume(&channel, &events).await.unwrap();

    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![queue.clone()],
        concurrency: 3,
        heartbeat_interval: Some(Duration::from_millis(200)),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let online = next_delivery(&mut consumer).await.unwrap();
    assert_eq!(online.routing_key.as_str(), "worker.online");
    assert_eq!(online.properties.delivery_mode(), &Some(1), "transient");
    let event = WorkerEvent::decode(&online.data).unwrap();
    assert_eq!(event.kind, WorkerEventKind::Online);
    assert_eq!(event.celeriac_queues, vec![queue.clone()]);
    assert_eq!(event.celeriac_concurrency, Some(3));
    assert_eq!(event.sw_ident, "celeriac");
    assert_eq!(event.freq, 0.2);
    assert_eq!(event.pid, std::process::id());
    let headers = field_table_to_json(online.properties.headers().as_ref().unwrap());
    assert_eq!(headers["hostname"], event.hostname.as_str());

    let producer = producer_on(vhost.url()).await.unwrap();
    let sum = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 1 }, SendOptions::queue(&queue))
        .await
        .unwrap();
    assert_eq!(sum.wait(GUARD).await.unwrap(), 2);
    let counted = loop {
        let delivery = next_delivery(&mut consumer).await.unwrap();
        let event = WorkerEvent::decode(&delivery.data).unwrap();
        assert_eq!(delivery.routing_key.as_str(), "worker.heartbeat");
        if event.processed == 1 {
            break event;
        }
    };
    assert_eq!(counted.kind, WorkerEventKind::Heartbeat);
    assert_eq!((counted.active, counted.celeriac_failed), (0, Some(0)));
    assert!(counted.clock > event.clock);

    worker.stop().await.unwrap();
    let offline = loop {
        let delivery = next_delivery(&mut consumer).await.unwrap();
        if delivery.routing_key.as_str() == "worker.offline" {
            break WorkerEvent::decode(&delivery.data).unwrap();
        }
    };
    assert_eq!(offline.kind, WorkerEventKind::Offline);
    assert_eq!(offline.processed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn celerys_own_monitor_sees_a_celeriac_worker_alive() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("flower-view");
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![queue.clone()],
        heartbeat_interval: Some(Duration::from_millis(200)),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let script = python_dir().join("watch_worker_events.py");
    let run = tokio::process::Command::new(celery_python().unwrap())
        .arg(&script)
        .env("CELERIAC_BROKER_URL", vhost.url().expose())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(GUARD * 2, run).await.unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(seen["alive"], true, "{seen}");
    assert_eq!(seen["status"], "ONLINE");
    assert_eq!(seen["sw_ident"], "celeriac");
    assert_eq!(seen["freq"], 0.2);
    assert_eq!(seen["processed"], 0);
    assert_eq!(seen["celeriac_queues"], serde_json::json!([queue]));
    assert!(
        seen["hostname"]
            .as_str()
            .unwrap()
            .starts_with("celeriac-worker-")
    );
    worker.stop().await.unwrap();
}
