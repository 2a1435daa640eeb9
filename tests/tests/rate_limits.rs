//! Rate limits per task name: per worker (Celery's semantics) and across
//! the cluster through a token queue on RabbitMQ. A task over its limit is
//! sent back through the delay ladder, not held, and runs later, exactly
//! once, without counting as a failure or a retry.
//!
//! Each test runs in a vhost of its own, since token queues are named
//! after tasks, and each has task names of its own.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use celeriac_producer::{Producer, ProducerConfig};
use celeriac_shared::{BrokerUrl, Rate, RateLimit, Router, Task};
use celeriac_tests::{
    GUARD, TestWorker, Vhost, channel_on, get_one, http_get, init_logging, message_count, unique,
    within,
};
use celeriac_worker::{Registry, TaskContext, TaskError, Worker, WorkerConfig};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// A task limited across the cluster.
struct ClusterFetch;
/// A task limited per worker.
struct WorkerFetch;
/// A task whose token queue exists with another burst.
struct MismatchFetch;
/// A task whose refiller's worker stops.
struct FailoverFetch;

/// Which job of a batch.
#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
}

impl Task for ClusterFetch {
    const NAME: &'static str = "rate_limits.cluster_fetch";
    type Args = Job;
    type Output = u32;
}

impl Task for WorkerFetch {
    const NAME: &'static str = "rate_limits.worker_fetch";
    type Args = Job;
    type Output = u32;
}

impl Task for FailoverFetch {
    const NAME: &'static str = "rate_limits.failover_fetch";
    type Args = Job;
    type Output = u32;
}

impl Task for MismatchFetch {
    const NAME: &'static str = "rate_limits.mismatch_fetch";
    type Args = Job;
    type Output = u32;
}

/// One run of a job: which, on which worker, with which retries count,
/// and when its handler started.
#[derive(Debug)]
struct Run {
    n: u32,
    worker: usize,
    retries: u32,
    at: Instant,
}

/// A registry whose task `T` reports every run to `runs`.
fn recording<T: Task<Args = Job, Output = u32>>(
    worker: usize,
    runs: mpsc::UnboundedSender<Run>,
) -> Registry {
    let mut registry = Registry::new();
    registry.register::<T, _, _>(move |job: Job, ctx: TaskContext| {
        let run = Run {
            n: job.n,
            worker,
            retries: ctx.retries(),
            at: Instant::now(),
        };
        runs.send(run).unwrap();
        async move { Ok::<u32, TaskError>(job.n) }
    });
    registry
}

/// A worker on `queue` of the vhost at `url` with one rate limit.
fn config(url: &BrokerUrl, queue: &str, limit: RateLimit) -> WorkerConfig {
    WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: 8,
        rate_limits: vec![limit],
        heartbeat_interval: None,
        ..WorkerConfig::default()
    }
}

fn rate(text: &str) -> Rate {
    text.parse().unwrap()
}

