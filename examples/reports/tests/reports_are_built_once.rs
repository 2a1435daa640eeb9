//! The reports example over HTTP against the real broker: a hundred
//! concurrent requests for one report start one build, and all name it;
//! once that build finished, the next request starts a new one. Each test
//! runs in a vhost of its own.
//!
//! Run with `cargo test -p celeriac-example-reports --test reports_are_built_once`.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use celeriac_example_reports::{App, BuildReport, Report, ReportArgs, router};
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Router};
use celeriac_tests::{GUARD, TestWorker, Vhost, unique, within};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use futures::future::join_all;
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// A worker on `queue` of the vhost at `url` whose builds are counted,
/// announce their task id and wait at `gate`.
async fn gated_worker(
    url: &BrokerUrl,
    queue: &str,
    gate: Arc<Semaphore>,
) -> (
    TestWorker,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<String>,
) {
    let builds = Arc::new(AtomicUsize::new(0));
    let (started, starts) = mpsc::unbounded_channel();
    let counted = Arc::clone(&builds);
    let mut registry = Registry::new();
    registry.register::<BuildReport, _, _>(move |args: ReportArgs, ctx| {
        counted.fetch_add(1, Ordering::SeqCst);
        started.send(ctx.id().to_owned()).unwrap();
        let gate = Arc::clone(&gate);
        async move {
            let _open = gate.acquire_owned().await.unwrap();
            Ok::<Report, TaskError>(Report {
                report_id: args.report_id,
                built_by: ctx.id().to_owned(),
            })
        }
    });
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: 8,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, registry).await.unwrap();
    (worker, builds, starts)
}

/// Serves the app, sending to `queue` of the vhost at `url`, on a free
/// port; its base URL.
async fn start_service(url: &BrokerUrl, queue: &str) -> String {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(Vec::new(), queue),
        ..ProducerConfig::default()
    };
    let app = App {
        producer: Producer::connect(config).await.unwrap(),
        build_time: Duration::ZERO,
        unique_ttl: Duration::from_secs(600),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(app)).await });
    base
}

async fn request(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.post(url).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_requests_for_one_report_start_one_build() {
    let vhost = Vhost::create().unwrap();
    let broker = vhost.url();
    let queue = unique("reports");
    let report = unique("q3");
    let gate = Arc::new(Semaphore::new(0));
    let (worker, builds, mut starts) = gated_worker(&broker, &queue, Arc::clone(&gate)).await;
    let base = start_service(&broker, &queue).await;
    let url = format!("{base}/reports/{report}");
    let client = reqwest::Client::new();

    let requests = (0..100).map(|_| request(&client, &url));
    let answers = within("100 requests", join_all(requests)).await;
    let started: Vec<&Value> = answers
        .iter()
        .filter(|(_, body)| body["started"] == true)
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body
        })
        .collect();
    assert_eq!(started.len(), 1, "one request started the build");
    let task_id = started[0]["task_id"].as_str().unwrap().to_owned();
    for (status, body) in &answers {
        assert_eq!(
            body["task_id"],
            task_id.as_str(),
            "every answer names the build"
        );
        assert_eq!(body["report_id"], report.as_str());
        if body["started"] == false {
            assert_eq!(*status, 200, "{body}");
        }
    }
    assert_eq!(within("the build", starts.recv()).await.unwrap(), task_id);

    // The build finishes; the next request starts a new one.
    gate.add_permits(1000);
    let deadline = Instant::now() + GUARD;
    let next = loop {
        let (_, body) = request(&client, &url).await;
        if body["started"] == true {
            break body["task_id"].as_str().unwrap().to_owned();
        }
        assert_eq!(body["task_id"], task_id.as_str());
        assert!(Instant::now() < deadline, "still building after {GUARD:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(next, task_id);
    assert_eq!(within("the next build", starts.recv()).await.unwrap(), next);
    assert_eq!(builds.load(Ordering::SeqCst), 2, "one build per release");

    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_id_too_long_for_a_key_is_refused() {
    let vhost = Vhost::create().unwrap();
    let queue = unique("reports-bad");
    let base = start_service(&vhost.url(), &queue).await;
    let url = format!("{base}/reports/{}", "x".repeat(2000));
    let (status, body) = request(&reqwest::Client::new(), &url).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("longer than the maximum")
    );
}
