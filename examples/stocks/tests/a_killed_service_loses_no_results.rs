//! The stocks service as a real process, killed (SIGKILL) with refreshes
//! in flight: a service started afterwards on the same named reply queue
//! records their results, so no refresh is lost with the process that
//! sent it.
//!
//! Run with
//! `cargo test -p celeriac-example-stocks --test a_killed_service_loses_no_results`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use celeriac_example_stocks::{RefreshArgs, RefreshStocks, refresh};
use celeriac_tests::{TestWorker, broker_url, delete_queues, unique, within};
use celeriac_worker::{Registry, TaskContext};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::watch;

/// A registry whose refreshes wait until `gate` is open.
fn gated_registry(gate: watch::Receiver<bool>) -> Registry {
    let mut registry = Registry::new();
    registry.register::<RefreshStocks, _, _>(move |args: RefreshArgs, ctx: TaskContext| {
        let mut gate = gate.clone();
        async move {
            let _ = gate.wait_for(|open| *open).await;
            refresh(args, ctx).await
        }
    });
    registry
}

/// A free port on 127.0.0.1.
async fn free_address() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    listener.local_addr().unwrap()
}

/// Starts `stocks-service` on a free port; returns it and its base URL
/// once it answers `/healthz`.
async fn start_service(queue: &str, replies: &str) -> (Child, String) {
    let address = free_address().await;
    let child = Command::new(env!("CARGO_BIN_EXE_stocks-service"))
        .args(["--listen", &address.to_string(), "--queue", queue])
        .args(["--reply-queue", replies, "--symbols", "ACME,GLOBEX"])
        .args(["--latency", "20ms", "--broker", broker_url().expose()])
        .env("RUST_LOG", "warn")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{address}");
    within("the service answering /healthz", async {
        while !reqwest::get(format!("{base}/healthz"))
            .await
            .is_ok_and(|response| response.status().is_success())
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (child, base)
}

/// Posts a refresh of every stock; returns its task id.
async fn post_refresh(base: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{base}/stocks/refresh"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let accepted: Value = response.json().await.unwrap();
    accepted["task_id"].as_str().unwrap().to_owned()
}

/// Polls the task on `base` until it is known and no longer PENDING (the
/// wait is bounded by `within`).
async fn finished_task(base: &str, task_id: &str) -> Value {
    within("the task finishing", async {
        loop {
            let response = reqwest::get(format!("{base}/tasks/{task_id}"))
                .await
                .unwrap();
            if response.status().is_success() {
                let task: Value = response.json().await.unwrap();
                if task["state"] != "PENDING" {
                    return task;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_in_flight_when_the_service_is_killed_land_on_the_next_one() {
    let (queue, replies) = (unique("stocks"), unique("stocks-service.replies"));
    let (open, gate) = watch::channel(false);
    let worker = TestWorker::start(&[&queue], gated_registry(gate))
        .await
        .unwrap();

    let (mut first, base) = start_service(&queue, &replies).await;
    let sent = [post_refresh(&base).await, post_refresh(&base).await];
    first.kill().await.unwrap();

    open.send(true).unwrap();
    let (mut second, base) = start_service(&queue, &replies).await;
    for task_id in &sent {
        let task = finished_task(&base, task_id).await;
        assert_eq!(task["state"], "SUCCESS", "{task}");
    }
    let stocks: Value = reqwest::get(format!("{base}/stocks"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for stock in stocks.as_array().unwrap() {
        assert_eq!(stock["status"], "ready", "{stocks}");
    }
    second.kill().await.unwrap();
    worker.stop().await.unwrap();
    delete_queues(&[&queue, &replies]).await;
}
