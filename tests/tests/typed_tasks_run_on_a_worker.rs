//! A typed task sent by the producer runs on a worker with the right
//! arguments, whichever argument form the sender used.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{SendOptions, Task, TaskMessage};
use celeriac_tests::{GUARD, TestWorker, channel, delete_queues, get_one, producer_for, unique};
use celeriac_worker::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

/// A task with structured arguments.
struct BuildReport;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ReportArgs {
    title: String,
    pages: Vec<u32>,
    draft: bool,
}

impl Task for BuildReport {
    const NAME: &'static str = "reports.build";
    type Args = ReportArgs;
    type Output = usize;
}

/// A task whose arguments are a tuple: positional on the wire.
struct Tag;

impl Task for Tag {
    const NAME: &'static str = "tags.tag";
    type Args = (String, u32);
    type Output = String;
}

#[tokio::test(flavor = "multi_thread")]
async fn typed_arguments_arrive_intact_and_the_output_comes_back() {
    let queue = unique("typed");
    let (seen, mut received) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<BuildReport, _, _>(move |args, ctx| {
        let pages = args.pages.len();
        seen.send((args, ctx.id().to_owned())).unwrap();
        async move { Ok(pages) }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let args = ReportArgs {
        title: "Q3 \"numbers\" ✓".into(),
        pages: vec![1, 2, 3],
        draft: true,
    };
    let handle = producer.send::<BuildReport>(&args).await.unwrap();
    let id = handle.id().to_owned();
    assert_eq!(handle.wait(GUARD).await.unwrap(), 3);
    let (got, got_id) = received.recv().await.unwrap();
    assert_eq!((got, got_id), (args, id));

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kwargs_positional_and_mixed_arguments_all_decode() {
    let queue = unique("forms");
    let (seen, mut received) = mpsc::unbounded_channel();
    let mut registry = Registry::new();
    registry.register::<Add, _, _>(move |args: AddArgs, _ctx| {
        seen.send(args.clone()).unwrap();
        async move { Ok(args.x + args.y) }
    });
    let worker = TestWorker::start(&[&queue], registry).await.unwrap();
    let producer = producer_for(&queue).await.unwrap();

    let kwargs = |v: Value| v.as_object().cloned().unwrap();
    let forms: [(Vec<Value>, Map<String, Value>, i64); 3] = [
        (vec![json!(2), json!(3)], Map::new(), 5),
        (vec![], kwargs(json!({"x": 4, "y": 5})), 9),
        (vec![json!(6)], kwargs(json!({"y": 7})), 13),
    ];
    for (args, kwargs, want) in forms {
        let handle = producer
            .send_raw::<i64>(Add::NAME, args, kwargs, SendOptions::default())
            .await
            .unwrap();
        assert_eq!(handle.wait(GUARD).await.unwrap(), want);
    }
    let mut decoded = Vec::new();
    for _ in 0..3 {
        decoded.push(received.recv().await.unwrap());
    }
    assert_eq!(
        decoded,
        [(2, 3), (4, 5), (6, 7)].map(|(x, y)| AddArgs { x, y })
    );

    worker.stop().await.unwrap();
    delete_queues(&[&queue]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn structs_travel_as_kwargs_and_tuples_as_positional_args() {
    let queue = unique("wire-form");
    let producer = producer_for(&queue).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();

    let _ = producer
        .send_with::<Add>(&AddArgs { x: 1, y: 2 }, SendOptions::ignore_result())
        .await
        .unwrap();
    let _ = producer
        .send_with::<Tag>(&("blue".into(), 7), SendOptions::ignore_result())
        .await
        .unwrap();

    let mut messages = Vec::new();
    for _ in 0..2 {
        let got = get_one(&channel, &queue).await.unwrap().unwrap();
        let message =
            TaskMessage::decode(&got.delivery.properties, &got.delivery.data, 1 << 20).unwrap();
        messages.push(message);
    }
    assert_eq!(messages[0].task(), "demo.add");
    assert!(messages[0].args.is_empty());
    assert_eq!(
        Value::Object(messages[0].kwargs.clone()),
        json!({"x": 1, "y": 2})
    );
    assert_eq!(messages[1].task(), "tags.tag");
    assert_eq!(messages[1].args, vec![json!("blue"), json!(7)]);
    assert!(messages[1].kwargs.is_empty());

    delete_queues(&[&queue]).await;
}
