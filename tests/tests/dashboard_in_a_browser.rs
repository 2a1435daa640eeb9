//! The dashboard in a real headless Chromium, driven through chromedriver:
//! the overview's counts change live as tasks are published, a dead
//! letter is opened, replayed after confirmation, and leaves the list; the
//! Workers page lists a running worker; the Tasks page shows a task the
//! worker ran as its events arrive (over server-sent events), and links to
//! its page.
//! Screenshots go to `target/dashboard-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/ensure-chromium`
//! installs them); `CHROMIUM` and `CHROMEDRIVER` override where they are.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use celeriac_admin::Dashboard;
use celeriac_demo::{Add, AddArgs};
use celeriac_shared::SendOptions;
use celeriac_tests::dashboard::{fast_config, markup_dead_letter, producer_on};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel_on, declare_with_dead_letters, drain_task_ids, init_logging,
    publish_dead_letters, unique,
};
use celeriac_worker::WorkerConfig;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Map, Value, json};
use tokio::process::{Child, Command};

/// `$name`, or the first of `candidates` on the PATH.
fn program(name: &str, candidates: &[&str]) -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var(name) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for candidate in candidates {
            let full = dir.join(candidate);
            if full.is_file() {
                return Ok(full);
            }
        }
    }
    bail!(
        "{} not found (set {name}, or run scripts/ensure-chromium)",
        candidates[0]
    )
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    _child: Child,
    url: String,
}

