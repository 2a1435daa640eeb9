//! A message the broker cannot route (`mandatory`, no binding for its
//! key) is never taken for sent: `Producer::publish` fails with
//! `Unroutable`, and `Producer::send`, which declares its queue's binding
//! again once when that happens, delivers it.
#![allow(clippy::unwrap_used)]

use celeriac_demo::{Add, AddArgs};
use celeriac_producer::Error;
use celeriac_shared::TaskMessage;
use celeriac_tests::{channel, delete_queues, message_count, producer_for, unique};
use lapin::options::ExchangeDeleteOptions;
use lapin::types::FieldTable;
use serde_json::{Map, json};

#[tokio::test(flavor = "multi_thread")]
async fn a_message_with_no_binding_for_its_key_is_unroutable_until_the_binding_is_declared_again() {
    let queue = unique("unroutable");
    let producer = producer_for(&queue).await.unwrap();
    // The first publish declares the queue, its exchange and binding, and
    // the producer remembers that it did.
    let first = TaskMessage::new("demo.add", vec![json!(1), json!(1)], Map::new());
    producer.publish(&first, None).await.unwrap();
    let (connection, channel) = channel().await.unwrap();
    channel
        .queue_purge(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    // The queue's exchange is named after it; remove the binding behind
    // the producer's back.
    channel
        .queue_unbind(
            queue.as_str().into(),
            queue.as_str().into(),
            queue.as_str().into(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let message = TaskMessage::new("demo.add", vec![json!(1), json!(2)], Map::new());
    let err = producer.publish(&message, None).await.unwrap_err();
    match &err {
        Error::Unroutable {
            task_id,
            exchange,
            routing_key,
            ..
        } => {
            assert_eq!(task_id, message.id());
            assert_eq!((exchange, routing_key), (&queue, &queue));
        }
        other => panic!("expected Unroutable, got {other:?}"),
    }
    assert!(
        !err.can_be_recovered(),
        "an unroutable message is not retried blindly"
    );
    assert_eq!(message_count(&channel, &queue).await.unwrap(), 0);

    let handle = producer.send::<Add>(&AddArgs { x: 1, y: 2 }).await.unwrap();
    assert!(!handle.id().is_empty());
    assert_eq!(
        message_count(&channel, &queue).await.unwrap(),
        1,
        "send declared the binding again"
    );

    channel
        .exchange_delete(queue.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    celeriac_tests::close(&connection).await;
    delete_queues(&[&queue]).await;
}
