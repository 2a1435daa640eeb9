//! Several broker addresses: a producer, a worker, the `celeriac` CLI and
//! the demo worker given a list whose first address refuses connections
//! connect to the next one and run tasks, whether the list is one
//! comma-separated value or repeated `--broker` flags; a connection closed
//! by force is replaced through the list; a bad address is named, its
//! password hidden.
#![allow(clippy::unwrap_used)]

use std::process::Output;

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Router};
use celeriac_tests::{
    DemoWorker, GUARD, TestWorker, broker_url, close_connections_named, delete_queues,
    init_logging, unique, workspace_binary,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};

/// An address nothing listens on: connecting to it is refused at once.
const REFUSING: &str = "amqp://guest:guest@127.0.0.1:1/%2f";

/// The refusing address first, then the test broker.
fn refused_then_live() -> BrokerUrl {
    BrokerUrl::new(format!("{REFUSING},{}", broker_url().expose()))
}

/// `demo.add`.
fn adding() -> Registry {
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(|args: AddArgs, _ctx| async move {
        Ok::<i64, TaskError>(args.x + args.y)
    });
    registry
}

fn worker_config(url: BrokerUrl, queue: &str, name: &str) -> WorkerConfig {
    WorkerConfig {
        broker_url: url,
        queues: vec![queue.to_owned()],
        concurrency: 4,
        connection_name: name.to_owned(),
        ..WorkerConfig::default()
    }
}

async fn producer(url: BrokerUrl, queue: &str, name: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: url,
        router: Router::new(vec![], queue),
        send_timeout: GUARD,
        connection_name: name.to_owned(),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// Runs `celeriac` with `args`, and `CELERIAC_BROKER_URL` set to `env` or
/// unset.
async fn celeriac(args: &[&str], env: Option<&str>) -> Output {
    let mut command = tokio::process::Command::new(workspace_binary("celeriac").unwrap());
    command.args(args).env("NO_COLOR", "1");
    match env {
        Some(url) => command.env("CELERIAC_BROKER_URL", url),
        None => command.env_remove("CELERIAC_BROKER_URL"),
    };
    command.output().await.unwrap()
}

/// Everything a process printed, stdout then stderr.
fn printed(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_producer_and_a_worker_skip_an_address_that_refuses_connections() {
    init_logging();
    let queue = unique("addresses");
    let config = worker_config(refused_then_live(), &queue, &unique("addresses-worker"));
    let worker = TestWorker::start_with(config, adding()).await.unwrap();
    let producer = producer(refused_then_live(), &queue, &unique("addresses-producer")).await;

    let sum = producer.call::<Add>(&AddArgs { x: 1, y: 2 }, GUARD).await;
    assert_eq!(sum.unwrap(), 3);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_closed_by_force_are_replaced_through_the_list() {
    init_logging();
    let queue = unique("addresses-closed");
    let worker_name = unique("addresses-worker");
    let producer_name = unique("addresses-producer");
    let config = worker_config(refused_then_live(), &queue, &worker_name);
    let worker = TestWorker::start_with(config, adding()).await.unwrap();
    let producer = producer(refused_then_live(), &queue, &producer_name).await;
    let before = producer.call::<Add>(&AddArgs { x: 1, y: 2 }, GUARD).await;
    assert_eq!(before.unwrap(), 3);

    assert_eq!(close_connections_named(&worker_name).unwrap(), 1);
    assert_eq!(close_connections_named(&producer_name).unwrap(), 1);
    // Both replacements start at the next address in turn, the refusing
    // one, and go on to the live one.
    let after = producer.call::<Add>(&AddArgs { x: 20, y: 22 }, GUARD).await;
    assert_eq!(after.unwrap(), 42);
    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_the_demo_worker_take_repeated_flags_or_a_comma_list() {
    init_logging();
    let queue = unique("addresses-cli");
    let live = broker_url();
    let flags = ["--broker", REFUSING, "--broker", live.expose()];
    let worker_args = [&flags[..], &["--queues", &queue]].concat();
    let mut worker = DemoWorker::start(&worker_args).await.unwrap();
    let connected = format!("connected to the broker at {live}");
    assert!(
        worker.log.iter().any(|line| line.contains(&connected)),
        "{:#?}",
        worker.log
    );

    let call = ["call", "demo.add", "--args", "[1, 2]", "--queue", &queue];
    let by_flags = celeriac(&[&flags[..], &call].concat(), None).await;
    let list = refused_then_live();
    let by_list = celeriac(&call, Some(list.expose())).await;
    for output in [by_flags, by_list] {
        assert!(output.status.success(), "{}", printed(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3");
    }
    worker.kill().await.unwrap();

    let env = [("CELERIAC_BROKER_URL", list.expose())];
    let worker = DemoWorker::start_with_env(&["--queues", &queue], &env).await;
    let mut worker = worker.unwrap();
    let by_list = celeriac(&call, Some(list.expose())).await;
    assert_eq!(String::from_utf8_lossy(&by_list.stdout).trim(), "3");
    worker.kill().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_address_is_named_with_its_password_hidden() {
    let password = unique("secret");
    let bad = format!("amqp://guest:{password}@127.0.0.1:port/%2f");
    let shown = "amqp://guest:***@127.0.0.1:port/%2f";
    let live = broker_url();
    let list = format!("{},{bad}", live.expose());

    let by_list = celeriac(&["queues"], Some(&list)).await;
    let flags = ["--broker", live.expose(), "--broker", &bad, "queues"];
    let by_flags = celeriac(&flags, None).await;
    let worker = tokio::process::Command::new(workspace_binary("celeriac-demo-worker").unwrap())
        .args(["--queues", &unique("addresses-bad")])
        .env("CELERIAC_BROKER_URL", &list)
        .env("NO_COLOR", "1")
        .output();
    let worker = tokio::time::timeout(GUARD, worker).await.unwrap().unwrap();
    for output in [by_list, by_flags, worker] {
        let printed = printed(&output);
        assert!(!output.status.success(), "{printed}");
        assert!(printed.contains(shown), "{printed}");
        assert!(printed.contains("address 2 of 2"), "{printed}");
        assert!(!printed.contains(&password), "{printed}");
    }
}
