//! Celery workflows across Rust and Python: Celery 5.7's own canvas
//! (chain, link, link_error, immutable steps, a failing step) through the
//! Rust worker, and chain, group and chord from the Rust producer with
//! Python steps, the chord joined on RabbitMQ alone, also when the worker
//! joining it is killed.
//!
//! Each test runs in its own vhost: Celery's fixed queue `celery` and
//! celeriac's chord queue are the point. A Rust worker serves `demo.*` on
//! `celery`; a Celery worker (`tests/python/pytasks.py`) serves `py.*` on
//! `py`.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::{Producer, ProducerConfig, TaskHandle};
use celeriac_shared::{CHORD_QUEUE, CallError, ChordJoin, DEFAULT_QUEUE, ResultMessage, Signature};
use celeriac_tests::{
    DemoWorker, GUARD, Python, TestWorker, Vhost, channel_on, close, get_one, init_logging,
    message_count, publish_raw, unique, within,
};
use celeriac_worker::WorkerConfig;
use lapin::Channel;
use lapin::message::BasicGetMessage;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

/// The queue the Python worker serves.
const PY: &str = "py";

/// A Celery worker serving `py.*` on queue `py` of `vhost`.
async fn python_worker(vhost: &Vhost) -> Python {
    Python::celery_worker(&vhost.url(), PY, &unique("pytasks"))
        .await
        .unwrap()
}

/// A Rust worker with the demo tasks on `celery` of `vhost`, joining
/// chords.
async fn rust_worker(vhost: &Vhost) -> TestWorker {
    let config = WorkerConfig {
        broker_url: vhost.url(),
        queues: vec![DEFAULT_QUEUE.to_owned()],
        concurrency: 8,
        ..WorkerConfig::default()
    };
    TestWorker::start_with(config, celeriac_demo::registry())
        .await
        .unwrap()
}

async fn producer_in(vhost: &Vhost) -> Producer {
    let config = ProducerConfig {
        broker_url: vhost.url(),
        ..ProducerConfig::default()
    };
    Producer::connect(config).await.unwrap()
}

fn named(task: &str, args: Vec<Value>) -> Signature {
    Signature::named(task, args, Map::new())
}

fn python(task: &str, args: Vec<Value>) -> Signature {
    named(task, args).option("queue", PY)
}

