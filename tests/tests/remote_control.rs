//! Celery 5.7's own remote control (`app.control.inspect()`, `ping`,
//! `enable_events`, an unknown command, malformed messages, `shutdown`)
//! and event receiver
//! against a Rust worker, in a vhost of its own (the pidbox exchanges and
//! `celeryev` are fixed names).
#![allow(clippy::unwrap_used)]

use celeriac_shared::DEFAULT_QUEUE;
use celeriac_tests::{Python, TestWorker, Vhost, channel_on, init_logging};
use celeriac_worker::WorkerConfig;
use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread")]
async fn celery_inspects_steers_and_follows_a_rust_worker() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        concurrency: 4,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    // Malformed control messages are logged and dropped; the worker goes
    // on answering.
    let (connection, channel) = channel_on(&vhost.url()).await.unwrap();
    for garbage in [
        &b"not json"[..],
        br#"{"no_method": 1}"#,
        br#"{"method": 7}"#,
    ] {
        channel
            .basic_publish(
                "celery.pidbox".into(),
                "".into(),
                BasicPublishOptions::default(),
                garbage,
                BasicProperties::default(),
            )
            .await
            .unwrap();
    }
    celeriac_tests::close(&connection).await;

    let transcript = Python::run("control_client.py", &vhost.url())
        .await
        .unwrap();
    let lines = transcript.named_lines();
    let value = |name: &str| -> Value {
        let text = lines
            .get(name)
            .unwrap_or_else(|| panic!("no `{name}`\n{transcript}"));
        serde_json::from_str(text).unwrap()
    };
    let hostname = value("hostname");
    let hostname = hostname.as_str().unwrap();
    assert_eq!(
        value("ping")[hostname],
        json!({"ok": "pong"}),
        "{transcript}"
    );
    let registered = value("registered");
    assert!(
        registered.as_array().unwrap().contains(&json!("demo.add")),
        "{transcript}"
    );
    assert_eq!(value("max_concurrency"), json!(4));
    let queues = value("active_queues");
    assert!(
        queues.as_array().unwrap().contains(&json!(DEFAULT_QUEUE)),
        "{transcript}"
    );
    assert_eq!(value("active"), json!([]));
    assert_eq!(
        value("unknown"),
        json!([{ hostname: {"error": "KeyError('no_such_command')"} }]),
        "{transcript}"
    );
    assert_eq!(
        value("other_worker"),
        json!([]),
        "a command for another worker is ignored"
    );
    assert_eq!(
        value("enable_events"),
        json!([{ hostname: {"ok": "task events enabled"} }])
    );
    assert_eq!(value("result"), json!(5));
    assert_eq!(
        value("task_events"),
        json!(["task-received", "task-started", "task-succeeded"]),
        "{transcript}"
    );
    assert_eq!(
        value("succeeded"),
        json!({"result": "5", "hostname": hostname})
    );
    assert_eq!(
        value("common_fields"),
        json!(["clock", "hostname", "pid", "timestamp", "utcoffset"])
    );
    assert_eq!(
        value("disable_events"),
        json!([{ hostname: {"ok": "task events disabled"} }])
    );
    worker.stopped().await.unwrap();
}
