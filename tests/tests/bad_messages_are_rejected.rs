//! Messages a worker cannot use (unknown task, malformed JSON, wrong
//! argument types, pickle, no task header) are dead-lettered once with the
//! reason, byte for byte, and logged; the worker carries on with the next
//! good message.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_shared::demo::{Add, AddArgs};
use celeriac_shared::{
    DeadLetter, DeadLetterTopology, Router, TaskMessage, Topology, json_to_field_table,
};
use celeriac_tests::{
    DemoWorker, GUARD, channel, consume, declare_plain_queue, delete_queues, message_count,
    next_delivery, producer_with, publish_raw, unique,
};
use chrono::Utc;
use futures::StreamExt;
use lapin::BasicProperties;
use serde_json::{Map, json};

fn task(name: &str, args: serde_json::Value) -> (Vec<u8>, BasicProperties) {
    let args = args.as_array().cloned().unwrap();
    TaskMessage::new(name, args, Map::new())
        .encode(Utc::now())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_messages_are_dead_lettered_once_with_a_reason_and_the_worker_keeps_going() {
    let queue = unique("bad-input");
    let dead = DeadLetterTopology::queue_name(&queue);
    let (_connection, channel) = channel().await.unwrap();
    let mut worker = DemoWorker::start(&["--queues", &queue, "--concurrency", "1"])
        .await
        .unwrap();

    let mut sent = Vec::new();
    let (body, properties) = task("demo.nope", json!([1]));
    sent.push(("unknown task", body.clone()));
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();
    let (_, properties) = task("demo.add", json!([1, 2]));
    sent.push(("undecodable", b"{not json".to_vec()));
    publish_raw(&channel, &queue, b"{not json", properties)
        .await
        .unwrap();
    let (body, properties) = task("demo.add", json!(["a", 1]));
    sent.push(("bad arguments", body.clone()));
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();
    let (_, properties) = task("demo.add", json!([1, 2]));
    let pickle = properties.with_content_type("application/x-python-serialize".into());
    let pickled = b"\x80\x04\x95cos\nsystem\n".to_vec();
    sent.push(("undecodable", pickled.clone()));
    publish_raw(&channel, &queue, &pickled, pickle)
        .await
        .unwrap();
    let (body, properties) = task("demo.add", json!([1, 2]));
    let mut headers = celeriac_shared::field_table_to_json(properties.headers().as_ref().unwrap());
    headers.remove("task");
    sent.push(("undecodable", body.clone()));
    publish_raw(
        &channel,
        &queue,
        &body,
        properties.with_headers(json_to_field_table(&headers)),
    )
    .await
    .unwrap();

    let producer = producer_with(Router::new(vec![], &queue), Topology::default())
        .await
        .unwrap();
    let handle = producer.send::<Add>(&AddArgs { x: 2, y: 3 }).await.unwrap();
    assert_eq!(
        handle.wait(GUARD).await.unwrap(),
        5,
        "the worker carried on"
    );

    for reason in [
        "unregistered task demo.nope",
        "not JSON",
        "arguments do not fit task `demo.add`",
        "unsupported content type `application/x-python-serialize`",
        "no `task` header",
    ] {
        worker.wait_for_line(reason).await.unwrap();
    }
    let mut dead_letters = consume(&channel, &dead).await.unwrap();
    for (reason, body) in &sent {
        let letter = tokio::time::timeout(GUARD, dead_letters.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&letter.data, body, "the original body, byte for byte");
        let why = DeadLetter::from_headers(letter.properties.headers().as_ref().unwrap()).unwrap();
        assert_eq!(why.reason, *reason);
        assert_eq!(why.original_queue, queue);
        assert!(!why.error_message.is_empty());
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), dead_letters.next()).await;
    assert!(
        extra.is_err(),
        "each bad message is dead-lettered exactly once"
    );
    assert_eq!(
        message_count(&channel, &queue).await.unwrap(),
        0,
        "nothing requeued"
    );
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "the worker is still running"
    );

    delete_queues(&[&queue, &dead]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_waiting_on_an_undecodable_message_gets_a_decode_error() {
    let queue = unique("undecodable-call");
    let replies = unique("undecodable-replies");
    let worker = celeriac_tests::TestWorker::start(&[&queue], celeriac_worker::demo::registry())
        .await
        .unwrap();
    let (_connection, channel) = channel().await.unwrap();
    declare_plain_queue(&channel, &replies).await.unwrap();
    let (_, properties) = task("demo.add", json!([1, 2]));
    let properties = properties.with_reply_to(replies.as_str().into());
    let task_id = properties.correlation_id().clone().unwrap();
    publish_raw(&channel, &queue, b"[[1, 2], {}", properties)
        .await
        .unwrap();

    let mut results = consume(&channel, &replies).await.unwrap();
    let reply = next_delivery(&mut results).await.unwrap();
    assert_eq!(reply.properties.correlation_id().as_ref(), Some(&task_id));
    let result = celeriac_shared::ResultMessage::decode(&reply.data).unwrap();
    let failure = result.outcome().unwrap().unwrap_err();
    assert_eq!(failure.exc_type, "DecodeError");
    assert!(failure.message.contains("not JSON"), "{}", failure.message);

    worker.stop().await.unwrap();
    delete_queues(&[&queue, &replies, &DeadLetterTopology::queue_name(&queue)]).await;
}
