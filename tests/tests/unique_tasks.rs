//! Unique tasks on RabbitMQ alone: of many concurrent sends with one key,
//! one publishes and runs, the others name it; the worker releases the
//! key when the task starts or finishes (a retry keeps it, a dead letter
//! releases it), a killed worker's key is released by its TTL, and bad
//! keys and TTLs are refused before anything is sent.
//!
//! Each test runs in a vhost of its own, with queues of its own.
#![allow(clippy::unwrap_used)]

use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use celeriac_demo::{Sleep, SleepArgs};
use celeriac_producer::{Producer, ProducerConfig, TaskHandle};
use celeriac_shared::{
    BrokerUrl, CallError, DeadLetterTopology, InvalidUniqueness, MAX_UNIQUE_TTL, Router,
    SendOptions, Task, UniqueLock, UniqueUntil, Uniqueness,
};
use celeriac_tests::{
    DemoWorker, GUARD, TestWorker, Vhost, channel_on, init_logging, message_count, unique, within,
    workspace_binary,
};
use celeriac_worker::{Registry, TaskError, WorkerConfig};
use futures::future::join_all;
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// A report that is slow to build: built at most once at a time.
struct Report;

#[derive(Debug, Serialize, Deserialize)]
struct ReportArgs {
    id: u32,
}

impl Task for Report {
    const NAME: &'static str = "test.unique.report";
    type Args = ReportArgs;
    type Output = u32;
}

/// What the report handler does.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// Waits at the gate, then succeeds.
    Gated,
    /// Asks for a retry in 1 s on its first run; waits at the gate and
    /// succeeds on the second.
    RetryOnceThenGated,
    /// Rejects the task: it is dead-lettered at once.
    Reject,
}

/// What a test sees of its handler.
struct Probe {
    /// Every run's task id and retry count, as it starts.
    started: mpsc::UnboundedReceiver<(String, u32)>,
    /// Runs, counted.
    runs: Arc<AtomicUsize>,
    /// Closed until the test adds permits.
    gate: Arc<Semaphore>,
}

fn registry(behaviour: Behaviour) -> (Registry, Probe) {
    let (seen, started) = mpsc::unbounded_channel();
    let runs = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let mut registry = Registry::new();
    let (counted, gated) = (Arc::clone(&runs), Arc::clone(&gate));
    registry.register::<Report, _, _>(move |args: ReportArgs, ctx| {
        counted.fetch_add(1, Ordering::SeqCst);
        seen.send((ctx.id().to_owned(), ctx.retries())).unwrap();
        let gate = Arc::clone(&gated);
        async move {
            match (behaviour, ctx.retries()) {
                (Behaviour::Reject, _) => return Err(TaskError::reject("no report today")),
                (Behaviour::RetryOnceThenGated, 0) => {
                    return Err(TaskError::retry_after("not yet", Duration::from_secs(1)));
                }
                _ => {}
            }
            let _open = gate.acquire_owned().await.unwrap();
            Ok(args.id)
        }
    });
    (
        registry,
        Probe {
            started,
            runs,
            gate,
        },
    )
}

async fn send<T: Task>(
    producer: &Producer,
    args: &T::Args,
    unique: &Uniqueness,
) -> TaskHandle<T::Output> {
    let options = SendOptions::unique(unique.clone());
    producer.send_with::<T>(args, options).await.unwrap()
}

