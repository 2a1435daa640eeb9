//! Broker-side delays without a plugin: Celery 5.5's "native delayed
//! delivery" ladder of 28 TTL queues, with the same names and arguments, so
//! delayed messages from Python Celery and from celeriac share one
//! topology.
//!
//! Level `L` (27 down to 0) is a topic exchange and a queue both named
//! `celery_delayed_L`. The queue holds messages for 2^L seconds and then
//! dead-letters them to the next level's exchange (level 0: to
//! `celery_delayed_delivery`). A delayed message is published to
//! `celery_delayed_27` with the routing key `b27.b26. ... .b0.<queue>`, the
//! delay in seconds as 28 binary digits: at each level the message waits
//! in the queue when its bit is 1 and skips to the next level's exchange
//! when it is 0. Every queue in the ladder has one TTL, so a long delay
//! never blocks a short one.
//!
//! Delivery: each application queue `Q` is bound to the topic exchange
//! `celery_delayed_delivery` with `*.*. ... .*.Q` (28 words, then the queue
//! name). This leaves the queue's own exchange untouched: Celery's default
//! `celery` exchange stays direct, so Python publishers keep working.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::message::short_string;
use crate::{Error, QueueType};

/// The number of levels, and so of binary digits in a delay.
pub const DELAY_BITS: u32 = 28;
/// The longest delay: 2^28 - 1 seconds (about 8.5 years).
pub const MAX_DELAY: Duration = Duration::from_secs((1 << DELAY_BITS) - 1);
/// The exchange delayed messages are published to.
pub const DELAY_ENTRY_EXCHANGE: &str = "celery_delayed_27";
/// The topic exchange at the bottom of the ladder, bound to every queue.
pub const DELAY_DELIVERY_EXCHANGE: &str = "celery_delayed_delivery";

/// The headers RabbitMQ adds to a message when it dead-letters it, as
/// every level of the ladder does: `x-death` and its first and last
/// summaries. A copy sent through the ladder again must not carry them:
/// RabbitMQ silently drops a message dead-lettered into a queue that its
/// `x-death` names already, without a rejection since (its dead-letter
/// cycle detection), so a second trip through the same level would lose
/// the copy.
pub const DEAD_LETTERING_HEADERS: [&str; 7] = [
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
];

/// The name of level `level`'s exchange and queue.
fn level_name(level: u32) -> String {
    format!("celery_delayed_{level}")
}

/// How many whole seconds a task due at `eta` must wait, rounded up so it
/// never runs early; `None` when it is due now or in the past.
pub fn delay_until(eta: DateTime<Utc>, now: DateTime<Utc>) -> Option<u64> {
    let millis = (eta - now).num_milliseconds();
    (millis > 0).then(|| u64::try_from(millis).unwrap_or(u64::MAX).div_ceil(1000))
}

/// The ladder of delay queues and the bindings that deliver from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DelayTopology {
    /// The type of the 28 delay queues. Defaults to quorum, as Celery's
    /// `broker_native_delayed_delivery_queue_type`; both sides must agree.
    pub queue_type: QueueType,
}

impl Default for DelayTopology {
    fn default() -> Self {
        Self {
            queue_type: QueueType::Quorum,
        }
    }
}

impl DelayTopology {
    /// The routing key that sends a message through the ladder for
    /// `seconds` and then to `queue`. Errors when the delay is longer than
    /// [`MAX_DELAY`].
    pub fn routing_key(seconds: u64, queue: &str) -> Result<String, Error> {
        if seconds > MAX_DELAY.as_secs() {
            return Err(Error::DelayTooLong {
                seconds,
                max: MAX_DELAY.as_secs(),
            });
        }
        let queue = strip_delay_prefix(queue);
        let bits: Vec<String> = (0..DELAY_BITS)
            .rev()
            .map(|bit| ((seconds >> bit) & 1).to_string())
            .collect();
        Ok(format!("{}.{queue}", bits.join(".")))
    }