#[tokio::test(flavor = "multi_thread")]
async fn celerys_own_canvas_runs_through_the_rust_worker() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let worker = rust_worker(&vhost).await;
    let celery = python_worker(&vhost).await;

    let run = Python::run("canvas_client.py", &vhost.url()).await;
    let transcript = match run {
        Ok(transcript) => transcript,
        Err(err) => panic!("{err:#}\n--- celery worker ---\n{}", celery.transcript()),
    };
    let lines = transcript.named_lines();
    let line = |name: &str| lines.get(name).copied().unwrap_or("(missing)");
    assert_eq!(line("chain"), "ok 8", "add(2, 2) then add(4)\n{transcript}");
    assert_eq!(
        line("mixed_chain"),
        "ok 112",
        "Rust, Python, Rust\n{transcript}"
    );
    assert_eq!(
        line("immutable"),
        "ok 30",
        "an .si() step ignores the result\n{transcript}"
    );
    assert!(
        line("failing_step").starts_with("raised ")
            && line("failing_step").contains("boom in a chain"),
        "the chain's caller gets the failing step's error\n{transcript}"
    );
    assert_eq!(line("link_parent"), "ok 42", "{transcript}");
    assert_eq!(
        line("link"),
        "ok 43",
        "the callback got the result\n{transcript}"
    );
    assert!(
        line("link_error_parent").starts_with("raised "),
        "{transcript}"
    );
    let failed_id = line("failed_id");
    assert_eq!(
        line("link_error"),
        format!("ok ['{failed_id}']"),
        "the errback got the failed task's id\n{transcript}"
    );
    worker.stop().await.unwrap();
    celery.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rust_chain_group_and_chord_with_python_steps() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let worker = rust_worker(&vhost).await;
    let celery = python_worker(&vhost).await;
    let producer = producer_in(&vhost).await;
    let context = || format!("--- celery worker ---\n{}", celery.transcript());

    let chain = vec![
        Signature::of::<Add>(&AddArgs { x: 1, y: 2 }).unwrap(),
        python("py.add", vec![json!(10)]),
        named("demo.add", vec![json!(100)]),
    ];
    let handle = producer.chain::<i64>(chain).await.unwrap();
    let total = handle.wait(GUARD).await;
    assert_eq!(total.unwrap_or_else(|e| panic!("{e}\n{}", context())), 113);

    let failing = vec![
        named("demo.add", vec![json!(1), json!(1)]),
        python("py.fail", vec![]),
        named("demo.add", vec![json!(1)]),
    ];
    let handle = producer.chain::<i64>(failing).await.unwrap();
    match handle.wait(GUARD).await {
        Err(CallError::Failed { failure, .. }) => assert_eq!(failure.exc_type, "ValueError"),
        other => panic!(
            "expected the Python step's ValueError, got {other:?}\n{}",
            context()
        ),
    }

    let group = vec![
        named("demo.add", vec![json!(1), json!(1)]),
        python("py.add", vec![json!(2), json!(2)]),
    ];
    let results = producer
        .group::<i64>(group)
        .await
        .unwrap()
        .join(GUARD)
        .await;
    let results: Vec<i64> = results.into_iter().map(Result::unwrap).collect();
    assert_eq!(results, [2, 4], "in order");

    let mut header: Vec<Signature> = (0..5)
        .map(|i| python("py.add", vec![json!(i), json!(i)]))
        .collect();
    header.push(named("demo.add", vec![json!(50), json!(50)]));
    let handle = producer
        .chord::<i64>(header, named("demo.total", vec![]))
        .await
        .unwrap();
    let total = handle.wait(GUARD).await;
    assert_eq!(total.unwrap_or_else(|e| panic!("{e}\n{}", context())), 120);

    let header = vec![
        named("demo.add", vec![json!(1), json!(1)]),
        named("demo.fail", vec![json!("no")]),
    ];
    let handle = producer
        .chord::<i64>(header, python("py.tsum", vec![]))
        .await
        .unwrap();
    match handle.wait(GUARD).await {
        Err(CallError::Failed { failure, .. }) => assert_eq!(failure.exc_type, "ChordError"),
        other => panic!("expected ChordError, got {other:?}"),
    }

    let handle = producer
        .chord::<i64>(Vec::new(), python("py.tsum", vec![]))
        .await
        .unwrap();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 0, "an empty header");

    worker.stop().await.unwrap();
    celery.terminate().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chord_survives_the_worker_joining_it_being_killed() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let url = vhost.url();
    let env = [("CELERIAC_BROKER_URL", url.expose())];
    let queue = unique("chord-kill");
    let args = ["--queues", queue.as_str(), "--heartbeat-interval", "off"];
    let producer = producer_in(&vhost).await;
    // The header runs (and its results wait) while no worker joins.
    let mut first = DemoWorker::start_with_env(&args, &env).await.unwrap();
    let header: Vec<Signature> = (1..=20)
        .map(|i| named("demo.add", vec![json!(i), json!(0)]).option("queue", queue.as_str()))
        .collect();
    let body = named("demo.total", vec![]).option("queue", queue.as_str());
    let handle = producer.chord::<i64>(header, body).await.unwrap();

    // Kill the worker the moment it takes the join, up to three times, so
    // the kills land at different points of the check and the body's send;
    // a worker that got through the join first ends the kills. Once the
    // kills are over (or no join shows for a while, on a loaded machine),
    // only the result is awaited, within its own guard.
    let mut result = tokio::spawn(handle.wait(GUARD * 3));
    let mut kills = 0;
    let mut killed_logs = Vec::new();
    let mut watching = true;
    let total = loop {
        tokio::select! {
            joined = &mut result => break joined.unwrap(),
            taken = first.wait_for_line("celeriac.chord_join["), if watching => {
                match taken {
                    Err(_) => watching = false,
                    Ok(_) if kills < 3 => {
                        first.kill().await.unwrap();
                        kills += 1;
                        killed_logs.push(first.log.join("\n"));
                        first = DemoWorker::start_with_env(&args, &env).await.unwrap();
                    }
                    Ok(_) => {}
                }
            }
        }
    };
    let log = format!(
        "--- killed workers' logs ---\n{}\n--- last worker's log ---\n{}",
        killed_logs.join("\n---\n"),
        first.log.join("\n")
    );
    assert_eq!(total.unwrap_or_else(|e| panic!("{e}\n{log}")), 210);
    assert!(kills > 0, "the join was interrupted at least once");
    first.kill().await.unwrap();
}

/// Two copies of one join (a worker killed after putting the join back
/// into the delay ladder, before acknowledging it) travel the ladder side
/// by side and check the chord together. Reading the results together,
/// each got part of them and found the rest missing, every time they met:
/// the chord never joined. The chord's lock lets one check read at a
/// time. Here the results are already in, padded with `STARTED` states so
/// that both checks start reading before either is done, and both copies
/// reach the worker at once: without the lock this test failed every
/// time.
#[tokio::test(flavor = "multi_thread")]
async fn two_copies_of_a_join_checked_together_join_the_chord() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let chord = ParkedChord::send(&vhost, &channel, 50).await;
    for (i, id) in (1..).zip(&chord.kwargs.header) {
        for state in 0..5 {
            let result = match state {
                2 => ResultMessage::success(id, RawValue::from_string(format!("{i}")).unwrap()),
                _ => ResultMessage::started(id),
            };
            chord.send_result(&channel, &result).await;
        }
    }
    chord.send_join(&channel).await;
    chord.send_join(&channel).await;
    close(&connection).await;

    let worker = chord.worker(&vhost).await;
    assert_eq!(chord.handle.wait(GUARD).await.unwrap(), 1275);
    worker.stop().await.unwrap();
}

