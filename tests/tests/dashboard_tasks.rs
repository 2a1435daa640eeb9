//! The dashboard's Tasks page over HTTP, on the app without a server: a
//! celeriac worker with task events on runs a `demo.add` and a
//! `demo.fail` whose message is markup; the page lists both with their
//! states (escaped), filters them by name and state, shows one task with
//! its traceback, links a dead letter to its task, and streams changes
//! as server-sent events, which end when the dashboard shuts down.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::http::{StatusCode, header};
use celeriac_admin::{Dashboard, DashboardConfig};
use celeriac_demo::{Add, AddArgs, Fail, FailArgs};
use celeriac_shared::SendOptions;
use celeriac_tests::dashboard::{
    fast_config, first_event, get, producer_on, task_row_tag, wait_for_overview, wait_for_page,
};
use celeriac_tests::{GUARD, TestWorker, Vhost, init_logging, unique};
use celeriac_worker::WorkerConfig;
use serde_json::{Value, json};

/// What `demo.fail` is asked to fail with.
const MARKUP: &str = "<script>alert(1)</script>";

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_page_lists_task_events_filtered_escaped_and_streamed() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("tasks");
    let producer = producer_on(vhost.url()).await.unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![queue.clone()],
        task_events: true,
        heartbeat_interval: Some(Duration::from_millis(200)),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let dashboard = Dashboard::new(&producer, fast_config(&[&queue]));
    let _running = dashboard.start();
    let app = dashboard.router();
    // The worker's heartbeat on the dashboard's event queue says that
    // queue is bound (to `task.#` too): no task event is sent before.
    wait_for_overview(&app, "the worker", |o| {
        o["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["queues"] == json!([queue]))
    })
    .await
    .unwrap();

    let added = producer
        .send_with::<Add>(&AddArgs { x: 2, y: 3 }, SendOptions::queue(&queue))
        .await
        .unwrap();
    let add_id = added.id().to_owned();
    assert_eq!(added.wait(GUARD).await.unwrap(), 5);
    let options = SendOptions {
        ignore_result: true,
        ..SendOptions::queue(&queue)
    };
    let message = MARKUP.to_owned();
    let failed = producer
        .send_with::<Fail>(&FailArgs { message }, options)
        .await
        .unwrap();
    let fail_id = failed.id().to_owned();

    let (succeeded, failure) = (
        task_row_tag(&add_id, "SUCCESS"),
        task_row_tag(&fail_id, "FAILURE"),
    );
    let page = wait_for_page(&app, "/tasks", |body| {
        body.contains(&succeeded) && body.contains(&failure)
    })
    .await
    .unwrap();
    assert!(page.contains("<a href=\"/tasks\" aria-current=\"page\">Tasks</a>"));
    assert!(page.contains("data-events=\"/tasks/events\""));
    assert!(page.contains(&format!("<a href=\"/tasks/{fail_id}\">{fail_id}</a>")));
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );

    let named = get(&app, "/tasks?name=demo.a*").await.unwrap().body;
    assert!(named.contains(&succeeded) && !named.contains(&fail_id));
    let failures = get(&app, "/tasks?state=failure").await.unwrap().body;
    assert!(failures.contains(&failure) && !failures.contains(&add_id));
    assert!(failures.contains("<option value=\"FAILURE\" selected>"));
    let both = get(&app, "/tasks?name=demo.*&state=SUCCESS").await.unwrap();
    assert!(both.body.contains(&succeeded) && !both.body.contains(&fail_id));
    let none = get(&app, "/tasks?name=nothing.*").await.unwrap().body;
    assert!(!none.contains(&add_id) && none.contains("No tasks match."));

    let fragment = get(&app, "/tasks?fragment=1&state=FAILURE").await.unwrap();
    assert_eq!(fragment.status, StatusCode::OK);
    assert!(!fragment.body.contains("<html"));
    assert!(fragment.body.contains(&failure) && !fragment.body.contains(&add_id));
    let source = "data-source=\"/tasks?fragment=1&amp;name=demo.a%2A&amp;state=SUCCESS\"";
    let filtered = get(&app, "/tasks?name=demo.a*&state=SUCCESS")
        .await
        .unwrap();
    assert!(filtered.body.contains(source), "the filter is kept");

    let detail = get(&app, &format!("/tasks/{fail_id}")).await.unwrap();
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains("<pre class=\"traceback\">"));
    assert!(detail.body.contains("demo.fail") && detail.body.contains("FAILURE"));
    assert!(!detail.body.contains("<script>alert(1)"));
    assert!(
        detail
            .body
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    let detail = get(&app, &format!("/tasks/{add_id}")).await.unwrap();
    assert!(detail.body.contains("<pre class=\"result\">5</pre>"));
    let unknown = get(&app, "/tasks/no-such-task").await.unwrap();
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let api = get(&app, "/api/tasks?state=FAILURE").await.unwrap();
    let api: Value = serde_json::from_str(&api.body).unwrap();
    let row = api["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uuid"] == fail_id.as_str())
        .unwrap();
    assert_eq!(row["name"], "demo.fail");
    assert!(row["exception"].as_str().unwrap().contains(MARKUP));

    // The dead letter links to its task's page.
    let dead = wait_for_page(&app, &format!("/dead-letters/{queue}/{fail_id}"), |body| {
        body.contains("Dead letter")
    })
    .await
    .unwrap();
    assert!(
        dead.contains(&format!("href=\"/tasks/{fail_id}\"")),
        "{dead}"
    );

    let stream = first_event(&app, "/tasks/events").await.unwrap();
    assert_eq!(stream.status, StatusCode::OK);
    let kind = stream.headers[header::CONTENT_TYPE].to_str().unwrap();
    assert!(kind.starts_with("text/event-stream"), "{kind}");
    assert!(stream.body.starts_with("event: tasks\n"), "{}", stream.body);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tasks_pages_need_the_token() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_on(vhost.url()).await.unwrap();
    let config = DashboardConfig {
        token: Some("s3cret".into()),
        ..fast_config(&["celery"])
    };
    let app = Dashboard::new(&producer, config).router();
    for path in [
        "/tasks",
        "/tasks?fragment=1",
        "/tasks/events",
        "/tasks/x",
        "/api/tasks",
    ] {
        let reply = get(&app, path).await.unwrap();
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn open_event_streams_end_when_the_dashboard_shuts_down() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_on(vhost.url()).await.unwrap();
    let dashboard = Dashboard::new(&producer, fast_config(&["celery"]));
    let listener = dashboard
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashboard.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut stream = reqwest::get(format!("{base}/tasks/events")).await.unwrap();
    assert_eq!(stream.status(), 200);
    let first = tokio::time::timeout(GUARD, stream.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).starts_with("event: tasks"));

    let _ = stop.send(());
    let served = tokio::time::timeout(GUARD, server).await;
    served
        .expect("the server stops with a stream open")
        .unwrap()
        .unwrap();
    let rest = tokio::time::timeout(GUARD, async {
        while stream.chunk().await.unwrap_or_default().is_some() {}
    })
    .await;
    assert!(rest.is_ok(), "the stream ended");
}