    /// The routing key that sends a message through the ladder for
    /// `delay` to the millisecond, and the per-message TTL (`expiration`,
    /// in milliseconds) to publish it with, `None` for a whole number of
    /// seconds. Errors when the delay is longer than [`MAX_DELAY`].
    ///
    /// The ladder alone waits whole seconds: the key spells `delay`
    /// rounded up, and the TTL shortens the message's first hop, the
    /// level of the highest 1 bit, by the difference. RabbitMQ removes a
    /// message's `expiration` when it dead-letters it, so the TTL applies
    /// to that level only. Queues expire messages from their head, so a
    /// message behind others that expire later waits for them: it arrives
    /// at most at the rounded-up time, never before `delay`.
    pub fn precise_route(delay: Duration, queue: &str) -> Result<(String, Option<u64>), Error> {
        let millis = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        let seconds = millis.div_ceil(1000).max(1);
        let key = Self::routing_key(seconds, queue)?;
        let short_by = (seconds * 1000).saturating_sub(millis);
        if short_by == 0 {
            return Ok((key, None));
        }
        let first_level = seconds.ilog2();
        let first_hop = (1u64 << first_level) * 1000;
        Ok((key, Some(first_hop - short_by)))
    }

    /// Declares the 28 levels and the delivery exchange, exactly as kombu's
    /// `declare_native_delayed_delivery_exchanges_and_queues`. Idempotent.
    pub async fn declare(&self, channel: &Channel) -> Result<(), Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        let fail = |what: String| move |source| Error::Declare { what, source };
        let mut wait_key = "1.#".to_owned();
        for level in (0..DELAY_BITS).rev() {
            let name = level_name(level);
            channel
                .exchange_declare(
                    name.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await
                .map_err(fail(format!("exchange `{name}`")))?;
            let options = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.as_str().into(), options, self.level_arguments(level))
                .await
                .map_err(fail(format!("queue `{name}`")))?;
            channel
                .queue_bind(
                    name.as_str().into(),
                    name.as_str().into(),
                    wait_key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(fail(format!("binding of `{name}`")))?;
            wait_key = format!("*.{wait_key}");
        }
        let mut skip_key = "0.#".to_owned();
        for level in (1..DELAY_BITS).rev() {
            let (current, next) = (level_name(level), level_name(level - 1));
            channel
                .exchange_bind(
                    next.as_str().into(),
                    current.as_str().into(),
                    skip_key.as_str().into(),
                    ExchangeBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(fail(format!("binding of `{next}` to `{current}`")))?;
            skip_key = format!("*.{skip_key}");
        }
        channel
            .exchange_declare(
                DELAY_DELIVERY_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(fail(DELAY_DELIVERY_EXCHANGE.into()))?;
        channel
            .exchange_bind(
                DELAY_DELIVERY_EXCHANGE.into(),
                level_name(0).as_str().into(),
                skip_key.as_str().into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(fail(format!("binding of `{DELAY_DELIVERY_EXCHANGE}`")))?;
        Ok(())
    }

    /// Binds `queue` to the delivery exchange, so delayed messages for it
    /// arrive there when due. Idempotent.
    pub async fn bind_queue(channel: &Channel, queue: &str) -> Result<(), Error> {
        let key = format!("{}{queue}", "*.".repeat(DELAY_BITS as usize));
        let key = short_string("routing key", &key)?;
        channel
            .queue_bind(
                short_string("queue", queue)?,
                DELAY_DELIVERY_EXCHANGE.into(),
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|source| Error::Declare {
                what: format!("delayed delivery binding of queue `{queue}`"),
                source,
            })
    }

    /// The arguments of level `level`'s queue, as Celery declares them.
    fn level_arguments(&self, level: u32) -> FieldTable {
        let mut args = FieldTable::default();
        let queue_type = match self.queue_type {
            QueueType::Quorum => "quorum",
            QueueType::Classic => "classic",
        };
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(queue_type.into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("reject-publish".into()),
        );
        args.insert(
            "x-message-ttl".into(),
            AMQPValue::LongLongInt((1i64 << level) * 1000),
        );
        let next = if level > 0 {
            level_name(level - 1)
        } else {
            DELAY_DELIVERY_EXCHANGE.to_owned()
        };
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(next.into()),
        );
        if self.queue_type == QueueType::Quorum {
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
        }
        args
    }
}

/// A routing key without the 28-digit delay prefix it may carry.
pub fn strip_delay_prefix(routing_key: &str) -> &str {
    let mut rest = routing_key;
    for _ in 0..DELAY_BITS {
        match rest.split_once('.') {
            Some(("0" | "1", tail)) => rest = tail,
            _ => return routing_key,
        }
    }
    rest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_routing_key_spells_the_delay_in_28_binary_digits() {
        let key = DelayTopology::routing_key(5, "celery").unwrap();
        assert_eq!(key, format!("{}1.0.1.celery", "0.".repeat(25)));
        let max = DelayTopology::routing_key(MAX_DELAY.as_secs(), "q").unwrap();
        assert_eq!(max, format!("{}q", "1.".repeat(28)));
    }

    #[test]
    fn a_delay_over_the_maximum_is_an_error() {
        let err = DelayTopology::routing_key(1 << 28, "q").unwrap_err();
        assert!(err.to_string().contains("268435455"), "{err}");
    }

    #[test]
    fn a_precise_route_shortens_the_first_hop_by_the_rounding() {
        let route = |ms: u64| DelayTopology::precise_route(Duration::from_millis(ms), "q").unwrap();
        let key = |seconds: u64| DelayTopology::routing_key(seconds, "q").unwrap();
        // 1.3 s: level 1 (2 s) cut to 1.3 s.
        assert_eq!(route(1_300), (key(2), Some(1_300)));
        // 2.3 s: level 1 cut to 1.3 s, then level 0's whole second.
        assert_eq!(route(2_300), (key(3), Some(1_300)));
        // 0.25 s: level 0 cut to 0.25 s.
        assert_eq!(route(250), (key(1), Some(250)));
        // 9.9 s: level 3 (8 s) cut to 7.9 s, then level 1 (2 s).
        assert_eq!(route(9_900), (key(10), Some(7_900)));
        assert_eq!(route(4_000), (key(4), None));
        assert!(DelayTopology::precise_route(MAX_DELAY + Duration::from_secs(1), "q").is_err());
    }

    #[test]
    fn an_existing_prefix_is_stripped_first() {
        let key = DelayTopology::routing_key(3, "celery").unwrap();
        assert_eq!(strip_delay_prefix(&key), "celery");
        assert_eq!(DelayTopology::routing_key(3, &key).unwrap(), key);
        assert_eq!(strip_delay_prefix("a.b.c"), "a.b.c");
        assert_eq!(strip_delay_prefix("1.0.q"), "1.0.q");
    }

    #[test]
    fn delays_round_up_to_whole_seconds_and_past_etas_are_due() {
        let now = Utc::now();
        let at = |ms: i64| now + chrono::Duration::milliseconds(ms);
        assert_eq!(delay_until(at(3000), now), Some(3));
        assert_eq!(delay_until(at(2001), now), Some(3));
        assert_eq!(delay_until(at(1), now), Some(1));
        assert_eq!(delay_until(at(0), now), None);
        assert_eq!(delay_until(at(-5000), now), None);
    }

    #[test]
    fn level_queues_carry_celerys_arguments() {
        let args = DelayTopology::default().level_arguments(3);
        let get = |k: &str| args.inner().get(k).cloned();
        assert_eq!(get("x-message-ttl"), Some(AMQPValue::LongLongInt(8000)));
        assert_eq!(
            get("x-dead-letter-exchange"),
            Some(AMQPValue::LongString("celery_delayed_2".into()))
        );
        assert_eq!(
            get("x-dead-letter-strategy"),
            Some(AMQPValue::LongString("at-least-once".into()))
        );
        let bottom = DelayTopology::default().level_arguments(0);
        assert_eq!(
            bottom.inner().get("x-dead-letter-exchange"),
            Some(&AMQPValue::LongString(DELAY_DELIVERY_EXCHANGE.into()))
        );
    }
}
