//! The `celeriac` command line against a real broker and demo worker.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Output;

use celeriac_tests::{DemoWorker, broker_url, delete_queues, unique, workspace_binary};

/// Runs `celeriac` with `args` against the test broker.
async fn celeriac(args: &[&str]) -> Output {
    tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(args)
        .env("CELERIAC_BROKER_URL", broker_url().expose())
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

/// A config file whose default queue is `queue`.
fn config_for(queue: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{queue}.toml"));
    std::fs::write(&path, format!("default_queue = \"{queue}\"\n")).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn send_call_sum_and_queues_work_against_a_demo_worker() {
    let queue = unique("cli");
    let config = config_for(&queue);
    let config = config.to_str().unwrap();
    let mut worker = DemoWorker::start(&["--queues", &queue]).await.unwrap();

    let sent = celeriac(&["send", "demo.add", "--args", "[2, 3]", "--config", config]).await;
    assert!(sent.status.success(), "{}", stderr(&sent));
    let id = stdout(&sent);
    assert_eq!(id.len(), 36, "prints the task id: {id}");
    worker
        .wait_for_line(&format!("demo.add[{id}] succeeded"))
        .await
        .unwrap();

    let called = celeriac(&[
        "call",
        "demo.add",
        "--kwargs",
        r#"{"x": 40, "y": 2}"#,
        "--config",
        config,
    ])
    .await;
    assert!(called.status.success(), "{}", stderr(&called));
    assert_eq!(stdout(&called), "42");

    let failed = celeriac(&[
        "call",
        "demo.fail",
        "--args",
        r#"["on purpose"]"#,
        "--config",
        config,
    ])
    .await;
    assert!(!failed.status.success());
    assert_eq!(
        stderr(&failed).matches("Reject: on purpose").count(),
        1,
        "the failure is printed once:\n{}",
        stderr(&failed)
    );

    let sum = celeriac(&[
        "sum", "--to", "1000000", "--chunks", "16", "--config", config,
    ])
    .await;
    assert!(sum.status.success(), "{}", stderr(&sum));
    assert!(stdout(&sum).contains("= 500000500000"), "{}", stdout(&sum));
    assert!(stdout(&sum).contains("check n(n+1)/2 = 500000500000: ok"));

    let queues = celeriac(&["queues", "--config", config]).await;
    assert!(queues.status.success(), "{}", stderr(&queues));
    assert!(
        stdout(&queues).contains(&format!("{queue}  messages=0  consumers=1")),
        "{}",
        stdout(&queues)
    );

    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_nobody_answers_times_out_naming_the_task() {
    let queue = unique("cli-timeout");
    let output = celeriac(&[
        "call",
        "demo.add",
        "--args",
        "[1, 1]",
        "--queue",
        &queue,
        "--timeout",
        "300ms",
    ])
    .await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("timed out after 300ms"), "{err}");
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topology_declare_creates_the_configured_queues() {
    let queue = unique("cli-declare");
    let path = std::env::temp_dir().join(format!("{queue}.toml"));
    std::fs::write(
        &path,
        format!("[[queue]]\nname = \"{queue}\"\nmax_priority = 5\n"),
    )
    .unwrap();
    let config = path.to_str().unwrap();
    let declared = celeriac(&["topology", "declare", "--config", config]).await;
    assert!(declared.status.success(), "{}", stderr(&declared));
    assert!(stdout(&declared).contains(&format!("declared {queue}")));
    let queues = celeriac(&["queues", "--config", config]).await;
    assert!(
        stdout(&queues).contains(&format!("{queue}  messages=0  consumers=0")),
        "{}",
        stdout(&queues)
    );
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error() {
    let not_json = celeriac(&["send", "demo.add", "--args", "[1,", "--queue", "unused"]).await;
    assert!(!not_json.status.success());
    assert!(
        stderr(&not_json).contains("--args is not JSON"),
        "{}",
        stderr(&not_json)
    );

    let not_list = celeriac(&["send", "demo.add", "--args", "{}", "--queue", "unused"]).await;
    assert!(
        stderr(&not_list).contains("--args must be a JSON array"),
        "{}",
        stderr(&not_list)
    );

    let path = std::env::temp_dir().join(format!("{}.toml", unique("broken")));
    std::fs::write(&path, "default_queue = \"a\"\n[[queue]]\nnmae = \"x\"\n").unwrap();
    let broken = celeriac(&["queues", "--config", path.to_str().unwrap()]).await;
    assert!(!broken.status.success());
    assert!(stderr(&broken).contains("line 3"), "{}", stderr(&broken));
}
