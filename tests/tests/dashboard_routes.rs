//! The dashboard's routes over HTTP, called on the app without a server:
//! the overview with queue counts, dead letters, delays and workers; the
//! dead-letter pages with everything from messages escaped; replay and
//! delete behind a confirmation step and CSRF checks; the token.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use celeriac_producer::{Dashboard, DashboardConfig, Error};
use celeriac_shared::SendOptions;
use celeriac_shared::demo::{Add, AddArgs};
use celeriac_tests::dashboard::{
    TRACE_ID, csrf_of, fast_config, get, markup_dead_letter, post_form, producer_on, queue_row,
    send, wait_for_overview,
};
use celeriac_tests::{
    DemoWorker, GUARD, TestWorker, Vhost, celeriac, declare_with_dead_letters, drain_task_ids,
    http_get, init_logging, publish_dead_letters, unique,
};
use celeriac_worker::WorkerConfig;
use lapin::{Connection, ConnectionProperties};
use serde_json::{Map, Value, json};

/// Sends `count` tasks to `queue`, which nothing consumes.
async fn park_tasks(
    producer: &celeriac_producer::Producer,
    queue: &str,
    count: usize,
    countdown: Option<Duration>,
) {
    for _ in 0..count {
        let options = SendOptions {
            queue: Some(queue.to_owned()),
            ignore_result: true,
            countdown,
            ..SendOptions::default()
        };
        let _sent = producer
            .send_raw::<Value>("demo.add", vec![json!(1), json!(2)], Map::new(), options)
            .await
            .unwrap();
    }
}

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
    let worker = TestWorker::start_with(config, celeriac_worker::demo::registry())
        .await
        .unwrap();
    let connection = Connection::connect(vhost.url().expose(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    declare_with_dead_letters(&channel, &idle).await.unwrap();
    let letters = [markup_dead_letter(&idle), markup_dead_letter(&idle)];
    publish_dead_letters(&channel, &letters).await.unwrap();
    park_tasks(&producer, &idle, 3, None).await;
    park_tasks(&producer, &idle, 1, Some(Duration::from_secs(3600))).await;

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
async fn dead_letters_are_listed_escaped_replayed_and_deleted_after_confirmation() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("dash-dlq");
    let producer = producer_on(vhost.url()).await.unwrap();
    let connection = Connection::connect(vhost.url().expose(), ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let letters: Vec<_> = (0..3).map(|_| markup_dead_letter(&queue)).collect();
    let ids = publish_dead_letters(&channel, &letters).await.unwrap();
    let dashboard = Dashboard::new(&producer, fast_config(&[&queue]));
    let app = dashboard.router();

    let list = get(&app, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert_eq!(list.status, StatusCode::OK);
    assert!(ids.iter().all(|id| list.body.contains(id.as_str())));
    assert!(list.body.contains("3 dead letter(s) match"));
    assert_escaped(&list.body);
    assert!(
        list.body
            .contains("&lt;script&gt;alert(&#39;error&#39;)&lt;/script&gt;")
    );
    let none = get(&app, &format!("/dead-letters?queue={queue}&task=mail.*"))
        .await
        .unwrap();
    assert!(none.body.contains("0 dead letter(s) match"));
    let by_error = format!("/dead-letters?queue={queue}&error=ALERT%28%27ERROR");
    assert!(
        get(&app, &by_error)
            .await
            .unwrap()
            .body
            .contains("3 dead letter(s) match")
    );
    let json = get(&app, &format!("/api/dead-letters?queue={queue}"))
        .await
        .unwrap();
    let json: Value = serde_json::from_str(&json.body).unwrap();
    assert_eq!(json["count"], 3);

    let detail = get(&app, &format!("/dead-letters/{queue}/{}", ids[0]))
        .await
        .unwrap();
    assert_eq!(detail.status, StatusCode::OK);
    assert_escaped(&detail.body);
    assert!(
        detail.body.contains("&lt;b&gt;bold&lt;/b&gt; failure"),
        "error chain shown"
    );
    assert!(
        detail
            .body
            .contains(&format!("http://127.0.0.1:16686/trace/{TRACE_ID}"))
    );
    assert!(
        detail.body.contains("&lt;img src=x onerror=alert(2)&gt;"),
        "kwargs shown"
    );
    let missing = get(&app, &format!("/dead-letters/{queue}/no-such-id"))
        .await
        .unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let unknown = get(&app, "/dead-letters?queue=no-such-queue")
        .await
        .unwrap();
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let paged = DashboardConfig {
        page_size: 2,
        ..fast_config(&[&queue])
    };
    let paged = Dashboard::new(&producer, paged).router();
    let first = get(&paged, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert!(first.body.contains("1–2 of 3") && first.body.contains("rel=\"next\""));
    assert!(first.body.contains(ids[1].as_str()) && !first.body.contains(ids[2].as_str()));
    let second = format!("/dead-letters?queue={queue}&page=1");
    let second = get(&paged, &second).await.unwrap();
    assert!(second.body.contains("3–3 of 3") && second.body.contains("rel=\"prev\""));
    assert!(second.body.contains(ids[2].as_str()) && !second.body.contains(ids[0].as_str()));

    let csrf = csrf_of(&list.body).unwrap();
    let one = format!("queue={queue}&action=replay-selected&id={}", ids[0]);
    let forged = post_form(&app, "/dead-letters/confirm", &one)
        .await
        .unwrap();
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "no CSRF token");
    let nothing = format!("queue={queue}&action=delete-selected&csrf={csrf}");
    let nothing = post_form(&app, "/dead-letters/confirm", &nothing)
        .await
        .unwrap();
    assert_eq!(
        nothing.status,
        StatusCode::BAD_REQUEST,
        "nothing ticked is not all"
    );
    let confirm = post_form(&app, "/dead-letters/confirm", &format!("{one}&csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.body.contains("Replay 1 dead letter(s) selected?"));
    assert!(confirm.body.contains("action=\"/dead-letters/replay\""));
    let unconfirmed = format!("{one}&csrf={csrf}&limit=1");
    let unconfirmed = post_form(&app, "/dead-letters/replay", &unconfirmed)
        .await
        .unwrap();
    assert_eq!(
        unconfirmed.status,
        StatusCode::BAD_REQUEST,
        "needs the confirm button"
    );
    let replay = format!("{one}&csrf={csrf}&limit=1&confirm=yes");
    let cross_site = Request::post("/dead-letters/replay")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "http://evil.example")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(replay.clone()))
        .unwrap();
    let refused = send(&app, cross_site).await.unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "another origin");
    assert!(drain_task_ids(&channel, &queue).await.unwrap().is_empty());

    let replayed = post_form(&app, "/dead-letters/replay", &replay)
        .await
        .unwrap();
    assert_eq!(replayed.status, StatusCode::OK, "{}", replayed.body);
    assert!(
        replayed.body.contains("Replayed 1, failed 0"),
        "{}",
        replayed.body
    );
    assert_eq!(
        drain_task_ids(&channel, &queue).await.unwrap(),
        vec![ids[0].clone()]
    );
    let left = get(&app, &format!("/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert!(left.body.contains("2 dead letter(s) match") && !left.body.contains(&ids[0]));

    let all = format!("queue={queue}&task=reports.*&action=delete-matching&csrf={csrf}");
    let confirm = post_form(&app, "/dead-letters/confirm", &all)
        .await
        .unwrap();
    assert!(
        confirm
            .body
            .contains("Delete 2 dead letter(s) matching the filter?")
    );
    let delete = format!("{all}&limit=2&confirm=yes");
    let deleted = post_form(&app, "/dead-letters/delete", &delete)
        .await
        .unwrap();
    assert!(
        deleted.body.contains("Deleted 2, kept 0"),
        "{}",
        deleted.body
    );
    let empty = get(&app, &format!("/api/dead-letters?queue={queue}"))
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&empty.body).unwrap()["count"],
        0
    );
}

/// No markup from a message made it into the page as markup.
fn assert_escaped(html: &str) {
    for raw in ["<script>alert", "<script>x", "<b>bold", "<img src=x"] {
        assert!(!html.contains(raw), "`{raw}` unescaped in the page");
    }
    assert!(
        html.contains("&lt;script&gt;alert(&#39;args&#39;)"),
        "args shown escaped"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_guards_every_page_and_a_public_address_needs_one() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let producer = producer_on(vhost.url()).await.unwrap();
    let config = DashboardConfig {
        token: Some("s3cret".into()),
        ..fast_config(&["celery"])
    };
    let guarded = Dashboard::new(&producer, config);
    let app = guarded.router();
    let denied = get(&app, "/").await.unwrap();
    assert_eq!(denied.status, StatusCode::UNAUTHORIZED);
    assert!(
        denied.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_eq!(
        get(&app, "/api/overview").await.unwrap().status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, "/healthz").await.unwrap().status, StatusCode::OK);
    let with = |value: &str| {
        Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        send(&app, with("Bearer s3cret")).await.unwrap().status,
        StatusCode::OK
    );
    // `any:s3cret`, as a browser sends it after the basic-auth prompt.
    let basic = with("Basic YW55OnMzY3JldA==");
    assert_eq!(send(&app, basic).await.unwrap().status, StatusCode::OK);
    let wrong = send(&app, with("Bearer guess")).await.unwrap();
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    let public = "0.0.0.0:0".parse().unwrap();
    let open = Dashboard::new(&producer, fast_config(&["celery"]));
    assert!(matches!(
        open.bind(public).await,
        Err(Error::Unprotected { .. })
    ));
    assert!(open.bind("127.0.0.1:0".parse().unwrap()).await.is_ok());
    assert!(guarded.bind(public).await.is_ok());

    let cli = celeriac(&["dashboard", "--listen", "0.0.0.0:0"])
        .await
        .unwrap();
    assert!(!cli.status.success());
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(stderr.contains("without a token"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_management_api_counts_come_from_amqp_and_rates_are_unavailable() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("no-mgmt");
    let producer = producer_on(vhost.url()).await.unwrap();
    producer.declare_queue(&queue).await.unwrap();
    park_tasks(&producer, &queue, 2, None).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_serves_the_dashboard_on_the_address_it_prints() {
    init_logging();
    let mut cli = DemoWorker::spawn_program(
        "celeriac",
        &[
            "dashboard",
            "--listen",
            "127.0.0.1:0",
            "--management-url",
            "off",
        ],
        &[],
    )
    .unwrap();
    let line = cli.wait_for_line("listening on http://").await.unwrap();
    let base = line.rsplit(' ').next().unwrap().trim().to_owned();
    let (status, body) = http_get(&format!("{base}/healthz")).await.unwrap();
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http_get(&format!("{base}/")).await.unwrap();
    assert_eq!(status, 200);
    assert!(
        body.contains("data-queue=\"celery\""),
        "the default queue is shown"
    );
    cli.kill().await.unwrap();
}
