//! The application headers of a Celery protocol v2 task message, and their
//! conversion to and from an AMQP field table.
//!
//! Headers are converted field by field, without an intermediate JSON
//! document: encoding and decoding them is on every message's path.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat};
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::field_table::{MAX_HEADER_DEPTH, amqp_to_json, json_to_amqp, nests_deeper_than};
use crate::{Error, TimeLimit, amqp_integer, json_to_field_table};

/// The application headers of a protocol v2 task message, with their JSON
/// types exactly as Celery sends them.
///
/// Unknown headers are kept in [`TaskHeaders::extra`] and sent back out
/// (trace context travels there). `null` is accepted for every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskHeaders {
    /// The sender's language: `"py"` from Celery, `"rs"` from celeriac.
    #[serde(default = "default_lang", deserialize_with = "null_as_default")]
    pub lang: String,
    /// The task name: the dispatch key.
    pub task: String,
    /// The task id (a UUID string).
    pub id: String,
    /// A display alias for the task name.
    #[serde(default)]
    pub shadow: Option<String>,
    /// Run no earlier than this (countdown becomes eta at publish).
    #[serde(default, with = "iso_datetime")]
    pub eta: Option<DateTime<FixedOffset>>,
    /// Discard the task if it has not started by this time.
    #[serde(default, with = "iso_datetime")]
    pub expires: Option<DateTime<FixedOffset>>,
    /// The id of the group this task belongs to.
    #[serde(default)]
    pub group: Option<String>,
    /// The task's position in its group.
    #[serde(default)]
    pub group_index: Option<u64>,
    /// How often this task was retried: 0 on the first attempt.
    #[serde(default, deserialize_with = "null_as_default")]
    pub retries: u32,
    /// Hard and soft time limits, sent as `[hard, soft]` seconds.
    #[serde(default)]
    pub timelimit: TimeLimit,
    /// The id of the first task of the workflow (defaults to the own id).
    #[serde(default)]
    pub root_id: Option<String>,
    /// The id of the task that sent this one.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Printable positional arguments, truncated to 1024 characters.
    #[serde(default)]
    pub argsrepr: Option<String>,
    /// Printable keyword arguments, truncated to 1024 characters.
    #[serde(default)]
    pub kwargsrepr: Option<String>,
    /// The producer's node name, e.g. `gen1234@host`.
    #[serde(default)]
    pub origin: Option<String>,
    /// When true, the worker sends no result even if `reply_to` is set.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ignore_result: bool,
    /// How often the task was replaced (`Task.replace` in Celery).
    #[serde(default, deserialize_with = "null_as_default")]
    pub replaced_task_nesting: u32,
    /// Celery's stamping headers, passed through.
    #[serde(default)]
    pub stamped_headers: Option<Value>,
    /// Celery's stamps, passed through.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stamps: Map<String, Value>,
    /// Every other header: `traceparent`, `tracestate`, `baggage`, custom
    /// headers.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TaskHeaders {
    /// The headers as an AMQP field table, with the JSON types py-amqp
    /// reads back as Celery expects them (strings `S`, integers `l`,
    /// booleans `t`, `null` as void).
    pub fn to_field_table(&self) -> FieldTable {
        let mut table = json_to_field_table(&self.extra);
        let mut put = |key: &str, value: AMQPValue| {
            table.insert(ShortString::from(key), value);
        };
        put("lang", string(&self.lang));
        put("task", string(&self.task));
        put("id", string(&self.id));
        put("shadow", optional_string(self.shadow.as_deref()));
        put("eta", optional_datetime(self.eta.as_ref()));
        put("expires", optional_datetime(self.expires.as_ref()));
        put("group", optional_string(self.group.as_deref()));
        let group_index = self.group_index.and_then(|i| i64::try_from(i).ok());
        put(
            "group_index",
            group_index.map_or(AMQPValue::Void, AMQPValue::LongLongInt),
        );
        put("retries", AMQPValue::LongLongInt(self.retries.into()));
        put("timelimit", time_limit(&self.timelimit));
        put("root_id", optional_string(self.root_id.as_deref()));
        put("parent_id", optional_string(self.parent_id.as_deref()));
        put("argsrepr", optional_string(self.argsrepr.as_deref()));
        put("kwargsrepr", optional_string(self.kwargsrepr.as_deref()));
        put("origin", optional_string(self.origin.as_deref()));
        put("ignore_result", AMQPValue::Boolean(self.ignore_result));
        let nesting = self.replaced_task_nesting.into();
        put("replaced_task_nesting", AMQPValue::LongLongInt(nesting));
        let stamped = self.stamped_headers.as_ref();
        put(
            "stamped_headers",
            stamped.map_or(AMQPValue::Void, json_to_amqp),
        );
        put(
            "stamps",
            AMQPValue::FieldTable(json_to_field_table(&self.stamps)),
        );
        table
    }

    /// Reads the headers from an AMQP field table. `task` and `id` are
    /// required (`id` falls back to `fallback_id`, the `correlation_id`);
    /// every other header may be absent or void, and unknown ones are kept
    /// in [`TaskHeaders::extra`].
    pub fn from_field_table(table: &FieldTable, fallback_id: Option<&str>) -> Result<Self, Error> {
        let mut headers = Self::new(default_lang(), String::new(), String::new());
        let mut id = None;
        let mut task = None;
        for (key, value) in table.inner() {
            let header = Header {
                name: key.as_str(),
                value,
            };
            if nests_deeper_than(value, MAX_HEADER_DEPTH) {
                let reason = format!("nested deeper than {MAX_HEADER_DEPTH} levels");
                return Err(header.invalid(reason));
            }
            match header.name {
                "task" => task = header.string()?,
                "id" => id = header.string()?,
                _ => headers.set(header)?,
            }
        }
        headers.task = task.ok_or(Error::MissingHeader("task"))?;
        headers.id = match (id, fallback_id) {
            (Some(id), _) => id,
            (None, Some(fallback)) => fallback.to_owned(),
            (None, None) => return Err(Error::MissingHeader("id")),
        };
        Ok(headers)
    }

    /// Headers of task `task` with id `id` sent by `lang`, every other
    /// field at its default (none, zero, false, empty).
    pub fn new(lang: impl Into<String>, task: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            lang: lang.into(),
            task: task.into(),
            id: id.into(),
            shadow: None,
            eta: None,
            expires: None,
            group: None,
            group_index: None,
            retries: 0,
            timelimit: TimeLimit::default(),
            root_id: None,
            parent_id: None,
            argsrepr: None,
            kwargsrepr: None,
            origin: None,
            ignore_result: false,
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: Map::new(),
            extra: Map::new(),
        }
    }

    /// Sets the field `header` names, or keeps it in `extra`.
    fn set(&mut self, header: Header<'_>) -> Result<(), Error> {
        match header.name {
            "lang" => self.lang = header.string()?.unwrap_or_default(),
            "shadow" => self.shadow = header.string()?,
            "eta" => self.eta = header.datetime()?,
            "expires" => self.expires = header.datetime()?,
            "group" => self.group = header.string()?,
            "group_index" => self.group_index = header.integer()?,
            "retries" => self.retries = header.integer()?.unwrap_or_default(),
            "timelimit" => self.timelimit = header.time_limit()?,
            "root_id" => self.root_id = header.string()?,
            "parent_id" => self.parent_id = header.string()?,
            "argsrepr" => self.argsrepr = header.string()?,
            "kwargsrepr" => self.kwargsrepr = header.string()?,
            "origin" => self.origin = header.string()?,
            "ignore_result" => self.ignore_result = header.boolean()?.unwrap_or_default(),
            "replaced_task_nesting" => {
                self.replaced_task_nesting = header.integer()?.unwrap_or_default();
            }
            "stamped_headers" => {
                self.stamped_headers = Some(amqp_to_json(header.value)).filter(|v| !v.is_null());
            }
            "stamps" => match amqp_to_json(header.value) {
                Value::Object(stamps) => self.stamps = stamps,
                Value::Null => {}
                _ => return Err(header.invalid("expected a table")),
            },
            name => {
                self.extra
                    .insert(name.to_owned(), amqp_to_json(header.value));
            }
        }
        Ok(())
    }
}

