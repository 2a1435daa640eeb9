//! A workflow the worker cannot carry out loses nothing: the task's own
//! result still reaches its caller, and the message, whole `embed`
//! included, is dead-lettered with the reason; a callback to a task no
//! worker knows ends in the dead-letter queue as an unknown task.
#![allow(clippy::unwrap_used)]

use celeriac_shared::{DeadLetter, DeadLetterTopology, ResultMessage, TaskMessage, TaskState};
use celeriac_tests::{
    TestWorker, channel, consume, delete_queues, next_delivery, producer_for, unique,
};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{Map, Value, json};

/// Sends `demo.add(2, 3)` with `embed` changed by `change` to `queue`,
/// and returns what its caller got and the dead letter it left.
async fn run(
    queue: &str,
    change: impl FnOnce(&mut TaskMessage),
) -> (ResultMessage, DeadLetter, TaskMessage) {
    let producer = producer_for(queue).await.unwrap();
    let (_connection, channel) = channel().await.unwrap();
    let options = QueueDeclareOptions {
        exclusive: true,
        ..QueueDeclareOptions::default()
    };
    let reply = channel
        .queue_declare("".into(), options, FieldTable::default())
        .await
        .unwrap();
    let mut replies = consume(&channel, reply.name().as_str()).await.unwrap();
    let worker = TestWorker::start(&[queue], celeriac_demo::registry())
        .await
        .unwrap();
    let mut dead = consume(&channel, &DeadLetterTopology::queue_name(queue))
        .await
        .unwrap();

    let mut message = TaskMessage::new("demo.add", vec![json!(2), json!(3)], Map::new());
    message.reply_to = Some(reply.name().to_string());
    change(&mut message);
    producer.publish(&message, Some(queue)).await.unwrap();

    let result = ResultMessage::decode(&next_delivery(&mut replies).await.unwrap().data).unwrap();
    let delivery = next_delivery(&mut dead).await.unwrap();
    let letter = DeadLetter::from_headers(delivery.properties.headers().as_ref().unwrap()).unwrap();
    let kept = TaskMessage::decode(&delivery.properties, &delivery.data, 1 << 20).unwrap();
    worker.stop().await.unwrap();
    (result, letter, kept)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_callback_is_dead_lettered_and_the_result_still_arrives() {
    let queue = unique("bad-callback");
    let malformed = json!([{"args": [1]}]);
    let (result, letter, kept) = run(&queue, |m| m.embed.callbacks = Some(malformed.clone())).await;
    assert_eq!(
        (result.status, result.result.get()),
        (TaskState::Success, "5")
    );
    assert_eq!(letter.reason, "bad workflow");
    assert!(
        letter.error_message.contains("malformed signature"),
        "{}",
        letter.error_message
    );
    assert_eq!(
        kept.embed.callbacks,
        Some(malformed),
        "the whole embed is kept"
    );
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_ten_thousand_steps_deep_is_refused_with_a_reason() {
    let queue = unique("deep-chain");
    let steps = Value::Array(vec![json!({"task": "demo.add"}); 10_000]);
    let (result, letter, kept) = run(&queue, |m| m.embed.chain = Some(steps)).await;
    assert_eq!(result.status, TaskState::Success);
    assert_eq!(letter.reason, "bad workflow");
    assert!(
        letter.error_message.contains("10000 steps"),
        "{}",
        letter.error_message
    );
    assert_eq!(kept.embed.chain.unwrap().as_array().unwrap().len(), 10_000);
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_to_an_unknown_task_ends_as_an_unknown_task() {
    let queue = unique("unknown-callback");
    let callback = json!([{"task": "nobody.knows", "args": [], "kwargs": {},
        "options": {"queue": queue}, "subtask_type": null, "immutable": false}]);
    let (result, letter, kept) = run(&queue, |m| m.embed.callbacks = Some(callback)).await;
    assert_eq!(result.status, TaskState::Success);
    assert_eq!(letter.reason, "unknown task");
    assert_eq!(kept.task(), "nobody.knows");
    assert_eq!(kept.args, vec![json!(5)], "the callback got the result");
    delete_queues(&[&queue, &DeadLetterTopology::queue_name(&queue)]).await;
}
