//! Leader election on RabbitMQ alone: one token in a single-active-consumer
//! queue.
//!
//! Every candidate consumes the same durable queue, declared with
//! `x-single-active-consumer`, with a prefetch of 1 and manual acks. The
//! broker delivers to one consumer only, the active one; every candidate
//! puts a token in the queue when it joins, so the active consumer receives
//! one and holds it unacknowledged. Receiving the token is the proof of
//! leadership, and holding it keeps the others waiting: they are consumers
//! too, but inactive ones, and get nothing.
//!
//! When the leader's connection or channel goes (a crash, `SIGKILL`, a
//! network failure found by heartbeats), the broker returns its token to
//! the queue and makes the next consumer active, which receives it at once:
//! failover takes as long as the broker takes to notice, immediate for a
//! dead process, one to two heartbeat intervals for a lost host.
//!
//! The queue holds at most one ready token (`x-max-length` 1 with
//! `reject-publish`), so candidates joining while a leader holds one add a
//! single spare, never a pile. A leader renews its token well within
//! RabbitMQ's `consumer_timeout` (30 min by default, after which the broker
//! would close a channel holding a delivery): it publishes a new token, then
//! acknowledges the one it holds, and the broker, which keeps it active,
//! delivers it the next token.

use futures_util::StreamExt;
use lapin::options::QueueDeclareOptions;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Consumer};

use crate::Error;

/// How often a leader trades its token for a fresh one: a sixth of
/// RabbitMQ's default `consumer_timeout`.
pub const TOKEN_RENEWAL: std::time::Duration = std::time::Duration::from_secs(300);

/// A leader election on one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    queue: String,
}

/// Leadership won: the token held, until [`Leader::lost`] says otherwise.
pub struct Leader {
    channel: Channel,
    consumer: Consumer,
    queue: String,
    token: lapin::Acker,
}

impl std::fmt::Debug for Leader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// An election on `queue`: every candidate of one election names the
    /// same queue.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
        }
    }

    /// The election's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The queue's arguments: single active consumer, at most one ready
    /// token.
    pub fn queue_arguments() -> FieldTable {
        let mut arguments = FieldTable::default();
        arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        arguments.insert("x-max-length".into(), AMQPValue::LongLongInt(1));
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
        arguments
    }

    /// Joins the election on `channel` (used for nothing else) and waits
    /// until this candidate leads. Returns an error when the channel or
    /// its connection fails, or the queue is deleted, while waiting.
    pub async fn lead(&self, channel: Channel) -> Result<Leader, Error> {
        let queue = self.queue.as_str();
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                Self::queue_arguments(),
            )
            .await
            .map_err(|source| Error::Declare {
                what: format!("leadership queue `{queue}`"),
                source,
            })?;
        channel
            .basic_qos(1, BasicQosOptions { global: false })
            .await
            .map_err(broker("basic.qos"))?;
        put_token(&channel, queue).await?;
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker("basic.consume"))?;
        let token = next_token(&mut consumer, queue).await?;
        Ok(Leader {
            channel,
            consumer,
            queue: self.queue.clone(),
            token,
        })
    }
}

impl Leader {
    /// The election's queue.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Trades the held token for a fresh one (see [`TOKEN_RENEWAL`]): a
    /// new token first, so that the queue is never without one, then the
    /// ack of the old. An error means leadership may be lost: stop acting
    /// as leader.
    pub async fn renew(&mut self) -> Result<(), Error> {
        put_token(&self.channel, &self.queue).await?;
        self.token
            .ack(BasicAckOptions::default())
            .await
            .map_err(broker("basic.ack"))?;
        self.token = next_token(&mut self.consumer, &self.queue).await?;
        Ok(())
    }

    /// Completes when leadership is lost: the channel or connection
    /// closed, or the consumer was cancelled. Cancel-safe.
    pub async fn lost(&mut self) -> Error {
        loop {
            match self.consumer.next().await {
                // A spare token: the leader already holds one, and only a
                // leader receives; keep it, the broker will not send more.
                Some(Ok(_spare)) => continue,
                Some(Err(source)) => {
                    return Error::Broker {
                        what: "leadership consumer",
                        source,
                    };
                }
                None => return ended(&self.queue),
            }
        }
    }

    /// Steps down: closes the channel, which hands the token to the next
    /// candidate at once.
    pub async fn resign(self) {
        let _ = self.channel.close(200, "resigned".into()).await;
    }
}

/// Puts a token in the queue; refused (and so dropped) when one is ready
/// already, which is just as good.
async fn put_token(channel: &Channel, queue: &str) -> Result<(), Error> {
    let properties = BasicProperties::default().with_delivery_mode(2);
    channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"token",
            properties,
        )
        .await
        .map_err(broker("basic.publish"))?;
    Ok(())
}

/// Waits for the next delivery: only the active consumer gets one.
async fn next_token(consumer: &mut Consumer, queue: &str) -> Result<lapin::Acker, Error> {
    match consumer.next().await {
        Some(Ok(delivery)) => Ok(delivery.acker),
        Some(Err(source)) => Err(Error::Broker {
            what: "leadership consumer",
            source,
        }),
        None => Err(ended(queue)),
    }
}

fn ended(queue: &str) -> Error {
    Error::LeadershipEnded {
        queue: queue.to_owned(),
    }
}

fn broker(what: &'static str) -> impl FnOnce(lapin::Error) -> Error {
    move |source| Error::Broker { what, source }
}
