//! The broker password never appears in anything celeriac prints: the
//! CLI's output, a worker's log at trace level (lapin's included), error
//! messages, and the `Debug` and `Display` of configs, producers and
//! errors (and the dashboard's `Debug` never shows its access token); whether the broker takes the URL or not (wrong password, unknown
//! vhost, unreachable port, malformed URL).
//!
//! Each test runs as its own RabbitMQ user with a unique password, on its
//! own vhost, and greps everything for that password.
#![allow(clippy::unwrap_used)]

use std::process::{Output, Stdio};

use celeriac_admin::DashboardConfig;
use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::BrokerUrl;
use celeriac_tests::{BrokerUser, DemoWorker, GUARD, unique, wait_for_consumers, workspace_binary};
use celeriac_worker::{Worker, WorkerConfig};

/// Runs `celeriac` with `url` in `CELERIAC_BROKER_URL` and every log on.
async fn celeriac(url: &BrokerUrl, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(args)
        .env("CELERIAC_BROKER_URL", url.expose())
        .env("CELERIAC_LOG", "trace")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(GUARD, run).await.unwrap().unwrap()
}

/// Runs the demo worker on `url` with every log on, until it exits.
async fn failing_worker(url: &BrokerUrl) -> Output {
    let run = tokio::process::Command::new(workspace_binary("celeriac-demo-worker").unwrap())
        .args(["--queues", &unique("secret-refused")])
        .env("CELERIAC_BROKER_URL", url.expose())
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(GUARD, run).await.unwrap().unwrap()
}

/// Stdout then stderr.
fn printed(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// An error's `Display` and `Debug`, and those of all its sources.
fn report(err: &dyn std::error::Error) -> String {
    let mut text = format!("{err} {err:?}");
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!("\n{cause} {cause:?}"));
        source = cause.source();
    }
    text
}

#[track_caller]
fn assert_hidden(text: &str, password: &str, what: &str) {
    assert!(
        !text.contains(password),
        "{what} printed the password:\n{text}"
    );
}