/// Sends (with `send`) until a send publishes (the key was released),
/// checking that every refused one named `held_by`; fails after [`GUARD`].
async fn until_new<O: serde::de::DeserializeOwned, F, Fut>(
    held_by: &str,
    mut send: F,
) -> TaskHandle<O>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = TaskHandle<O>>,
{
    let deadline = Instant::now() + GUARD;
    loop {
        let handle = send().await;
        if !handle.is_duplicate() {
            return handle;
        }
        assert_eq!(handle.id(), held_by, "only {held_by} may hold the key");
        assert!(
            Instant::now() < deadline,
            "the key was still held by {held_by} after {GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`until_new`] with a typed task.
async fn send_until_new<T: Task>(
    producer: &Producer,
    args: &T::Args,
    unique: &Uniqueness,
    held_by: &str,
) -> TaskHandle<T::Output> {
    until_new(held_by, || send::<T>(producer, args, unique)).await
}

async fn next_start(probe: &mut Probe) -> (String, u32) {
    within("a task start", probe.started.recv()).await.unwrap()
}

/// A producer on the vhost at `url` that routes every task to `queue`.
async fn producer_in(url: &BrokerUrl, queue: &str) -> Producer {
    let config = ProducerConfig {
        broker_url: url.clone(),
        router: Router::new(Vec::new(), queue),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

/// An in-process worker on `queue` of the vhost at `url`, consuming.
async fn worker_in(url: &BrokerUrl, queue: &str, registry: Registry) -> TestWorker {
    let config = WorkerConfig {
        broker_url: url.clone(),
        queues: vec![queue.to_owned()],
        concurrency: 8,
        ..WorkerConfig::default()
    };
    TestWorker::start_with(config, registry).await.unwrap()
}

/// Runs the `celeriac` binary with `args` against the vhost at `url`.
async fn celeriac_in(url: &BrokerUrl, args: &[&str]) -> Output {
    let run = tokio::process::Command::new(workspace_binary("celeriac").unwrap())
        .args(args)
        .env("CELERIAC_BROKER_URL", url.expose())
        .kill_on_drop(true)
        .output();
    within(&format!("celeriac {args:?}"), run).await.unwrap()
}

/// The number of ready messages in `queue` of the vhost at `url`.
async fn ready_in(url: &BrokerUrl, queue: &str) -> u32 {
    let (connection, channel) = channel_on(url).await.unwrap();
    let count = message_count(&channel, queue).await.unwrap();
    celeriac_tests::close(&connection).await;
    count
}

async fn queue_exists(url: &BrokerUrl, name: &str) -> bool {
    let (connection, channel) = channel_on(url).await.unwrap();
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let exists = channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await
        .is_ok();
    celeriac_tests::close(&connection).await;
    exists
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_concurrent_sends_of_one_key_run_one_task_and_all_name_it() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-hundred");
    // Spaces and a non-ASCII letter: the key's queue names are hashed.
    let key = format!("report for Zoë {}", unique("2026"));
    let unique_key = Uniqueness::new(&key).unwrap();
    let (registry, mut probe) = registry(Behaviour::Gated);
    let worker = worker_in(&url, &queue, registry).await;
    let producer = producer_in(&url, &queue).await;

    let sends = (0..100).map(|id| {
        let (producer, unique_key) = (producer.clone(), unique_key.clone());
        async move { send::<Report>(&producer, &ReportArgs { id }, &unique_key).await }
    });
    let handles = within("100 concurrent sends", join_all(sends)).await;
    let (mut new, duplicates): (Vec<_>, Vec<_>) =
        handles.into_iter().partition(|h| !h.is_duplicate());
    assert_eq!(new.len(), 1, "exactly one send published");
    let holder = new.pop().unwrap();
    let holder_id = holder.id().to_owned();
    assert_eq!(duplicates.len(), 99);
    assert!(
        duplicates.iter().all(|h| h.id() == holder_id),
        "every refused send names the holder"
    );
    assert_eq!(next_start(&mut probe).await.0, holder_id);

    probe.gate.add_permits(1000);
    holder.wait(GUARD).await.unwrap();
    assert_eq!(probe.runs.load(Ordering::SeqCst), 1, "the task ran once");
    let duplicate = duplicates.into_iter().next().unwrap();
    assert!(matches!(
        duplicate.wait(GUARD).await,
        Err(CallError::Duplicate { task_id }) if task_id == holder_id
    ));

    // Released once the task finished: the next send runs again.
    let again =
        send_until_new::<Report>(&producer, &ReportArgs { id: 7 }, &unique_key, &holder_id).await;
    let again_id = again.id().to_owned();
    assert_eq!(again.wait(GUARD).await.unwrap(), 7);
    assert_eq!(next_start(&mut probe).await.0, again_id);
    assert_eq!(probe.runs.load(Ordering::SeqCst), 2, "no refused send ran");
    assert_eq!(ready_in(&url, &queue).await, 0);

    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_held_until_started_is_held_while_queued_and_released_when_the_task_starts() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-started");
    let key = unique("started");
    let unique_key = Uniqueness::new(&key)
        .unwrap()
        .with_until(UniqueUntil::Started);
    let producer = producer_in(&url, &queue).await;

    // No worker yet: the task waits in its queue, holding the key.
    let first = send::<Report>(&producer, &ReportArgs { id: 1 }, &unique_key).await;
    assert!(!first.is_duplicate());
    let queued = send::<Report>(&producer, &ReportArgs { id: 2 }, &unique_key).await;
    assert!(queued.is_duplicate(), "held while the task is queued");
    assert_eq!(queued.id(), first.id());

    let (registry, mut probe) = registry(Behaviour::Gated);
    let worker = worker_in(&url, &queue, registry).await;
    assert_eq!(next_start(&mut probe).await.0, first.id());
    // The first task is still running (the gate is closed), yet the key
    // is free: the next send publishes.
    let second =
        send_until_new::<Report>(&producer, &ReportArgs { id: 3 }, &unique_key, first.id()).await;
    assert_eq!(next_start(&mut probe).await.0, second.id());
    assert_eq!(probe.runs.load(Ordering::SeqCst), 2);

    probe.gate.add_permits(1000);
    assert_eq!(first.wait(GUARD).await.unwrap(), 1);
    assert_eq!(second.wait(GUARD).await.unwrap(), 3);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_held_until_finished_survives_a_retry_and_is_released_when_the_task_succeeds() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-retry");
    let key = unique("retry");
    let unique_key = Uniqueness::new(&key).unwrap();
    let (registry, mut probe) = registry(Behaviour::RetryOnceThenGated);
    let worker = worker_in(&url, &queue, registry).await;
    let producer = producer_in(&url, &queue).await;

    let first = send::<Report>(&producer, &ReportArgs { id: 1 }, &unique_key).await;
    assert!(!first.is_duplicate());
    assert_eq!(next_start(&mut probe).await, (first.id().to_owned(), 0));
    // The second attempt runs (so the retry was carried out) and waits at
    // the gate: the key must still be held.
    assert_eq!(next_start(&mut probe).await, (first.id().to_owned(), 1));
    let during = send::<Report>(&producer, &ReportArgs { id: 2 }, &unique_key).await;
    assert!(during.is_duplicate(), "a retry does not release the key");
    assert_eq!(during.id(), first.id());

    probe.gate.add_permits(1000);
    let first_id = first.id().to_owned();
    assert_eq!(first.wait(GUARD).await.unwrap(), 1);
    let after =
        send_until_new::<Report>(&producer, &ReportArgs { id: 3 }, &unique_key, &first_id).await;
    assert_eq!(after.wait(GUARD).await.unwrap(), 3);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dead_lettered_task_releases_its_key_whatever_the_reason() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-dead");
    let key = unique("dead");
    let unique_key = Uniqueness::new(&key).unwrap();
    let (registry, _probe) = registry(Behaviour::Reject);
    let worker = worker_in(&url, &queue, registry).await;
    let producer = producer_in(&url, &queue).await;

    // Rejected by its handler.
    let rejected = send::<Report>(&producer, &ReportArgs { id: 1 }, &unique_key).await;
    assert!(!rejected.is_duplicate());
    let rejected_id = rejected.id().to_owned();
    let failure = rejected.wait(GUARD).await.unwrap_err();
    assert_eq!(failure.failure().unwrap().exc_type, "Reject");

    // No handler at all: dead-lettered without running.
    let unknown = until_new(&rejected_id, || async {
        let options = SendOptions::unique(unique_key.clone());
        producer
            .send_raw::<Value>("test.unique.nobody", vec![], Map::new(), options)
            .await
            .unwrap()
    })
    .await;
    let unknown_id = unknown.id().to_owned();
    let failure = unknown.wait(GUARD).await.unwrap_err();
    assert_eq!(failure.failure().unwrap().exc_type, "NotRegistered");

    let last =
        send_until_new::<Report>(&producer, &ReportArgs { id: 2 }, &unique_key, &unknown_id).await;
    assert!(last.wait(GUARD).await.is_err());
    let dead = DeadLetterTopology::queue_name(&queue);
    assert_eq!(ready_in(&url, &dead).await, 3);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_of_a_task_whose_worker_was_killed_is_released_by_its_ttl() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-killed");
    let key = unique("killed");
    let ttl = Duration::from_secs(2);
    let unique_key = Uniqueness::new(&key).unwrap().with_ttl(ttl).unwrap();
    let env = [("CELERIAC_BROKER_URL", url.expose())];
    let mut doomed = DemoWorker::start_with_env(&["--queues", &queue, "--concurrency", "1"], &env)
        .await
        .unwrap();
    let producer = producer_in(&url, &queue).await;
    let long = SleepArgs { seconds: 3600.0 };

    let sent_at = Instant::now();
    let first = send::<Sleep>(&producer, &long, &unique_key).await;
    assert!(!first.is_duplicate());
    doomed
        .wait_for_line(&format!("demo.sleep[{}] received", first.id()))
        .await
        .unwrap();
    let held = send::<Sleep>(&producer, &long, &unique_key).await;
    assert!(held.is_duplicate());
    assert_eq!(held.id(), first.id());
    doomed.kill().await.unwrap();

    // Nobody releases the key now: only its TTL can.
    let short = SleepArgs { seconds: 0.0 };
    let next = send_until_new::<Sleep>(&producer, &short, &unique_key, first.id()).await;
    assert!(
        sent_at.elapsed() >= ttl,
        "released after {:?}, before its TTL",
        sent_at.elapsed()
    );
    assert_ne!(next.id(), first.id());
    drop(next);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_keys_and_ttls_out_of_bounds_are_refused_and_nothing_is_sent() {
    assert_eq!(Uniqueness::new(""), Err(InvalidUniqueness::EmptyKey));
    let key = Uniqueness::new("k").unwrap();
    assert!(matches!(
        key.clone().with_ttl(Duration::ZERO),
        Err(InvalidUniqueness::TtlTooShort { .. })
    ));
    assert!(matches!(
        key.with_ttl(MAX_UNIQUE_TTL + Duration::from_secs(1)),
        Err(InvalidUniqueness::TtlTooLong { .. })
    ));

    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-refused");
    let key = unique("refused");
    let cases: [(&[&str], &str); 4] = [
        (&["--unique-key", ""], "must not be empty"),
        (
            &["--unique-key", &key, "--unique-ttl", "0s"],
            "shorter than the minimum",
        ),
        (
            &["--unique-key", &key, "--unique-ttl", "25h"],
            "longer than the maximum",
        ),
        (
            &["--unique-key", &key, "--unique-until", "later"],
            "not a release mode",
        ),
    ];
    for (flags, expected) in cases {
        let mut args = vec!["send", "demo.add", "--queue", &queue, "--args", "[1, 2]"];
        args.extend_from_slice(flags);
        let output = celeriac_in(&url, &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{flags:?} was accepted");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{flags:?} printed a task id");
    }
    let lock = UniqueLock::new(&key);
    for name in [queue.as_str()].into_iter().chain(lock.queues()) {
        assert!(!queue_exists(&url, name).await, "{name} was declared");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_sends_a_unique_task_once_and_then_names_its_holder() {
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-cli");
    let key = unique("cli");
    let send = || async {
        let args = [
            "send",
            "demo.add",
            "--queue",
            &queue,
            "--args",
            "[1, 2]",
            "--unique-key",
            &key,
            "--unique-until",
            "started",
            "--unique-ttl",
            "10m",
        ];
        let output = celeriac_in(&url, &args).await;
        assert!(output.status.success(), "{output:?}");
        let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
        (id, String::from_utf8(output.stderr).unwrap())
    };
    let (first, quiet) = send().await;
    assert!(!quiet.contains("held"), "{quiet}");
    let (second, said) = send().await;
    assert_eq!(second, first);
    assert!(
        said.contains(&format!("the uniqueness key is held by task {first}")),
        "{said}"
    );
    assert_eq!(ready_in(&url, &queue).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn senders_racing_the_releases_never_run_two_tasks_of_one_key_at_once() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let queue = unique("unique-race");
    let key = unique("race");
    let unique_key = Uniqueness::new(&key).unwrap();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (ran, mut runs) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    let (now, peak) = (Arc::clone(&running), Arc::clone(&most));
    registry.register::<Report, _, _>(move |args: ReportArgs, ctx| {
        let at_once = now.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(at_once, Ordering::SeqCst);
        ran.send(ctx.id().to_owned()).unwrap();
        let now = Arc::clone(&now);
        async move {
            // Some work, so that a second holder would overlap this one.
            tokio::time::sleep(Duration::from_millis(20)).await;
            now.fetch_sub(1, Ordering::SeqCst);
            Ok::<u32, TaskError>(args.id)
        }
    });
    let worker = worker_in(&url, &queue, registry).await;
    let producer = producer_in(&url, &queue).await;

    // Ten senders send the key over and over while the worker runs and
    // releases it, until 20 tasks were published.
    let published = Arc::new(AtomicUsize::new(0));
    let senders = (0..10).map(|_| {
        let (producer, unique_key) = (producer.clone(), unique_key.clone());
        let published = Arc::clone(&published);
        async move {
            let mut mine = Vec::new();
            while published.load(Ordering::SeqCst) < 20 {
                let handle = send::<Report>(&producer, &ReportArgs { id: 0 }, &unique_key).await;
                if !handle.is_duplicate() {
                    published.fetch_add(1, Ordering::SeqCst);
                    mine.push(handle);
                }
            }
            mine
        }
    });
    let handles: Vec<_> = within("racing senders", join_all(senders))
        .await
        .into_iter()
        .flatten()
        .collect();
    let mut published: Vec<String> = handles.iter().map(|h| h.id().to_owned()).collect();
    for handle in handles {
        handle.wait(GUARD).await.unwrap();
    }
    let mut ran = Vec::new();
    while let Ok(id) = runs.try_recv() {
        ran.push(id);
    }
    published.sort();
    ran.sort();
    assert_eq!(
        ran, published,
        "every published task ran once, and no other"
    );
    assert_eq!(
        most.load(Ordering::SeqCst),
        1,
        "two tasks of one key ran at once"
    );
    worker.stop().await.unwrap();
}
