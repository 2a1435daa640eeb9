//! Listening to the workers' events on Celery's `celeryev` exchange:
//! heartbeats (`worker.#`) for the Workers page, task events (`task.#`)
//! for the Tasks page.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use celeriac_shared::{
    EVENT_EXCHANGE, TaskEvent, WORKER_EVENTS_BINDING, WorkerEvent, declare_event_exchange,
};
use chrono::Utc;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use tracing::warn;

use super::task_list::TaskStore;
use super::worker_list::WorkerList;
use celeriac_producer::Producer;

use crate::Error;

/// How long an event may wait in the dashboard's queue before the broker
/// drops it: a newer heartbeat says the same, better; a dashboard that far
/// behind on task events is better off skipping some.
const EVENT_TTL_MS: i64 = 10_000;

/// The binding of Celery's task events (`task.received`,
/// `task.succeeded`...).
const TASK_EVENTS_BINDING: &str = "task.#";

/// Consumes worker events into `workers` and task events into `tasks` for
/// as long as it runs, on an exclusive, auto-delete queue of its own (so
/// it never takes events from another monitor), listening again a second
/// after the broker connection was lost.
pub(crate) async fn consume_worker_events(
    producer: Producer,
    workers: Arc<Mutex<WorkerList>>,
    tasks: Arc<TaskStore>,
) {
    loop {
        if let Err(err) = listen(&producer, &workers, &tasks).await {
            warn!(error = %err, "worker events interrupted; listening again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Listens until the consumer ends.
async fn listen(
    producer: &Producer,
    workers: &Mutex<WorkerList>,
    tasks: &TaskStore,
) -> Result<(), Error> {
    let channel = producer.open_channel().await?;
    declare_event_exchange(&channel).await?;
    let name = format!("celeriac-dashboard.{}", uuid::Uuid::new_v4().simple());
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl".into(), AMQPValue::LongLongInt(EVENT_TTL_MS));
    channel
        .queue_declare(name.as_str().into(), options, arguments)
        .await
        .map_err(Error::amqp("queue.declare"))?;
    for binding in [WORKER_EVENTS_BINDING, TASK_EVENTS_BINDING] {
        channel
            .queue_bind(
                name.as_str().into(),
                EVENT_EXCHANGE.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(Error::amqp("queue.bind"))?;
    }
    let options = BasicConsumeOptions {
        no_ack: true,
        exclusive: true,
        ..BasicConsumeOptions::default()
    };
    let mut consumer = channel
        .basic_consume(
            name.as_str().into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await
        .map_err(Error::amqp("basic.consume"))?;
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery.map_err(Error::amqp("basic.consume"))?;
        // Events of other types, or that do not decode, are skipped.
        if delivery.routing_key.as_str().starts_with("task.") {
            for event in TaskEvent::decode_many(&delivery.data).unwrap_or_default() {
                tasks.record(&event);
            }
        } else if let Ok(event) = WorkerEvent::decode(&delivery.data) {
            let mut list = workers.lock().unwrap_or_else(|p| p.into_inner());
            list.record(event, Utc::now());
        }
    }
    Err(Error::ConsumerEnded { queue: name })
}