/// `args` with the config file's default queue set to `queue`.
fn config_for(queue: &str) -> String {
    let path = std::env::temp_dir().join(format!("{queue}.toml"));
    std::fs::write(&path, format!("default_queue = \"{queue}\"\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_a_worker_at_trace_level_never_print_the_password() {
    let user = BrokerUser::create().unwrap();
    let url = user.url();
    let queue = unique("secret");
    let config = config_for(&queue);
    let worker = tokio::process::Command::new(workspace_binary("celeriac-demo-worker").unwrap())
        .args(["--queues", &queue, "--concurrency", "1"])
        .env("CELERIAC_BROKER_URL", url.expose())
        .env("RUST_LOG", "trace")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = worker.id().unwrap().to_string();
    let mut worker_output = tokio::spawn(worker.wait_with_output());
    wait_for_consumers(&url, std::slice::from_ref(&queue))
        .await
        .unwrap();

    // Each command must succeed (or fail, for `demo.fail`) and print no
    // password; returns its stdout and all it printed.
    let run = async |args: &[&str], succeeds: bool| {
        let args = [args, &["--config", &config]].concat();
        let output = celeriac(&url, &args).await;
        let text = printed(&output);
        assert_eq!(output.status.success(), succeeds, "{args:?}: {text}");
        assert_hidden(&text, &user.password, "the CLI");
        (
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            text,
        )
    };
    run(&["send", "demo.add", "--args", "[2, 3]"], true).await;
    let (fail_id, _) = run(&["send", "demo.fail", "--args", r#"["on purpose"]"#], true).await;
    let fail_id = fail_id.as_str();
    let (called, _) = run(&["call", "demo.add", "--args", "[2, 3]"], true).await;
    assert_eq!(called, "5");
    let (_, failed) = run(&["call", "demo.fail", "--args", r#"["again"]"#], false).await;
    assert!(failed.contains("Reject: again"), "{failed}");
    run(&["send", "demo.add", "--countdown", "1h"], true).await;
    run(&["sum", "--to", "100", "--chunks", "2"], true).await;
    run(&["queues"], true).await;
    run(&["topology", "declare"], true).await;
    let (listed, _) = run(&["dlq", "list", "--queue", &queue], true).await;
    assert!(
        listed.contains(fail_id),
        "the dead letter is listed: {listed}"
    );
    run(&["dlq", "show", fail_id, "--queue", &queue], true).await;
    run(&["retries", "--queue", &queue], true).await;
    run(&["--broker", url.expose(), "queues"], true).await;
    run(&["--help"], true).await;

    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let stopped = tokio::time::timeout(GUARD, &mut worker_output).await;
    let in_time = stopped.is_ok();
    if !in_time {
        // Kill it to see what it was doing instead of stopping.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
    }
    let output = match stopped {
        Ok(output) => output,
        Err(_) => worker_output.await,
    }
    .unwrap()
    .unwrap();
    let log = printed(&output);
    let tail: Vec<&str> = log.lines().rev().take(60).collect();
    assert!(
        in_time,
        "the worker did not stop within {GUARD:?} of SIGTERM; its last lines, newest first:\n{}",
        tail.join("\n")
    );
    assert!(output.status.success(), "{log}");
    assert!(
        log.contains("worker ready") && log.contains("TRACE lapin"),
        "{log}"
    );
    assert!(log.contains(&format!("demo.fail[{fail_id}]")), "{log}");
    assert_hidden(&log, &user.password, "the worker");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_unreachable_and_malformed_urls_never_print_the_password() {
    let user = BrokerUser::create().unwrap();
    let (name, password, vhost) = (&user.name, &user.password, &user.vhost.name);
    let wrong = unique("wrong-secret");
    let cases = [
        (
            "wrong password",
            user.url_with(&wrong, vhost),
            wrong.as_str(),
        ),
        (
            "unknown vhost",
            user.url_with(password, &unique("no-vhost")),
            password,
        ),
        (
            "malformed URL",
            BrokerUrl::new(format!("amqp:{name}:{password}@127.0.0.1:5672/{vhost}")),
            password,
        ),
        (
            "raw / in the password",
            BrokerUrl::new(format!("amqp://{name}:{password}/x@127.0.0.1:5672/{vhost}")),
            password,
        ),
    ];
    for (case, url, secret) in &cases {
        let by_flag = ["--broker", url.expose(), "queues"];
        for args in [
            &["queues"][..],
            &["send", "demo.add", "--args", "[1, 1]"],
            &by_flag,
        ] {
            let output = celeriac(url, args).await;
            let text = printed(&output);
            assert!(!output.status.success(), "{case}: {text}");
            assert!(text.contains(":***@"), "{case}: {text}");
            assert_hidden(&text, secret, case);
            assert_hidden(&text, password, case);
        }
        let output = failing_worker(url).await;
        let text = printed(&output);
        assert!(!output.status.success(), "{case}: {text}");
        assert!(text.contains("worker failed"), "{case}: {text}");
        assert_hidden(&text, secret, case);
        assert_hidden(&text, password, case);
    }

    let unreachable = BrokerUrl::new(format!("amqp://{name}:{password}@127.0.0.1:1/{vhost}"));
    let output = celeriac(&unreachable, &["queues"]).await;
    assert!(!output.status.success());
    assert!(printed(&output).contains(&format!("{name}:***@127.0.0.1:1")));
    assert_hidden(
        &printed(&output),
        password,
        "the CLI on an unreachable port",
    );
    let env = [
        ("CELERIAC_BROKER_URL", unreachable.expose()),
        ("RUST_LOG", "trace"),
    ];
    let mut worker = DemoWorker::spawn(&[], &env).unwrap();
    for _ in 0..2 {
        worker.wait_for_line("reconnecting").await.unwrap();
    }
    worker.kill().await.unwrap();
    assert_hidden(&worker.log.join("\n"), password, "a reconnecting worker");
}

#[tokio::test(flavor = "multi_thread")]
async fn configs_producers_and_errors_never_show_the_password() {
    let user = BrokerUser::create().unwrap();
    let (url, password) = (user.url(), user.password.as_str());
    assert_hidden(&format!("{url} {url:?}"), password, "BrokerUrl");
    let producer_config = ProducerConfig {
        broker_url: url.clone(),
        ..ProducerConfig::default()
    };
    assert_hidden(&format!("{producer_config:?}"), password, "ProducerConfig");
    let worker_config = |url: BrokerUrl| WorkerConfig {
        broker_url: url,
        queues: vec![unique("secret-debug")],
        ..WorkerConfig::default()
    };
    let debug = format!("{:?}", worker_config(url.clone()));
    assert_hidden(&debug, password, "WorkerConfig");
    let producer = Producer::connect(producer_config).await.unwrap();
    assert_hidden(&format!("{producer:?}"), password, "Producer");
    let token = unique("dashboard-token");
    let dashboard_config = DashboardConfig {
        token: Some(token.clone()),
        ..DashboardConfig::default()
    };
    assert_hidden(&format!("{dashboard_config:?}"), &token, "DashboardConfig");

    let (name, vhost) = (&user.name, &user.vhost.name);
    let wrong = unique("wrong-secret");
    for (case, url, secret) in [
        (
            "wrong password",
            user.url_with(&wrong, vhost),
            wrong.as_str(),
        ),
        (
            "unknown vhost",
            user.url_with(password, "no-vhost"),
            password,
        ),
        (
            "malformed URL",
            BrokerUrl::new(format!("amqp:{name}:{password}@127.0.0.1:5672/{vhost}")),
            password,
        ),
        (
            "unreachable port",
            BrokerUrl::new(format!("amqp://{name}:{password}@127.0.0.1:1/{vhost}")),
            password,
        ),
    ] {
        let config = ProducerConfig {
            broker_url: url.clone(),
            ..ProducerConfig::default()
        };
        let err = Producer::connect(config).await.unwrap_err();
        assert_hidden(&report(&err), secret, case);
        if case == "unreachable port" {
            continue; // a worker waits for the broker to come back
        }
        let run = Worker::new(worker_config(url)).run(std::future::pending());
        let err = tokio::time::timeout(GUARD, run).await.unwrap().unwrap_err();
        assert!(!err.can_be_recovered(), "{case}: {err}");
        assert_hidden(&report(&err), secret, case);
    }
}
