//! One dead letter as an operator sees it.

use celeriac_shared::{
    DELAY_DELIVERY_EXCHANGE, DeadLetter, TaskMessage, dead_letter_headers, field_table_to_json,
};
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use serde::Serialize;
use serde_json::{Map, Value};

/// A dead letter read from a `<queue>.dead` queue: the task, why it died,
/// and everything the message carried.
///
/// Fields are optional because a dead letter may be a message that was
/// never a valid task (reason `undecodable`) or that was put into the
/// queue by something other than a celeriac worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterEntry {
    /// The work queue whose dead-letter queue holds it.
    pub queue: String,
    /// Its position in the dead-letter queue when it was read, from 0.
    pub position: u32,
    /// The task id (`id` header, else `correlation_id`).
    pub task_id: Option<String>,
    /// The task name (`task` header).
    pub task: Option<String>,
    /// The positional arguments, when the body could be decoded.
    pub args: Option<Vec<Value>>,
    /// The keyword arguments, when the body could be decoded.
    pub kwargs: Option<Map<String, Value>>,
    /// Why decoding the task failed, for a message that is not a valid
    /// Celery task.
    pub decode_error: Option<String>,
    /// Why it was dead-lettered (`x-celeriac-reason`).
    pub reason: Option<String>,
    /// The error's type (`x-celeriac-error-type`).
    pub error_type: Option<String>,
    /// The error's message (`x-celeriac-error-message`).
    pub error_message: Option<String>,
    /// The error chain or traceback (`x-celeriac-traceback`).
    pub traceback: Option<String>,
    /// Retries done before it was dead-lettered.
    pub retries: u32,
    /// When it was dead-lettered (`x-celeriac-failed-at`).
    pub failed_at: Option<DateTime<Utc>>,
    /// The worker that dead-lettered it.
    pub worker: Option<String>,
    /// The queue it was consumed from.
    pub original_queue: Option<String>,
    /// The exchange it had been published to.
    pub original_exchange: Option<String>,
    /// The routing key it had been published with.
    pub original_routing_key: Option<String>,
    /// The W3C trace id of its `traceparent` header, if any.
    pub trace_id: Option<String>,
    /// How many times it was replayed before (`x-celeriac-replay-count`).
    pub replay_count: u32,
    /// Every application header, as JSON.
    pub headers: Map<String, Value>,
    /// The body's size in bytes.
    pub body_size: usize,
}

