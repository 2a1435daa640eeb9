//! Raw lapin: the same AMQP work as celeriac, done by hand with the same
//! settings (persistent, mandatory, confirmed publishes to the queue's
//! direct exchange; manual acks with the same prefetch; confirmed
//! replies). It is the ceiling celeriac is measured against.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use celeriac_shared::BrokerUrl;
use futures::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use crate::fixture::{EncodedTask, GUARD};

/// Where results of round trips come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyQueue {
    /// A named exclusive queue per caller, as celeriac and Celery's
    /// `rpc://` use.
    Named,
    /// RabbitMQ's direct reply-to pseudo-queue `amq.rabbitmq.reply-to`,
    /// consumed (no-ack) on the channel the requests are published on.
    Direct,
}

/// The pseudo-queue of RabbitMQ's direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Opens a connection.
pub(crate) async fn connect(url: &BrokerUrl) -> anyhow::Result<Connection> {
    Connection::connect(url.expose(), ConnectionProperties::default())
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// A new channel in confirm mode.
async fn confirm_channel(connection: &Connection) -> anyhow::Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes `n` copies of `task` to `queue` on one confirm-mode channel,
/// keeping up to `window` confirms outstanding; returns once every one
/// was confirmed.
pub(crate) async fn publish(
    connection: &Connection,
    queue: &str,
    task: &EncodedTask,
    n: u64,
    window: usize,
) -> anyhow::Result<()> {
    let channel = confirm_channel(connection).await?;
    let mut outstanding = VecDeque::with_capacity(window);
    for _ in 0..n {
        if outstanding.len() >= window.max(1)
            && let Some(confirm) = outstanding.pop_front()
        {
            confirmed(confirm.await?)?;
        }
        let confirm = channel
            .basic_publish(
                queue.into(),
                queue.into(),
                mandatory(),
                &task.body,
                task.properties.clone(),
            )
            .await?;
        outstanding.push_back(confirm);
    }
    for confirm in outstanding {
        confirmed(confirm.await?)?;
    }
    let _ = channel.close(200, "OK".into()).await;
    Ok(())
}

fn mandatory() -> BasicPublishOptions {
    BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    }
}

fn confirmed(confirmation: Confirmation) -> anyhow::Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("publish not confirmed: {other:?}"),
    }
}

/// Consumes `queue` until `shutdown`: replies (confirmed) to deliveries
/// that carry a `reply_to`, and acknowledges with `multiple` set, once per
/// half prefetch or as soon as no further delivery is waiting.
pub(crate) async fn run_worker(
    url: &BrokerUrl,
    queue: &str,
    prefetch: u16,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let connection = connect(url).await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions { global: false })
        .await?;
    let results = confirm_channel(&connection).await?;
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let batch = usize::from(prefetch / 2).max(1);
    let mut unacked: Option<(Delivery, usize)> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let next = match consumer.next().now_or_never() {
            Some(next) => next,
            None => {
                ack_up_to(unacked.take()).await?;
                tokio::select! {
                    () = &mut shutdown => break,
                    next = consumer.next() => next,
                }
            }
        };
        let Some(delivery) = next.transpose()? else {
            break;
        };
        reply(&results, &delivery).await?;
        let count = unacked.take().map_or(0, |(_, count)| count) + 1;
        unacked = Some((delivery, count));
        if count >= batch {
            ack_up_to(unacked.take()).await?;
        }
    }
    ack_up_to(unacked).await?;
    let _ = connection.close(200, "OK".into()).await;
    Ok(())
}

/// Acknowledges `last` and every earlier delivery of its channel.
async fn ack_up_to(last: Option<(Delivery, usize)>) -> anyhow::Result<()> {
    if let Some((delivery, _)) = last {
        delivery
            .acker
            .ack(BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

/// Sends a success result for `delivery` to its `reply_to`, if any, and
/// waits for the broker's confirm.
async fn reply(results: &Channel, delivery: &Delivery) -> anyhow::Result<()> {
    let Some(reply_to) = delivery.properties.reply_to().clone() else {
        return Ok(());
    };
    let id = delivery
        .properties
        .correlation_id()
        .clone()
        .unwrap_or_else(|| "".into());
    let body = format!(
        r#"{{"task_id": "{id}", "status": "SUCCESS", "result": null, "traceback": null, "children": []}}"#
    );
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_correlation_id(id);
    let confirm = results
        .basic_publish(
            "".into(),
            reply_to,
            BasicPublishOptions::default(),
            body.as_bytes(),
            properties,
        )
        .await?;
    match confirm.await? {
        Confirmation::Ack(_) => Ok(()),
        other => bail!("result not confirmed: {other:?}"),
    }
}

/// Makes `warmup + calls` sequential calls (publish, wait for the confirm,
/// wait for the reply) and returns the latencies of the last `calls`.
pub(crate) async fn round_trips(
    connection: &Connection,
    queue: &str,
    task: &EncodedTask,
    (warmup, calls): (usize, usize),
    mode: ReplyQueue,
) -> anyhow::Result<Vec<Duration>> {
    let channel = confirm_channel(connection).await?;
    let (reply_to, mut replies) = reply_consumer(connection, &channel, mode).await?;
    let mut latencies = Vec::with_capacity(calls);
    for call in 0..warmup + calls {
        let id = uuid::Uuid::new_v4().to_string();
        let properties = task
            .properties
            .clone()
            .with_reply_to(reply_to.as_str().into())
            .with_correlation_id(id.as_str().into());
        let start = Instant::now();
        let confirm = channel
            .basic_publish(
                queue.into(),
                queue.into(),
                mandatory(),
                &task.body,
                properties,
            )
            .await?;
        confirmed(confirm.await?)?;
        wait_for_reply(&mut replies, &id).await?;
        if call >= warmup {
            latencies.push(start.elapsed());
        }
    }
    let _ = channel.close(200, "OK".into()).await;
    Ok(latencies)
}

/// The `reply_to` to send and the consumer of the replies.
async fn reply_consumer(
    connection: &Connection,
    channel: &Channel,
    mode: ReplyQueue,
) -> anyhow::Result<(String, Consumer)> {
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let (reply_channel, queue) = match mode {
        ReplyQueue::Direct => (channel.clone(), DIRECT_REPLY_TO.to_owned()),
        ReplyQueue::Named => {
            let reply_channel = connection.create_channel().await?;
            let name = format!("bench.reply.{}", uuid::Uuid::new_v4());
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            reply_channel
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await?;
            (reply_channel, name)
        }
    };
    let consumer = reply_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await?;
    Ok((queue, consumer))
}

/// Reads replies until the one for `id` arrives.
async fn wait_for_reply(replies: &mut Consumer, id: &str) -> anyhow::Result<()> {
    let wait = async {
        loop {
            let delivery = replies.next().await.context("the reply consumer ended")??;
            if delivery
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str())
                == Some(id)
            {
                return anyhow::Ok(());
            }
        }
    };
    tokio::time::timeout(GUARD, wait)
        .await
        .with_context(|| format!("no reply for {id} within {GUARD:?}"))?
}
