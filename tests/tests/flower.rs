//! Real Flower (2.2, from the tests' virtualenv) against a Rust worker:
//! `/api/workers` lists it with its registered tasks (Flower's inspector
//! asks for stats, registered, active queues, ... over the pidbox), and
//! `/api/tasks` lists a task it ran as `SUCCESS` (Flower turns task events
//! on with `enable_events` and follows them). In a vhost of its own.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::DEFAULT_QUEUE;
use celeriac_tests::{GUARD, Python, TestWorker, Vhost, http_get, init_logging};
use celeriac_worker::WorkerConfig;
use serde_json::Value;
use tokio::time::Instant;

/// How often the test asks Flower again (within its failure guard).
const POLL: Duration = Duration::from_millis(250);

/// A free local port for Flower.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Flower's JSON at `path`, or `None` while it does not answer yet.
async fn flower_json(port: u16, path: &str) -> Option<Value> {
    let (status, body) = http_get(&format!("http://127.0.0.1:{port}{path}"))
        .await
        .ok()?;
    (status == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

#[tokio::test(flavor = "multi_thread")]
async fn flower_lists_a_rust_worker_and_a_task_it_ran() {
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
    let port = free_port();
    let broker = format!("--broker={}", vhost.url().expose());
    let flower = Python::spawn_with_env(
        &[
            "-m",
            "celery",
            &broker,
            "flower",
            "--address=127.0.0.1",
            &format!("--port={port}"),
        ],
        &vhost.url(),
        &[("FLOWER_UNAUTHENTICATED_API", "true")],
    )
    .unwrap();
    let me = format!("celeriac-worker-{}@", std::process::id());

    let deadline = Instant::now() + GUARD * 2;
    let registered = loop {
        let workers = flower_json(port, "/api/workers?refresh=1").await;
        let mine = workers
            .as_ref()
            .and_then(Value::as_object)
            .and_then(|workers| workers.iter().find(|(name, _)| name.starts_with(&me)))
            .and_then(|(_, info)| info.get("registered").cloned());
        if let Some(Value::Array(tasks)) = mine {
            break tasks;
        }
        assert!(
            Instant::now() < deadline,
            "Flower never listed the worker\n{}",
            flower.transcript()
        );
        tokio::time::sleep(POLL).await;
    };
    assert!(registered.iter().any(|t| t == "demo.add"), "{registered:?}");

    // Flower turns events on every few seconds; send tasks until one
    // shows up as succeeded.
    let producer = Producer::connect(ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    loop {
        let handle = producer.send::<Add>(&AddArgs { x: 2, y: 3 }).await.unwrap();
        ids.push(handle.id().to_owned());
        assert_eq!(handle.wait(GUARD).await.unwrap(), 5);
        let tasks = flower_json(port, "/api/tasks").await.unwrap_or_default();
        let succeeded = ids
            .iter()
            .any(|id| tasks.get(id).and_then(|t| t.get("state")) == Some(&Value::from("SUCCESS")));
        if succeeded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Flower never listed a task as SUCCESS: {tasks}\n{}",
            flower.transcript()
        );
        tokio::time::sleep(POLL).await;
    }
    drop(flower);
    worker.stop().await.unwrap();
}