/// One application header being decoded.
struct Header<'a> {
    name: &'a str,
    value: &'a AMQPValue,
}

impl Header<'_> {
    fn invalid(&self, reason: impl Into<String>) -> Error {
        Error::InvalidHeader {
            name: self.name.to_owned(),
            reason: reason.into(),
        }
    }

    fn string(&self) -> Result<Option<String>, Error> {
        match self.value {
            AMQPValue::Void => Ok(None),
            AMQPValue::LongString(s) => Ok(Some(utf8(s.as_bytes()))),
            AMQPValue::ShortString(s) => Ok(Some(s.as_str().to_owned())),
            AMQPValue::ByteArray(b) => Ok(Some(utf8(b.as_slice()))),
            _ => Err(self.invalid("expected a string")),
        }
    }

    fn integer<T: TryFrom<i64>>(&self) -> Result<Option<T>, Error> {
        if let AMQPValue::Void = self.value {
            return Ok(None);
        }
        let n = amqp_integer(self.value).ok_or_else(|| self.invalid("expected an integer"))?;
        T::try_from(n)
            .map(Some)
            .map_err(|_| self.invalid(format!("{n} is out of range")))
    }

    fn boolean(&self) -> Result<Option<bool>, Error> {
        match self.value {
            AMQPValue::Void => Ok(None),
            AMQPValue::Boolean(b) => Ok(Some(*b)),
            _ => Err(self.invalid("expected a boolean")),
        }
    }

    fn datetime(&self) -> Result<Option<DateTime<FixedOffset>>, Error> {
        let Some(text) = self.string()? else {
            return Ok(None);
        };
        parse_datetime(&text)
            .map(Some)
            .ok_or_else(|| self.invalid(not_a_timestamp(&text)))
    }

    fn time_limit(&self) -> Result<TimeLimit, Error> {
        serde_json::from_value(amqp_to_json(self.value)).map_err(|e| self.invalid(e.to_string()))
    }
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes()))
}

