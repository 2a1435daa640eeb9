//! Messages a worker cannot use (unknown task, malformed JSON, wrong
//! argument types, no task header, a content type or encoding other than
//! JSON in UTF-8) are dead-lettered once with the reason, byte for byte,
//! and logged; the worker carries on with the next good message. Pickle
//! and YAML are never evaluated.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use celeriac_demo::{Add, AddArgs};
use celeriac_shared::{DeadLetter, DeadLetterTopology, TaskMessage, json_to_field_table};
use celeriac_tests::{
    DemoWorker, GUARD, channel, consume, declare_plain_queue, delete_queues, message_count,
    next_delivery, producer_for, publish_raw, unique,
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

    let producer = producer_for(&queue).await.unwrap();
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
    let worker = celeriac_tests::TestWorker::start(&[&queue], celeriac_demo::registry())
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

#[tokio::test(flavor = "multi_thread")]
async fn only_json_in_utf8_is_accepted_and_everything_else_is_dead_lettered_unread() {
    let queue = unique("content-types");
    let dead = DeadLetterTopology::queue_name(&queue);
    let (_connection, channel) = channel().await.unwrap();
    let mut worker = DemoWorker::start(&["--queues", &queue, "--concurrency", "1"])
        .await
        .unwrap();

    // Payloads that create `marker` if anything evaluates them.
    let marker = std::env::temp_dir().join(unique("evaluated"));
    let pickle = format!("cos\nsystem\n(S'touch {}'\ntR.", marker.display());
    let yaml = format!(
        "!!python/object/apply:os.system [\"touch {}\"]",
        marker.display()
    );
    let (json_body, _) = task("demo.add", json!([1, 2]));
    let cases: [(&str, Option<&str>, Vec<u8>, &str); 6] = [
        (
            "application/x-python-serialize",
            Some("binary"),
            pickle.into_bytes(),
            "content type `application/x-python-serialize`",
        ),
        (
            "application/x-yaml",
            Some("utf-8"),
            yaml.into_bytes(),
            "content type `application/x-yaml`",
        ),
        (
            "application/x-msgpack",
            Some("binary"),
            b"\x93\x92\x01\x02\x80\xc0".to_vec(),
            "content type `application/x-msgpack`",
        ),
        (
            "text/plain",
            None,
            b"[[1, 2], {}, null]".to_vec(),
            "content type `text/plain`",
        ),
        (
            "application/json",
            Some("latin-1"),
            json_body.clone(),
            "content encoding `latin-1`",
        ),
        (
            "application/json",
            Some("gzip"),
            json_body,
            "content encoding `gzip`",
        ),
    ];
    for (content_type, encoding, body, _) in &cases {
        let (_, properties) = task("demo.add", json!([1, 2]));
        let mut properties = properties.with_content_type((*content_type).into());
        if let Some(encoding) = encoding {
            properties = properties.with_content_encoding((*encoding).into());
        }
        publish_raw(&channel, &queue, body, properties)
            .await
            .unwrap();
    }
    // JSON spelt differently is still JSON.
    let (body, properties) = task("demo.add", json!([1, 2]));
    let id = properties.correlation_id().clone().unwrap();
    let properties = properties
        .with_content_type("Application/JSON; charset=utf-8".into())
        .with_content_encoding("UTF8".into());
    publish_raw(&channel, &queue, &body, properties)
        .await
        .unwrap();
    worker
        .wait_for_line(&format!("demo.add[{id}] succeeded"))
        .await
        .unwrap();

    let mut dead_letters = consume(&channel, &dead).await.unwrap();
    for (content_type, _, body, reason) in &cases {
        let letter = next_delivery(&mut dead_letters).await.unwrap();
        assert!(&letter.data == body, "{content_type}: the original body");
        let kept = letter.properties.content_type().clone().unwrap();
        assert_eq!(kept.as_str(), *content_type, "the original properties");
        let why = DeadLetter::from_headers(letter.properties.headers().as_ref().unwrap()).unwrap();
        assert_eq!(why.reason, "undecodable");
        assert_eq!(why.error_type, "DecodeError");
        assert!(why.error_message.contains(reason), "{}", why.error_message);
        assert!(
            worker.log.iter().any(|line| line.contains(reason)),
            "logged: {reason}"
        );
    }
    assert!(!marker.exists(), "a payload was evaluated");
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 0);
    delete_queues(&[&queue, &dead]).await;
}
