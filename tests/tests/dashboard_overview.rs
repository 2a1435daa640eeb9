//! The dashboard's Overview and Workers over HTTP, called on the app
//! without a server: queue counts, dead letters, delays and workers (a
//! celeriac worker going offline, a Python Celery worker started with
//! `-E`), the pages and their live fragments, and the fallback without
//! RabbitMQ's management API.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::{StatusCode, header};
use celeriac_admin::{Dashboard, DashboardConfig};
use celeriac_demo::{Add, AddArgs};
use celeriac_shared::SendOptions;
use celeriac_tests::dashboard::{
    fast_config, get, markup_dead_letter, park_tasks, producer_on, queue_row, wait_for_overview,
};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel_on, declare_with_dead_letters, init_logging,
    publish_dead_letters, unique,
};
use celeriac_worker::WorkerConfig;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn the_overview_shows_queue_counts_dead_letters_delays_and_workers() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (idle, busy) = (unique("idle"), unique("busy"));
    let producer = producer_on(vhost.url()).await.unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![busy.clone()],
        concurrency: 4,
        heartbeat_interval: Some(Duration::from_millis(200)),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    declare_with_dead_letters(&channel, &idle).await.unwrap();
    let letters = [markup_dead_letter(&idle), markup_dead_letter(&idle)];
    publish_dead_letters(&channel, &letters).await.unwrap();
    park_tasks(&producer, &idle, 3, None).await.unwrap();
    park_tasks(&producer, &idle, 1, Some(Duration::from_secs(3600)))
        .await
        .unwrap();

    let dashboard = Dashboard::new(&producer, fast_config(&[&idle]));
    let _running = dashboard.start();
    let app = dashboard.router();
    let handle = producer
        .send_with::<Add>(&AddArgs { x: 2, y: 3 }, SendOptions::queue(&busy))
        .await
        .unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 5);

    let overview = wait_for_overview(&app, "the parked tasks and the worker", |o| {
        let row = queue_row(o, &idle);
        let counted = row.is_some_and(|r| {
            r["ready"] == 3 && r["dead_letters"] == 2 && r["delayed"] == 1 && r["exists"] == true
        });
        let worked = o["workers"].as_array().unwrap().iter().any(|w| {
            w["status"] == "online" && w["queues"] == json!([busy]) && w["processed"] == 1
        });
        let charted = o["throughput"].as_array().is_some_and(|t| !t.is_empty());
        counted && worked && charted
    })
    .await
    .unwrap();
    let announced = queue_row(&overview, &busy).expect("the worker's queue is shown");
    assert_eq!(announced["consumers"], 1);
    let worker_row = &overview["workers"][0];
    assert_eq!(worker_row["concurrency"], 4);
    assert_eq!(worker_row["failed"], 0);
    assert!(
        worker_row["software"]
            .as_str()
            .unwrap()
            .starts_with("celeriac")
    );
    assert!(overview["delayed_total"].is_u64(), "the ladder's total");
    if overview["management"] == true {
        assert!(queue_row(&overview, &idle).unwrap()["unacked"].is_u64());
    }

    let page = get(&app, "/").await.unwrap();
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(&format!("data-queue=\"{idle}\"")));
    assert!(page.body.contains("data-fragment=\"/fragments/overview\""));
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let fragment = get(&app, "/fragments/overview").await.unwrap();
    assert!(fragment.body.contains("<polyline class=\"processed\""));
    assert!(!fragment.body.contains("<html"));
    let workers = get(&app, "/workers").await.unwrap();
    assert!(
        workers
            .body
            .contains("data-fragment=\"/fragments/workers\"")
    );
    let hostname = worker_row["hostname"].as_str().unwrap();
    let fragment = get(&app, "/fragments/workers").await.unwrap();
    assert!(fragment.body.contains(hostname) && fragment.body.contains("online"));
    let script = get(&app, "/assets/dashboard.js").await.unwrap();
    assert!(
        script.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let style = get(&app, "/assets/dashboard.css").await.unwrap();
    assert_eq!(style.status, StatusCode::OK);
    assert_eq!(get(&app, "/healthz").await.unwrap().body, "ok\n");
    assert_eq!(
        get(&app, "/nothing").await.unwrap().status,
        StatusCode::NOT_FOUND
    );

    worker.stop().await.unwrap();
    wait_for_overview(&app, "the worker offline", |o| {
        o["workers"][0]["status"] == "offline"
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_management_api_counts_come_from_amqp_and_rates_are_unavailable() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("no-mgmt");
    let producer = producer_on(vhost.url()).await.unwrap();
    producer.declare_queue(&queue).await.unwrap();
    park_tasks(&producer, &queue, 2, None).await.unwrap();
    let config = DashboardConfig {
        management_url: Some("http://127.0.0.1:9".into()),
        delay_scan: None,
        ..fast_config(&[&queue])
    };
    let dashboard = Dashboard::new(&producer, config);
    dashboard.refresh().await;
    let app = dashboard.router();
    let overview = wait_for_overview(&app, "a sample", |o| !o["taken_at"].is_null())
        .await
        .unwrap();
    assert_eq!(overview["management"], false);
    let row = queue_row(&overview, &queue).unwrap();
    assert_eq!(row["ready"], 2);
    assert!(row["unacked"].is_null() && row["publish_rate"].is_null());
    assert!(row["delayed"].is_null(), "no per-queue scan");
    assert!(
        row["dead_letters"].is_null(),
        "no worker declared its dead-letter queue"
    );
    let problems = overview["problems"].to_string();
    assert!(problems.contains("management API"), "{problems}");
    let fragment = get(&app, "/fragments/overview").await.unwrap();
    assert!(
        fragment.body.contains("management"),
        "the page says why rates are missing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_celery_worker_started_with_events_is_listed() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_on(vhost.url()).await.unwrap();
    let dashboard = Dashboard::new(&producer, fast_config(&["celery"]));
    let _running = dashboard.start();
    let app = dashboard.router();
    let node = unique("pyevents");
    let celery = tokio::process::Command::new(celeriac_tests::celery_python().unwrap())
        .args([
            "-m", "celery", "-A", "pytasks", "worker", "-P", "solo", "-E",
        ])
        .args([
            "-n",
            &format!("{node}@%h"),
            "--without-gossip",
            "--without-mingle",
        ])
        .current_dir(celeriac_tests::python_dir())
        .env("CELERIAC_BROKER_URL", vhost.url().expose())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let overview = wait_for_overview(&app, "the Celery worker", |o| {
        o["workers"].as_array().unwrap().iter().any(|w| {
            w["hostname"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&node)
                && w["status"] == "online"
        })
    })
    .await
    .unwrap();
    let worker = &overview["workers"][0];
    assert!(
        worker["software"]
            .as_str()
            .unwrap()
            .starts_with("py-celery 5.")
    );
    assert!(
        worker["queues"].as_array().unwrap().is_empty(),
        "Celery does not say"
    );
    assert!(worker["failed"].is_null());
    drop(celery);
}