impl DeadLetterEntry {
    /// Reads a dead letter of `queue` at `position` from its properties
    /// and body.
    pub fn decode(queue: &str, position: u32, properties: &BasicProperties, body: &[u8]) -> Self {
        let table = properties.headers().clone().unwrap_or_default();
        let headers = field_table_to_json(&table);
        let letter = DeadLetter::from_headers(&table);
        let text = |key: &str| headers.get(key).and_then(Value::as_str).map(str::to_owned);
        let (message, decode_error) = match TaskMessage::decode(properties, body, usize::MAX) {
            Ok(message) => (Some(message), None),
            Err(err) => (None, Some(err.to_string())),
        };
        let correlation_id = properties.correlation_id().as_ref().map(|c| c.to_string());
        let failed_at = text(dead_letter_headers::FAILED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc));
        let counter = |key: &str| {
            let value = headers.get(key).and_then(Value::as_u64).unwrap_or_default();
            u32::try_from(value).unwrap_or(u32::MAX)
        };
        Self {
            queue: queue.to_owned(),
            position,
            task_id: text("id").or(correlation_id),
            task: text("task"),
            args: message.as_ref().map(|m| m.args.clone()),
            kwargs: message.map(|m| m.kwargs),
            decode_error,
            reason: letter.as_ref().map(|l| l.reason.clone()),
            error_type: text(dead_letter_headers::ERROR_TYPE),
            error_message: text(dead_letter_headers::ERROR_MESSAGE),
            traceback: text(dead_letter_headers::TRACEBACK),
            retries: counter(dead_letter_headers::RETRIES),
            failed_at,
            worker: text(dead_letter_headers::WORKER),
            original_queue: text(dead_letter_headers::ORIGINAL_QUEUE),
            original_exchange: text(dead_letter_headers::ORIGINAL_EXCHANGE),
            original_routing_key: text(dead_letter_headers::ORIGINAL_ROUTING_KEY),
            trace_id: text("traceparent").and_then(|t| t.split('-').nth(1).map(str::to_owned)),
            replay_count: counter(dead_letter_headers::REPLAY_COUNT),
            headers,
            body_size: body.len(),
        }
    }

    /// The arguments in one short line: the `argsrepr` and `kwargsrepr`
    /// headers (or the decoded arguments), cut at `max` characters.
    pub fn short_args(&self, max: usize) -> String {
        let repr = |key: &str| self.headers.get(key).and_then(Value::as_str);
        let args = repr("argsrepr").map(str::to_owned).or_else(|| {
            self.args
                .as_ref()
                .map(|a| Value::Array(a.clone()).to_string())
        });
        let kwargs = repr("kwargsrepr").map(str::to_owned).or_else(|| {
            self.kwargs
                .as_ref()
                .map(|k| Value::Object(k.clone()).to_string())
        });
        let line = match (args, kwargs) {
            (Some(a), Some(k)) if k != "{}" => format!("{a} {k}"),
            (Some(a), _) => a,
            (None, Some(k)) => k,
            (None, None) => String::new(),
        };
        shorten(&line, max)
    }

    /// The error in one line: `<type>: <message>`.
    pub fn short_error(&self) -> String {
        match (&self.error_type, &self.error_message) {
            (Some(t), Some(m)) if !t.is_empty() => format!("{t}: {m}"),
            (_, Some(m)) => m.clone(),
            (Some(t), None) => t.clone(),
            (None, None) => self.reason.clone().unwrap_or_default(),
        }
    }

    /// Where a replay publishes it: its original exchange and routing key,
    /// or straight to its original queue through the default exchange when
    /// it last came through the delay ladder (whose exchanges route on the
    /// delay prefix the routing key no longer carries). `None` without the
    /// dead-letter headers saying where it came from.
    pub fn replay_destination(&self) -> Option<(String, String)> {
        let queue = self.original_queue.clone().filter(|q| !q.is_empty());
        let exchange = self.original_exchange.clone().unwrap_or_default();
        let from_ladder =
            exchange.starts_with("celery_delayed_") || exchange == DELAY_DELIVERY_EXCHANGE;
        if from_ladder {
            return queue.map(|q| (String::new(), q));
        }
        match self.original_routing_key.clone().filter(|k| !k.is_empty()) {
            Some(key) => Some((exchange, key)),
            None if exchange.is_empty() => queue.map(|q| (String::new(), q)),
            None => Some((exchange, String::new())),
        }
    }
}

/// `text` cut to at most `max` characters, with `…` when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use celeriac_shared::DeadLetter;

    fn letter(exchange: &str, routing_key: &str) -> DeadLetterEntry {
        let message =
            TaskMessage::new("t.x", vec![Value::from("a very long argument")], Map::new());
        let (body, properties) = message.encode(Utc::now()).unwrap();
        let annotated = DeadLetter {
            reason: "rejected".into(),
            error_type: "Reject".into(),
            error_message: "no".into(),
            traceback: Some("Reject: no".into()),
            retries: 2,
            failed_at: Utc::now(),
            worker: "w@h".into(),
            original_queue: "q".into(),
            original_exchange: exchange.into(),
            original_routing_key: routing_key.into(),
        }
        .annotate(&properties);
        DeadLetterEntry::decode("q", 0, &annotated, &body)
    }

    #[test]
    fn a_dead_letter_is_read_with_its_task_and_error() {
        let entry = letter("q", "q");
        assert_eq!(entry.task.as_deref(), Some("t.x"));
        assert_eq!(entry.retries, 2);
        assert_eq!(entry.short_error(), "Reject: no");
        assert_eq!(entry.short_args(10), "[\"a very …");
        assert!(entry.failed_at.is_some() && entry.decode_error.is_none());
    }

    #[test]
    fn a_replay_goes_to_the_original_destination_or_straight_to_the_queue() {
        let direct = letter("q", "q").replay_destination();
        assert_eq!(direct, Some(("q".into(), "q".into())));
        let retried = letter("celery_delayed_0", "q").replay_destination();
        assert_eq!(retried, Some(("".into(), "q".into())));
        let delivered = letter(DELAY_DELIVERY_EXCHANGE, "q").replay_destination();
        assert_eq!(delivered, Some(("".into(), "q".into())));
    }

    #[test]
    fn an_undecodable_body_is_still_listed() {
        let properties = BasicProperties::default().with_correlation_id("abc".into());
        let entry = DeadLetterEntry::decode("q", 3, &properties, b"not json");
        assert_eq!(entry.task_id.as_deref(), Some("abc"));
        assert!(entry.decode_error.is_some());
        assert_eq!(entry.replay_destination(), None);
    }
}
