//! Celery's remote control from celeriac's side: the admin library's
//! `Control` and the `celeriac inspect`, `celeriac control` and `celeriac
//! revoke` commands against a Rust worker and a Python Celery worker, each
//! test in a vhost of its own (the pidbox exchanges, `celery` and the
//! revocation stream are fixed names).
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::time::Duration;

use celeriac_admin::{Control, Replies};
use celeriac_producer::Producer;
use celeriac_shared::{BrokerUrl, DEFAULT_QUEUE, REVOCATION_STREAM, Revocation};
use celeriac_tests::dashboard::producer_on;
use celeriac_tests::{
    GUARD, Python, TestWorker, Vhost, channel_on, init_logging, unique, within, workspace_binary,
};
use celeriac_worker::WorkerConfig;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::{Map, Value, json};

/// The Python worker's queue.
const PY: &str = "py";
/// The prefix of every Rust worker's hostname.
const RUST_PREFIX: &str = "celeriac-worker-";

/// A Rust worker with the demo tasks on `celery` of `vhost`.
async fn rust_worker(vhost: &Vhost) -> TestWorker {
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        concurrency: 2,
        ..WorkerConfig::default()
    };
    TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap()
}

/// A Celery worker serving `py.*` on queue `py` of `vhost`, and the prefix
/// of its hostname (`pytasks-<uuid>@`).
async fn python_worker(vhost: &Vhost) -> (Python, String) {
    let name = unique("pytasks");
    let celery = Python::celery_worker(&vhost.url(), PY, &name)
        .await
        .unwrap();
    (celery, format!("{name}@"))
}

/// The hostname among `replies` that starts with `prefix`.
fn hostname<'a>(replies: &'a Replies, prefix: &str) -> Option<&'a str> {
    replies
        .iter()
        .map(|(hostname, _)| hostname.as_str())
        .find(|hostname| hostname.starts_with(prefix))
}

/// Pings until a worker whose hostname starts with each of `prefixes`
/// replied (a worker answers remote control a moment after it consumes
/// its task queues), failing after [`GUARD`]; returns their hostnames in
/// the order of `prefixes`.
async fn wait_for_workers(control: &Control, prefixes: &[&str]) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let replies = control
            .broadcast(
                "ping",
                Map::new(),
                None,
                Duration::from_secs(1),
                Some(prefixes.len()),
            )
            .await
            .unwrap();
        let found: Option<Vec<String>> = prefixes
            .iter()
            .map(|prefix| hostname(&replies, prefix).map(str::to_owned))
            .collect();
        if let Some(found) = found {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every worker of {prefixes:?} answered ping within {GUARD:?}: {replies:?}"
        );
    }
}

/// Runs the `celeriac` binary with `args` against `url`, for at most
/// [`GUARD`].
async fn celeriac(url: &BrokerUrl, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(args)
        .env("CELERIAC_BROKER_URL", url.expose())
        .kill_on_drop(true)
        .output();
    within(&format!("celeriac {args:?}"), run).await.unwrap()
}

/// The reply of the worker whose hostname starts with `prefix`.
fn reply_of<'a>(replies: &'a Replies, prefix: &str) -> &'a Value {
    replies
        .iter()
        .find(|(hostname, _)| hostname.starts_with(prefix))
        .map(|(_, reply)| reply)
        .unwrap_or_else(|| panic!("no reply from {prefix}*: {replies:?}"))
}