async fn producer_in(url: &BrokerUrl, queue: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(Vec::new(), queue),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// Sends jobs `0..count` of task `T` and waits, at most `deadline` for
/// all, until every one reported success with its own number.
async fn send_and_wait<T: Task<Args = Job, Output = u32>>(
    producer: &Producer,
    count: u32,
    deadline: Duration,
) {
    let mut handles = Vec::new();
    for n in 0..count {
        handles.push(producer.send::<T>(&Job { n }).await.unwrap());
    }
    let results = futures::future::join_all(handles.into_iter().map(|h| h.wait(deadline)));
    let results = tokio::time::timeout(deadline, results)
        .await
        .unwrap_or_else(|_| panic!("not all {count} jobs finished within {deadline:?}"));
    for (n, result) in (0..count).zip(results) {
        assert_eq!(result.unwrap(), n, "job {n} failed or got another's result");
    }
}

/// Waits until `queue` has `count` consumers (polling, bounded by
/// [`GUARD`]).
async fn wait_for_consumers(url: &BrokerUrl, queue: &str, count: u32) {
    let (connection, channel) = channel_on(url).await.unwrap();
    let deadline = Instant::now() + GUARD;
    loop {
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await
            .unwrap();
        if declared.consumer_count() >= count {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{queue} did not get {count} consumers within {GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    celeriac_tests::close(&connection).await;
}

/// Waits until the token queue of `task` holds a token (polling, bounded
/// by [`GUARD`]): its refiller is at work.
async fn wait_for_a_token(url: &BrokerUrl, task: &str) {
    let (connection, channel) = channel_on(url).await.unwrap();
    let queue = RateLimit::token_queue(task);
    let deadline = Instant::now() + GUARD;
    while message_count(&channel, &queue).await.unwrap() == 0 {
        assert!(
            Instant::now() < deadline,
            "no token in {queue} within {GUARD:?}: nobody refills it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    celeriac_tests::close(&connection).await;
}

/// Takes every token out of the token queue of `task`.
async fn drain_tokens(url: &BrokerUrl, task: &str) {
    let (connection, channel) = channel_on(url).await.unwrap();
    let queue = RateLimit::token_queue(task);
    while get_one(&channel, &queue).await.unwrap().is_some() {}
    celeriac_tests::close(&connection).await;
}

/// Messages still waiting anywhere once the workers stopped: in the
/// queue (unacknowledged ones are back there), its dead-letter queue, and
/// every level of the vhost's delay ladder.
async fn left_over(url: &BrokerUrl, queue: &str) -> (u32, u32, u32) {
    let (connection, channel) = channel_on(url).await.unwrap();
    let ready = message_count(&channel, queue).await.unwrap();
    let dead = message_count(&channel, &format!("{queue}.dead"))
        .await
        .unwrap();
    let mut delayed = 0;
    for level in 0..28 {
        let level = format!("celery_delayed_{level}");
        delayed += message_count(&channel, &level).await.unwrap();
    }
    celeriac_tests::close(&connection).await;
    (ready, dead, delayed)
}

/// All runs reported so far.
fn collect(runs: &mut mpsc::UnboundedReceiver<Run>) -> Vec<Run> {
    let mut collected = Vec::new();
    while let Ok(run) = runs.try_recv() {
        collected.push(run);
    }
    collected
}

/// The most runs that started within any window of `length`. Counting
/// the windows that start at a run is enough: any window can slide
/// forward to its first run without losing one.
fn busiest(runs: &[Run], length: Duration) -> usize {
    let mut starts: Vec<Instant> = runs.iter().map(|run| run.at).collect();
    starts.sort();
    (0..starts.len())
        .map(|i| {
            starts[i..]
                .iter()
                .take_while(|at| **at < starts[i] + length)
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Asserts the limit of `per_second` with `burst` held in every window of
/// 1, 2 and 5 s.
///
/// Tokens come at discrete instants one interval apart, so a window of a
/// whole number of intervals holds `rate × length + 1` of them when it
/// opens on one, plus the `burst` tokens saved up before it: hence the
/// `+ 1`. Timer jitter adds nothing more as long as it stays below an
/// interval: the refiller, when woken a few milliseconds late, keeps its
/// schedule (it never sends early), and a run's start is stamped a few
/// milliseconds after its token was taken.
fn assert_limited(runs: &[Run], per_second: usize, burst: usize) {
    for seconds in [1, 2, 5] {
        let length = Duration::from_secs(seconds);
        let most = busiest(runs, length);
        let bound = per_second * seconds as usize + burst + 1;
        println!("busiest window of {length:?}: {most} runs (limit {bound})");
        assert!(
            most <= bound,
            "{most} runs started within {length:?}; the limit allows {bound}"
        );
    }
}

/// Asserts that jobs `0..count` ran exactly once each, with their retries
/// count untouched by rate limiting.
fn assert_each_ran_once(runs: &[Run], count: u32) {
    let distinct: HashSet<u32> = runs.iter().map(|run| run.n).collect();
    assert_eq!(runs.len(), count as usize, "runs: {runs:?}");
    assert_eq!(distinct, (0..count).collect::<HashSet<u32>>());
    assert!(runs.iter().all(|run| run.retries == 0), "{runs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_under_one_cluster_wide_limit_run_every_task_once_within_the_limit() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("rate-cluster");
    let limit = RateLimit::cluster(ClusterFetch::NAME, rate("10/s")).with_burst(5);
    let (seen, mut runs) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for worker in 0..2 {
        let registry = recording::<ClusterFetch>(worker, seen.clone());
        let config = config(&url, &queue, limit.clone());
        workers.push(TestWorker::start_with(config, registry).await.unwrap());
    }
    wait_for_consumers(&url, &queue, 2).await;
    let producer = producer_in(&url, &queue).await;

    send_and_wait::<ClusterFetch>(&producer, 60, Duration::from_secs(90)).await;
    for worker in workers {
        worker.stop().await.unwrap();
    }

    let runs = collect(&mut runs);
    assert_each_ran_once(&runs, 60);
    assert_limited(&runs, 10, 5);
    let by: HashSet<usize> = runs.iter().map(|run| run.worker).collect();
    assert_eq!(by.len(), 2, "both workers ran tasks under the one limit");
    assert_eq!(left_over(&url, &queue).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_worker_limit_holds_and_every_task_runs_without_failing_or_retrying() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("rate-worker");
    let limit = RateLimit::per_worker(WorkerFetch::NAME, rate("5/s")).with_burst(2);
    let (seen, mut runs) = mpsc::unbounded_channel();
    let registry = recording::<WorkerFetch>(0, seen);
    let config = config(&url, &queue, limit);
    let (worker, metrics) = TestWorker::start_serving_metrics(config, registry)
        .await
        .unwrap();
    let producer = producer_in(&url, &queue).await;

    send_and_wait::<WorkerFetch>(&producer, 20, Duration::from_secs(60)).await;
    let (status, text) = within("metrics", http_get(&format!("{metrics}/metrics")))
        .await
        .unwrap();
    worker.stop().await.unwrap();

    let runs = collect(&mut runs);
    assert_each_ran_once(&runs, 20);
    assert_limited(&runs, 5, 2);
    assert_eq!(left_over(&url, &queue).await, (0, 0, 0));
    assert_eq!(status, 200);
    let series = |name: &str| format!("{name}{{task=\"{}\",queue=\"{queue}\"}}", WorkerFetch::NAME);
    let count = |name: &str| {
        let series = series(name);
        text.lines()
            .find_map(|line| line.strip_prefix(series.as_str()))
            .map(|value| value.trim().parse::<u64>().unwrap())
    };
    assert_eq!(count("celeriac_tasks_succeeded_total"), Some(20), "{text}");
    assert!(
        count("celeriac_tasks_rate_limited_total").is_some_and(|n| n > 0),
        "{text}"
    );
    assert_eq!(count("celeriac_tasks_failed_total").unwrap_or(0), 0);
    assert_eq!(count("celeriac_tasks_retried_total").unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn when_the_refillers_worker_stops_another_worker_takes_over_the_refilling() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("rate-failover");
    let limit = RateLimit::cluster(FailoverFetch::NAME, rate("5/s")).with_burst(3);
    let (seen, mut runs) = mpsc::unbounded_channel();
    let start = |worker: usize| {
        let registry = recording::<FailoverFetch>(worker, seen.clone());
        TestWorker::start_with(config(&url, &queue, limit.clone()), registry)
    };
    let first = start(0).await.unwrap();
    wait_for_a_token(&url, FailoverFetch::NAME).await;
    let second = start(1).await.unwrap();
    wait_for_consumers(&url, &queue, 2).await;

    // The first worker, the only candidate when it started, leads; once
    // it is gone, only the second can put tokens in the emptied queue.
    first.stop().await.unwrap();
    drain_tokens(&url, FailoverFetch::NAME).await;
    wait_for_a_token(&url, FailoverFetch::NAME).await;
    let producer = producer_in(&url, &queue).await;
    send_and_wait::<FailoverFetch>(&producer, 10, Duration::from_secs(60)).await;
    second.stop().await.unwrap();

    let runs = collect(&mut runs);
    assert_each_ran_once(&runs, 10);
    assert!(runs.iter().all(|run| run.worker == 1), "{runs:?}");
    assert_limited(&runs, 5, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_whose_burst_differs_from_the_token_queues_refuses_to_start_and_says_why() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("rate-mismatch");
    let (connection, channel) = channel_on(&url).await.unwrap();
    let other = RateLimit::cluster(MismatchFetch::NAME, rate("10/s")).with_burst(5);
    other
        .declare_token_queue(&channel, MismatchFetch::NAME)
        .await
        .unwrap();
    celeriac_tests::close(&connection).await;

    let limit = RateLimit::cluster(MismatchFetch::NAME, rate("10/s")).with_burst(3);
    let (seen, _runs) = mpsc::unbounded_channel();
    let registry = recording::<MismatchFetch>(0, seen);
    let worker = Worker::with_registry(config(&url, &queue, limit), registry);
    let ran = within("the worker's refusal", worker.run(std::future::pending())).await;

    let err = ran.unwrap_err();
    assert!(!err.can_be_recovered(), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("`celeriac.rate.rate_limits.mismatch_fetch`")
            && message.contains("burst (x-max-length) of 3")
            && message.contains("every worker must configure the same burst"),
        "{message}"
    );
}