/// Another worker's check holds the chord's lock (the exclusive queue
/// `ChordJoin::check_lock`, here held by the test's own connection): this
/// worker's checks are refused it (`RESOURCE_LOCKED`) and wait in the
/// delay ladder without reading the results; once the holder's connection
/// is gone, the next check joins the chord.
#[tokio::test]
async fn a_check_waits_while_another_worker_holds_the_chords_lock() {
    init_logging();
    let vhost = Vhost::create().unwrap();
    let (connection, channel) = channel_on(&vhost.url()).await.unwrap();
    let chord = ParkedChord::send(&vhost, &channel, 3).await;
    for (i, id) in (1..).zip(&chord.kwargs.header) {
        let result = ResultMessage::success(id, RawValue::from_string(format!("{i}")).unwrap());
        chord.send_result(&channel, &result).await;
    }
    // Held as a worker holds it.
    let (holder, holding) = channel_on(&vhost.url()).await.unwrap();
    chord.kwargs.declare_check_lock(&holding).await.unwrap();
    chord.send_join(&channel).await;

    let worker = chord.worker(&vhost).await;
    // Every result is there, so only the lock can send the join back to
    // wait its second in the ladder's one-second queue.
    within("the join waiting after a refused check", async {
        loop {
            match message_count(&channel, "celery_delayed_0").await {
                Ok(waiting) if waiting > 0 => break,
                Ok(_) => {}
                Err(err) => panic!("counting the ladder's one-second queue: {err}"),
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await;
    let results = message_count(&channel, &chord.kwargs.results_queue).await;
    assert_eq!(
        results.unwrap(),
        3,
        "a refused check left the results where they were"
    );

    close(&holder).await;
    assert_eq!(chord.handle.wait(GUARD).await.unwrap(), 6);
    close(&connection).await;
    worker.stop().await.unwrap();
}

/// How often a test looks at a queue it waits on.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// A chord of `demo.add(i, 0)` for `i` in `1..=size` with the body
/// `demo.total`, sent while no worker runs: the header tasks stay parked
/// in a queue nobody consumes, and the join is taken off
/// `celeriac.chords`, for the test to make the results and send it back.
struct ParkedChord {
    handle: TaskHandle<i64>,
    /// The queue of the body, for the worker to consume.
    body_queue: String,
    join: BasicGetMessage,
    kwargs: ChordJoin,
}

impl ParkedChord {
    async fn send(vhost: &Vhost, channel: &Channel, size: i64) -> Self {
        let parked = unique("chord-header");
        let body_queue = unique("chord-body");
        let producer = producer_in(vhost).await;
        let header: Vec<Signature> = (1..=size)
            .map(|i| named("demo.add", vec![json!(i), json!(0)]).option("queue", parked.as_str()))
            .collect();
        let body = named("demo.total", vec![]).option("queue", body_queue.as_str());
        let handle = producer.chord::<i64>(header, body).await.unwrap();
        let join = get_one(channel, CHORD_QUEUE)
            .await
            .unwrap()
            .expect("the producer sent the join");
        let (_, kwargs, _): (Value, ChordJoin, Value) =
            serde_json::from_slice(&join.delivery.data).unwrap();
        Self {
            handle,
            body_queue,
            join,
            kwargs,
        }
    }

    /// Publishes `result` to the chord's results queue, as a header
    /// task's worker would.
    async fn send_result(&self, channel: &Channel, result: &ResultMessage) {
        let (body, properties) = result.encode().unwrap();
        publish_raw(channel, &self.kwargs.results_queue, &body, properties)
            .await
            .unwrap();
    }

    /// Publishes the join again, as its producer sent it.
    async fn send_join(&self, channel: &Channel) {
        let properties = self.join.delivery.properties.clone();
        publish_raw(channel, CHORD_QUEUE, &self.join.delivery.data, properties)
            .await
            .unwrap();
    }

    /// A worker joining chords in `vhost` and consuming the body's queue.
    async fn worker(&self, vhost: &Vhost) -> TestWorker {
        let config = WorkerConfig {
            broker_url: vhost.url(),
            queues: vec![self.body_queue.clone()],
            ..WorkerConfig::default()
        };
        TestWorker::start_with(config, celeriac_demo::registry())
            .await
            .unwrap()
    }
}