fn optional_string(value: Option<&str>) -> AMQPValue {
    value.map_or(AMQPValue::Void, string)
}

fn optional_datetime(value: Option<&DateTime<FixedOffset>>) -> AMQPValue {
    value.map_or(AMQPValue::Void, |t| string(&format_datetime(t)))
}

fn time_limit(limit: &TimeLimit) -> AMQPValue {
    let seconds = |limit: Option<std::time::Duration>| match limit {
        None => AMQPValue::Void,
        Some(d) if d.subsec_nanos() == 0 => i64::try_from(d.as_secs())
            .map_or(AMQPValue::Double(d.as_secs_f64()), AMQPValue::LongLongInt),
        Some(d) => AMQPValue::Double(d.as_secs_f64()),
    };
    AMQPValue::FieldArray(FieldArray::from(vec![
        seconds(limit.hard),
        seconds(limit.soft),
    ]))
}

/// An ISO-8601 timestamp as Python's `isoformat()` writes it.
fn format_datetime(t: &DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, false)
}

/// Parses an ISO-8601 timestamp; one without offset is taken as UTC.
fn parse_datetime(text: &str) -> Option<DateTime<FixedOffset>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t);
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|naive| naive.and_utc().fixed_offset())
        .ok()
}

/// Why a timestamp header is refused.
fn not_a_timestamp(text: &str) -> String {
    format!("`{text}` is not an ISO-8601 timestamp")
}

fn default_lang() -> String {
    "py".into()
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// ISO-8601 timestamps in JSON, as Python's `isoformat()` writes them.
mod iso_datetime {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<DateTime<FixedOffset>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => serializer.serialize_str(&format_datetime(t)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
        use serde::de::Error as _;
        match Option::<String>::deserialize(deserializer)? {
            None => Ok(None),
            Some(text) => parse_datetime(&text)
                .map(Some)
                .ok_or_else(|| D::Error::custom(not_a_timestamp(&text))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field_table_to_json;
    use serde_json::json;

    fn full_headers() -> TaskHeaders {
        let json = json!({
            "lang": "py", "task": "proj.tasks.add", "id": "id-1", "shadow": null,
            "eta": "2026-11-23T06:01:34.617982+00:00", "expires": null,
            "group": "g-1", "group_index": 2, "retries": 1, "timelimit": [30, 2.5],
            "root_id": "id-0", "parent_id": null, "argsrepr": "(2, 2)",
            "kwargsrepr": "{}", "origin": "gen1@vm", "ignore_result": true,
            "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {},
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "custom": {"nested": [1, "two", null]},
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn the_field_table_holds_the_same_values_as_the_json_form() {
        let headers = full_headers();
        let Value::Object(expected) = serde_json::to_value(&headers).unwrap() else {
            panic!("headers serialize to an object");
        };
        assert_eq!(field_table_to_json(&headers.to_field_table()), expected);
    }

    #[test]
    fn headers_round_trip_through_a_field_table() {
        let headers = full_headers();
        let decoded = TaskHeaders::from_field_table(&headers.to_field_table(), None).unwrap();
        assert_eq!(decoded, headers);
    }

    #[test]
    fn void_fields_take_their_defaults() {
        let mut table = FieldTable::default();
        table.insert("task".into(), string("t"));
        table.insert("id".into(), string("i"));
        for name in [
            "retries",
            "ignore_result",
            "stamps",
            "timelimit",
            "eta",
            "lang",
        ] {
            table.insert(name.into(), AMQPValue::Void);
        }
        let headers = TaskHeaders::from_field_table(&table, None).unwrap();
        assert_eq!(headers.retries, 0);
        assert!(!headers.ignore_result);
        assert_eq!(headers.timelimit, TimeLimit::default());
        assert_eq!(headers.eta, None);
    }

    #[test]
    fn a_void_task_is_missing_and_a_numeric_id_is_invalid() {
        let mut table = FieldTable::default();
        table.insert("task".into(), AMQPValue::Void);
        let err = TaskHeaders::from_field_table(&table, Some("x")).unwrap_err();
        assert!(matches!(err, Error::MissingHeader("task")), "{err:?}");
        table.insert("task".into(), string("t"));
        table.insert("id".into(), AMQPValue::LongLongInt(7));
        let err = TaskHeaders::from_field_table(&table, Some("x")).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidHeader { name, .. } if name == "id"),
            "{err:?}"
        );
    }
}
