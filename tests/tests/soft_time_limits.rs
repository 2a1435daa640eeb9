//! A soft time limit reaches the handler as a signal it can await; a
//! handler that stops because of it fails as Celery's
//! `billiard.exceptions.SoftTimeLimitExceeded`, which a Python caller
//! catches by class. The `time_limit` control command changes a task's
//! limits while the worker runs.
#![allow(clippy::unwrap_used)]

use celeriac_shared::DEFAULT_QUEUE;
use celeriac_tests::{Python, TestWorker, Vhost, init_logging};
use celeriac_worker::{RetryPolicy, WorkerConfig};

const CLIENT: &str = "\
import os
from billiard.exceptions import SoftTimeLimitExceeded
from celery import Celery
app = Celery(broker=os.environ['CELERIAC_BROKER_URL'], backend='rpc://')
try:
    app.send_task('demo.sleep', args=[30], soft_time_limit=0.3).get(timeout=30)
    print('soft_limit no error')
except SoftTimeLimitExceeded as exc:
    print('soft_limit caught', type(exc).__module__)
print('time_limit', app.control.time_limit('demo.sleep', soft=0.2, reply=True, timeout=5))
try:
    app.send_task('demo.sleep', args=[30]).get(timeout=30)
    print('changed no error')
except SoftTimeLimitExceeded:
    print('changed caught')
";

#[tokio::test(flavor = "multi_thread")]
async fn a_python_caller_gets_soft_time_limit_exceeded() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        retry: RetryPolicy::never(),
        ..WorkerConfig::default()
    };
    let worker = TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap();
    let transcript = Python::run_args(&["-c", CLIENT], &vhost.url())
        .await
        .unwrap();
    let lines = transcript.named_lines();
    assert_eq!(
        lines.get("soft_limit"),
        Some(&"caught billiard.exceptions"),
        "{transcript}"
    );
    assert!(
        lines
            .get("time_limit")
            .is_some_and(|l| l.contains("time limits set successfully")),
        "{transcript}"
    );
    assert_eq!(lines.get("changed"), Some(&"caught"), "{transcript}");
    worker.stop().await.unwrap();
}
