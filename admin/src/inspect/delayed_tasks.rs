//! Counting and reading what waits in the delay ladder.

use std::time::Duration;

use celeriac_shared::{DELAY_BITS, field_table_to_json, strip_delay_prefix};
use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use serde_json::Value;

use super::browser::Browser;
use celeriac_producer::Producer;

use crate::{DelayLevel, DelayReport, DelayedTask, Error};

/// Inspects the delay ladder (`celery_delayed_27` … `celery_delayed_0`)
/// through a [`Producer`]'s connection: how many retries, countdowns and
/// etas wait, for which queues, and roughly when they are due.
///
/// [`DelayedTasks::count`] only asks the broker for each level's message
/// count. [`DelayedTasks::inspect`] also reads every waiting message the
/// way dead letters are browsed, and gives each back at once: a message
/// is held for the moment of the read (so it may arrive that much later),
/// and on quorum delay queues each read counts as a delivery in its
/// `x-delivery-count` (see `docs/dead-letters.md`).
#[derive(Debug, Clone)]
pub struct DelayedTasks {
    /// Whose connection is used.
    producer: Producer,
}

impl DelayedTasks {
    /// Delay-ladder inspection over `producer`'s connection.
    pub fn new(producer: &Producer) -> Self {
        Self {
            producer: producer.clone(),
        }
    }

    /// The message count of every level; nothing is read.
    pub async fn count(&self) -> Result<DelayReport, Error> {
        let mut levels = Vec::new();
        for level in (0..DELAY_BITS).rev() {
            let queue = format!("celery_delayed_{level}");
            let messages = self.producer.queue_stats(&queue).await?.map(|s| s.messages);
            levels.push(DelayLevel {
                level,
                messages,
                hold: Duration::from_secs(1 << level),
                due_within: Duration::from_secs((2 << level) - 1),
                truncated: false,
                queue,
            });
        }
        Ok(DelayReport {
            levels,
            tasks: Vec::new(),
            browsed: false,
        })
    }

    /// The counts, and every waiting message with its destination and due
    /// time, read and given back level by level.
    pub async fn inspect(&self) -> Result<DelayReport, Error> {
        let mut report = self.count().await?;
        for level in &mut report.levels {
            if level.messages.unwrap_or_default() == 0 {
                continue;
            }
            let channel = self.producer.open_channel().await?;
            let mut browser = match Browser::open(channel, &level.queue).await {
                Ok(browser) => browser,
                // Emptied and deleted meanwhile.
                Err(Error::UnknownQueue { .. }) => continue,
                Err(err) => return Err(err),
            };
            while let Some(delivery) = browser.next().await? {
                report
                    .tasks
                    .push(delayed_task(level.level, &delivery, Utc::now()));
            }
            level.truncated = browser.truncated();
            browser.close().await?;
        }
        report.browsed = true;
        Ok(report)
    }
}

/// The task a delivery from level `level` carries, with its due time
/// worked out from its routing key: the 28 binary digits of the delay,
/// of which the bits below `level` are still to be waited for after this
/// level's hold.
fn delayed_task(level: u32, delivery: &Delivery, now: DateTime<Utc>) -> DelayedTask {
    let key = delivery.routing_key.as_str();
    let below = delay_bits(key).map_or(0, |bits| bits & ((1 << level) - 1));
    let after = now + chrono::Duration::seconds(i64::try_from(below).unwrap_or(i64::MAX));
    let headers = delivery
        .properties
        .headers()
        .as_ref()
        .map(field_table_to_json)
        .unwrap_or_default();
    let text = |k: &str| headers.get(k).and_then(Value::as_str).map(str::to_owned);
    let retries = headers.get("retries").and_then(Value::as_u64);
    DelayedTask {
        level,
        queue: strip_delay_prefix(key).to_owned(),
        task_id: text("id").or_else(|| {
            let id = delivery.properties.correlation_id().as_ref();
            id.map(|c| c.to_string())
        }),
        task: text("task"),
        retries: retries.map_or(0, |r| u32::try_from(r).unwrap_or(u32::MAX)),
        eta: text("eta")
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc)),
        due_after: after,
        due_by: after + chrono::Duration::seconds(1 << level),
    }
}

/// The delay in seconds spelled by a routing key's 28-digit prefix.
fn delay_bits(routing_key: &str) -> Option<u64> {
    let mut bits = 0;
    let mut words = routing_key.split('.');
    for _ in 0..DELAY_BITS {
        bits = match words.next()? {
            "0" => bits << 1,
            "1" => (bits << 1) | 1,
            _ => return None,
        };
    }
    Some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use celeriac_shared::DelayTopology;

    #[test]
    fn the_routing_key_spells_the_delay() {
        let key = DelayTopology::routing_key(13, "q").unwrap();
        assert_eq!(delay_bits(&key), Some(13));
        assert_eq!(delay_bits("q"), None);
    }

    #[test]
    fn the_lower_bits_and_the_level_bound_the_due_time() {
        // 13 s = 8 + 4 + 1: waiting in level 3, 5 s of lower levels to go.
        let key = DelayTopology::routing_key(13, "q").unwrap();
        let delivery = Delivery::mock(1, "celery_delayed_3".into(), key.into(), false, vec![]);
        let now = Utc::now();
        let task = delayed_task(3, &delivery, now);
        assert_eq!(task.queue, "q");
        assert_eq!(task.due_after, now + chrono::Duration::seconds(5));
        assert_eq!(task.due_by, now + chrono::Duration::seconds(13));
        assert_eq!(task.due(), task.due_by, "without an eta, the upper bound");
    }
}