impl Driver {
    async fn start() -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let binary = program("CHROMEDRIVER", &["chromedriver"])?;
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            if let Ok(response) = reqwest::get(format!("{url}/status")).await {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return Ok(Self { _child: child, url });
                }
            }
            if tokio::time::Instant::now() > deadline {
                bail!("chromedriver did not become ready within {GUARD:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A headless Chromium session.
    async fn browser(&self) -> anyhow::Result<Client> {
        let chromium = program(
            "CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        Ok(ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&self.url)
            .await?)
    }
}

/// Waits until the text of the element at `css` satisfies `ready`, failing
/// after [`GUARD`]; returns the text.
async fn wait_for_text(
    browser: &Client,
    css: &str,
    ready: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + GUARD;
    let mut last = String::new();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            // The element may be replaced by a refresh between find and text.
            if let Ok(text) = element.text().await {
                if ready(&text) {
                    return Ok(text);
                }
                last = text;
            }
        }
        if tokio::time::Instant::now() > deadline {
            let url = browser.current_url().await.map(|u| u.to_string());
            let page = browser
                .execute(
                    "return document.body ? document.body.innerText : '';",
                    vec![],
                )
                .await
                .unwrap_or_default();
            bail!(
                "`{css}` did not show what was expected within {GUARD:?}; last: {last:?}; \
                 at {url:?}, the page reads: {page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Saves a screenshot as `target/dashboard-screenshots/<name>.png` and
/// prints its path.
async fn screenshot(browser: &Client, name: &str) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, browser.screenshot().await?)?;
    println!("screenshot: {}", path.display());
    Ok(path)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_watches_counts_change_and_replays_a_dead_letter_in_a_browser() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let queue = unique("browser");
    let producer = producer_on(vhost.url()).await.unwrap();
    let (_connection, channel) = channel_on(&vhost.url()).await.unwrap();
    declare_with_dead_letters(&channel, &queue).await.unwrap();
    let ids = publish_dead_letters(&channel, &[markup_dead_letter(&queue)])
        .await
        .unwrap();

    let worker_queue = unique("browser-worker");
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![worker_queue.clone()],
        heartbeat_interval: Some(Duration::from_millis(200)),
        task_events: true,
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();

    let dashboard = Dashboard::new(&producer, fast_config(&[&queue]));
    let listener = dashboard
        .bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashboard.serve(listener, async {
        let _ = stopped.await;
    }));
    let driver = Driver::start().await.unwrap();
    let browser = driver.browser().await.unwrap();

    browser.goto(&format!("{base}/")).await.unwrap();
    let ready = format!("tr[data-queue=\"{queue}\"] td.ready");
    wait_for_text(&browser, &ready, |t| t == "0").await.unwrap();
    let dead = format!("tr[data-queue=\"{queue}\"] td.dead-letters");
    wait_for_text(&browser, &dead, |t| t == "1").await.unwrap();
    for _ in 0..3 {
        let options = SendOptions {
            queue: Some(queue.clone()),
            ignore_result: true,
            ..SendOptions::default()
        };
        let _sent = producer
            .send_raw::<Value>("demo.add", vec![json!(1), json!(2)], Map::new(), options)
            .await
            .unwrap();
    }
    // The page is not reloaded: its script refreshes the table.
    wait_for_text(&browser, &ready, |t| t == "3").await.unwrap();
    screenshot(&browser, "overview").await.unwrap();

    browser
        .goto(&format!("{base}/dead-letters?queue={queue}"))
        .await
        .unwrap();
    let link = format!("tr[data-task-id=\"{}\"] td.task-id a", ids[0]);
    browser
        .find(Locator::Css(&link))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let args = wait_for_text(&browser, "pre.args", |t| t.contains("<script>"))
        .await
        .unwrap();
    assert!(
        args.contains("alert('args')"),
        "the arguments shown as text: {args}"
    );
    let scripts = browser
        .execute("return document.scripts.length;", vec![])
        .await
        .unwrap();
    assert_eq!(
        scripts,
        json!(1),
        "only the dashboard's own script is in the page"
    );
    let trace = browser.find(Locator::Css("a.trace")).await.unwrap();
    let href = trace.attr("href").await.unwrap().unwrap_or_default();
    assert!(href.ends_with(&format!("/trace/{}", celeriac_tests::dashboard::TRACE_ID)));
    screenshot(&browser, "dead-letter").await.unwrap();

    let replay = "form.actions button[value=\"replay-selected\"]";
    browser
        .find(Locator::Css(replay))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.confirm", |t| {
        t.starts_with("Replay 1 dead letter")
    })
    .await
    .unwrap();
    let yes = "button[name=\"confirm\"]";
    browser
        .find(Locator::Css(yes))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "p.result", |t| t.starts_with("Replayed 1"))
        .await
        .unwrap();
    browser
        .find(Locator::LinkText("back to the list"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "td.empty", |t| {
        t.contains("No dead letters match")
    })
    .await
    .unwrap();
    screenshot(&browser, "dead-letters-after-replay")
        .await
        .unwrap();

    browser.goto(&format!("{base}/workers")).await.unwrap();
    wait_for_text(&browser, "tr[data-worker] td.status", |t| t == "online")
        .await
        .unwrap();
    let queues = wait_for_text(&browser, "tr[data-worker] td.queues", |t| !t.is_empty())
        .await
        .unwrap();
    assert_eq!(queues, worker_queue);
    screenshot(&browser, "workers").await.unwrap();

    // The dashboard heard the worker, so its event queue is bound: the
    // task's events reach it.
    browser
        .goto(&format!("{base}/tasks?name=demo.*"))
        .await
        .unwrap();
    wait_for_text(&browser, "table.tasks thead", |t| t.contains("State"))
        .await
        .unwrap();
    browser
        .execute("window.celeriacNotReloaded = true;", vec![])
        .await
        .unwrap();
    let added = producer
        .send_with::<Add>(&AddArgs { x: 20, y: 22 }, SendOptions::queue(&worker_queue))
        .await
        .unwrap();
    let task_id = added.id().to_owned();
    assert_eq!(added.wait(GUARD).await.unwrap(), 42);
    let row = format!("tr[data-task-id=\"{task_id}\"]");
    wait_for_text(&browser, &format!("{row} td.state"), |t| t == "SUCCESS")
        .await
        .unwrap();
    let result = wait_for_text(&browser, &format!("{row} td.result"), |t| !t.is_empty())
        .await
        .unwrap();
    assert_eq!(result, "42");
    let name = browser
        .find(Locator::Css(&format!("{row} td.name")))
        .await
        .unwrap();
    assert_eq!(name.text().await.unwrap(), "demo.add");
    let not_reloaded = browser
        .execute("return window.celeriacNotReloaded === true;", vec![])
        .await
        .unwrap();
    assert_eq!(not_reloaded, json!(true), "the list was refreshed in place");
    screenshot(&browser, "tasks").await.unwrap();
    browser
        .find(Locator::Css(&format!("{row} td.task-id a")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "pre.result", |t| t == "42")
        .await
        .unwrap();
    screenshot(&browser, "task").await.unwrap();
    browser.close().await.unwrap();
    worker.stop().await.unwrap();

    assert_eq!(
        drain_task_ids(&channel, &queue).await.unwrap().last(),
        Some(&ids[0]),
        "the replayed task is back in its queue"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