async fn producer(vhost: &Vhost) -> Producer {
    producer_on(vhost.url()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_library_pings_and_inspects_rust_and_python_workers() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let _rust = rust_worker(&vhost).await;
    let (python, py_prefix) = python_worker(&vhost).await;
    let producer = producer(&vhost).await;
    let control = Control::new(&producer);
    let hosts = wait_for_workers(&control, &[RUST_PREFIX, &py_prefix]).await;

    let everyone = control.clone().with_destination(hosts.clone());
    let pings = everyone.ping().await.unwrap();
    assert_eq!(pings.len(), 2, "{pings:?}");
    for prefix in [RUST_PREFIX, py_prefix.as_str()] {
        assert_eq!(reply_of(&pings, prefix), &json!({"ok": "pong"}));
    }

    let registered = everyone.inspect("registered").await.unwrap();
    let names = |prefix: &str| -> Vec<String> {
        serde_json::from_value(reply_of(&registered, prefix).clone()).unwrap()
    };
    assert!(
        names(RUST_PREFIX).contains(&"demo.add".to_owned()),
        "{registered:?}"
    );
    assert!(
        names(&py_prefix).contains(&"py.add".to_owned()),
        "{registered:?}"
    );

    // A destination narrows the broadcast to the workers named.
    let only_rust = control.clone().with_destination(vec![hosts[0].clone()]);
    let pings = only_rust.ping().await.unwrap();
    assert_eq!(pings, vec![(hosts[0].clone(), json!({"ok": "pong"}))]);
    let nobody = control
        .clone()
        .with_destination(vec!["nobody@nowhere".into()])
        .with_timeout(Duration::from_millis(300));
    assert_eq!(nobody.ping().await.unwrap(), Replies::new());

    python.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn celeriac_inspect_lists_rust_and_python_workers() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let _rust = rust_worker(&vhost).await;
    let (python, py_prefix) = python_worker(&vhost).await;
    let producer = producer(&vhost).await;
    let hosts = wait_for_workers(&Control::new(&producer), &[RUST_PREFIX, &py_prefix]).await;

    let url = vhost.url();
    let mut args = vec!["inspect", "ping", "--json", "--timeout", "5s"];
    for host in &hosts {
        args.extend(["--destination", host.as_str()]);
    }
    let output = celeriac(&url, &args).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let expected: Map<String, Value> = hosts
        .iter()
        .map(|host| (host.clone(), json!({"ok": "pong"})))
        .collect();
    assert_eq!(doc, Value::Object(expected), "{stderr}");

    // The text form: one block per worker.
    let output = celeriac(
        &url,
        &[
            "inspect",
            "registered",
            "--timeout",
            "5s",
            "-d",
            &hosts[0],
            "-d",
            &hosts[1],
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("-> {}: ", hosts[0])), "{stdout}");
    assert!(stdout.contains(&format!("-> {}: ", hosts[1])), "{stdout}");
    assert!(stdout.contains("    * demo.add\n"), "{stdout}");
    assert!(stdout.contains("    * py.add\n"), "{stdout}");
    assert!(stdout.ends_with("2 workers replied.\n"), "{stdout}");

    // No worker answering is exit code 1.
    let output = celeriac(
        &url,
        &[
            "inspect",
            "ping",
            "--destination",
            "nobody@nowhere",
            "--timeout",
            "300ms",
        ],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no reply from nobody@nowhere"),
        "{output:?}"
    );

    python.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn celeriac_control_shutdown_stops_the_worker_named() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let worker = rust_worker(&vhost).await;
    let producer = producer(&vhost).await;
    let hosts = wait_for_workers(&Control::new(&producer), &[RUST_PREFIX]).await;

    let output = celeriac(
        &vhost.url(),
        &["control", "shutdown", "--destination", &hosts[0]],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout, format!("shutdown sent to {}\n", hosts[0]));
    worker.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn revoke_appends_to_the_stream_and_tells_python_workers() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (python, py_prefix) = python_worker(&vhost).await;
    let producer = producer(&vhost).await;
    let hosts = wait_for_workers(&Control::new(&producer), &[&py_prefix]).await;

    let ids = vec![unique("revoked"), unique("revoked")];
    let control = Control::new(&producer)
        .with_destination(hosts.clone())
        .with_timeout(GUARD);
    let revoked = control.revoke(&ids, false).await.unwrap();
    assert_eq!(revoked.task_ids, ids);
    assert!(!revoked.terminate);
    assert_eq!(revoked.stream, REVOCATION_STREAM);
    let ack = reply_of(&revoked.replies, &py_prefix)["ok"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        ack.contains("flagged as revoked") && ids.iter().all(|id| ack.contains(id.as_str())),
        "{revoked:?}"
    );
    // Celery's worker keeps them in memory: `inspect revoked` shows them.
    let known = control.inspect("revoked").await.unwrap();
    let known: Vec<String> = serde_json::from_value(reply_of(&known, &py_prefix).clone()).unwrap();
    assert!(ids.iter().all(|id| known.contains(id)), "{known:?}");
    let found = within(
        "the revocation on the stream",
        read_revocation(&vhost.url(), &ids),
    )
    .await;
    assert!(!found.terminate);

    // A terminating revoke: Celery answers that no such task runs.
    let running = vec![unique("revoked")];
    let revoked = control.revoke(&running, true).await.unwrap();
    assert_eq!(
        reply_of(&revoked.replies, &py_prefix),
        &json!({"ok": "terminate: tasks unknown"})
    );
    let found = within(
        "the revocation on the stream",
        read_revocation(&vhost.url(), &running),
    )
    .await;
    assert!(found.terminate);

    python.terminate().await.unwrap();
}

/// Reads the revocation stream from its start until the revocation of
/// `ids`.
async fn read_revocation(url: &BrokerUrl, ids: &[String]) -> Revocation {
    let (connection, channel) = channel_on(url).await.unwrap();
    channel
        .basic_qos(100, BasicQosOptions::default())
        .await
        .unwrap();
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString(LongString::from("first")),
    );
    let mut consumer = channel
        .basic_consume(
            REVOCATION_STREAM.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .unwrap();
    let found = loop {
        let delivery = consumer
            .next()
            .await
            .expect("the stream consumer ended")
            .unwrap();
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        let revocation = Revocation::decode(&delivery.data).unwrap();
        if revocation.task_ids == ids {
            break revocation;
        }
    };
    celeriac_tests::close(&connection).await;
    found
}
