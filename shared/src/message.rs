//! Celery task protocol v2 messages in JSON: headers, properties and body.

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Utc};
use lapin::BasicProperties;
use lapin::types::ShortString;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::{Error, TimeLimit, field_table_to_json, json_to_field_table};

/// The content type of every message celeriac sends and accepts.
pub const CONTENT_TYPE: &str = "application/json";
/// The content encoding of every message celeriac sends and accepts.
pub const CONTENT_ENCODING: &str = "utf-8";
/// Celery truncates `argsrepr` and `kwargsrepr` to this many characters.
const REPR_MAX_CHARS: usize = 1024;

/// One task message: what a producer publishes and a worker consumes.
///
/// The AMQP `correlation_id` is always the task id (`headers.id`), and the
/// `expiration` property is derived from `headers.expires` when encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskMessage {
    /// The application headers (`task`, `id`, `retries`, ...).
    pub headers: TaskHeaders,
    /// The queue to send the result to; `None` when nobody waits for it.
    pub reply_to: Option<String>,
    /// AMQP priority, meaningful on queues declared with `x-max-priority`.
    pub priority: Option<u8>,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// Callbacks, errbacks, chain and chord, passed through untouched.
    pub embed: Embed,
}

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

/// The third element of the body: workflow signatures, kept as raw JSON and
/// passed through.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Embed {
    /// Signatures to call with the result on success.
    #[serde(default)]
    pub callbacks: Option<Value>,
    /// Signatures to call on failure.
    #[serde(default)]
    pub errbacks: Option<Value>,
    /// The rest of a chain, in reverse order (the last runs next).
    #[serde(default)]
    pub chain: Option<Value>,
    /// The chord callback.
    #[serde(default)]
    pub chord: Option<Value>,
}

impl TaskMessage {
    /// A new message for `task` with a fresh task id, `root_id` set to it,
    /// no reply queue and the given arguments.
    pub fn new(task: impl Into<String>, args: Vec<Value>, kwargs: Map<String, Value>) -> Self {
        let id = uuid::Uuid::new_v4().to_string();
        let headers = TaskHeaders {
            lang: "rs".into(),
            task: task.into(),
            root_id: Some(id.clone()),
            id,
            shadow: None,
            eta: None,
            expires: None,
            group: None,
            group_index: None,
            retries: 0,
            timelimit: TimeLimit::default(),
            parent_id: None,
            argsrepr: Some(repr(&Value::Array(args.clone()))),
            kwargsrepr: Some(repr(&Value::Object(kwargs.clone()))),
            origin: None,
            ignore_result: false,
            replaced_task_nesting: 0,
            stamped_headers: None,
            stamps: Map::new(),
            extra: Map::new(),
        };
        Self {
            headers,
            reply_to: None,
            priority: None,
            args,
            kwargs,
            embed: Embed::default(),
        }
    }

    /// The task id.
    pub fn id(&self) -> &str {
        &self.headers.id
    }

    /// The task name.
    pub fn task(&self) -> &str {
        &self.headers.task
    }

    /// Encodes the body `[args, kwargs, embed]` as JSON.
    pub fn encode_body(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(&(&self.args, &self.kwargs, &self.embed)).map_err(|source| {
            Error::Encode {
                what: "task body",
                source,
            }
        })
    }

    /// Encodes the message as an AMQP body and properties: JSON content
    /// type, persistent delivery, `correlation_id` = task id, and an
    /// `expiration` in milliseconds when `expires` is set (relative to
    /// `now`, never negative).
    pub fn encode(&self, now: DateTime<Utc>) -> Result<(Vec<u8>, BasicProperties), Error> {
        let body = self.encode_body()?;
        let headers = match serde_json::to_value(&self.headers) {
            Ok(Value::Object(map)) => map,
            Ok(_) => unreachable!("TaskHeaders serializes to an object"),
            Err(source) => {
                return Err(Error::Encode {
                    what: "task headers",
                    source,
                });
            }
        };
        let mut properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_content_encoding(CONTENT_ENCODING.into())
            .with_delivery_mode(2)
            .with_correlation_id(short_string("task id", &self.headers.id)?)
            .with_headers(json_to_field_table(&headers));
        if let Some(reply_to) = &self.reply_to {
            properties = properties.with_reply_to(short_string("reply queue", reply_to)?);
        }
        if let Some(priority) = self.priority {
            properties = properties.with_priority(priority);
        }
        if let Some(expires) = self.headers.expires {
            let millis = (expires.with_timezone(&Utc) - now)
                .num_milliseconds()
                .max(0);
            properties = properties.with_expiration(millis.to_string().into());
        }
        Ok((body, properties))
    }

    /// Decodes a delivered message from its AMQP properties and body.
    ///
    /// Refuses bodies over `max_size` bytes before parsing them, and any
    /// content type but JSON (pickle and YAML are never evaluated).
    pub fn decode(
        properties: &BasicProperties,
        body: &[u8],
        max_size: usize,
    ) -> Result<Self, Error> {
        if body.len() > max_size {
            return Err(Error::Oversize {
                size: body.len(),
                limit: max_size,
            });
        }
        check_content_type(properties)?;
        let mut headers = properties
            .headers()
            .as_ref()
            .map(field_table_to_json)
            .unwrap_or_default();
        if let (false, Some(id)) = (headers.contains_key("id"), properties.correlation_id()) {
            headers.insert("id".into(), Value::String(id.as_str().into()));
        }
        let headers = decode_headers(headers)?;
        let (args, kwargs, embed) = decode_body(body)?;
        let reply_to = properties
            .reply_to()
            .as_ref()
            .map(|r| r.as_str().to_owned())
            .filter(|r| !r.is_empty());
        Ok(Self {
            headers,
            reply_to,
            priority: *properties.priority(),
            args,
            kwargs,
            embed,
        })
    }
}

/// Validates a user-supplied AMQP short string (queue, exchange, routing
/// key, ids) instead of letting `ShortString::from` panic.
pub(crate) fn short_string(kind: &'static str, value: &str) -> Result<ShortString, Error> {
    ShortString::try_new(value).map_err(|_| Error::InvalidName {
        kind,
        name: value.chars().take(64).collect(),
    })
}

fn check_content_type(properties: &BasicProperties) -> Result<(), Error> {
    if let Some(content_type) = properties.content_type() {
        let content_type = content_type.as_str();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if !essence.is_empty() && !essence.eq_ignore_ascii_case(CONTENT_TYPE) {
            return Err(Error::UnsupportedContentType(content_type.to_owned()));
        }
    }
    if let Some(encoding) = properties.content_encoding() {
        let encoding = encoding.as_str();
        if !encoding.is_empty()
            && !encoding.eq_ignore_ascii_case("utf-8")
            && !encoding.eq_ignore_ascii_case("utf8")
        {
            return Err(Error::UnsupportedContentEncoding(encoding.to_owned()));
        }
    }
    Ok(())
}

fn decode_headers(headers: Map<String, Value>) -> Result<TaskHeaders, Error> {
    for required in ["task", "id"] {
        match headers.get(required) {
            None | Some(Value::Null) => return Err(Error::MissingHeader(required)),
            Some(_) => {}
        }
    }
    serde_path_to_error::deserialize(Value::Object(headers)).map_err(|err| Error::InvalidHeader {
        name: err.path().to_string(),
        reason: err.inner().to_string(),
    })
}

type Body = (Vec<Value>, Map<String, Value>, Embed);

fn decode_body(body: &[u8]) -> Result<Body, Error> {
    let value: Value = serde_json::from_slice(body).map_err(Error::NotJson)?;
    let Value::Array(mut parts) = value else {
        return Err(Error::BodyShape(format!(
            "expected [args, kwargs, embed], found {}",
            json_kind(&value)
        )));
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(Error::BodyShape(format!(
            "expected [args, kwargs, embed], found an array of {} elements",
            parts.len()
        )));
    }
    let args = match parts[0].take() {
        Value::Array(list) => list,
        Value::Null => Vec::new(),
        other => {
            return Err(Error::BodyShape(format!(
                "args must be a list, found {}",
                json_kind(&other)
            )));
        }
    };
    let kwargs = match parts[1].take() {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(Error::BodyShape(format!(
                "kwargs must be an object, found {}",
                json_kind(&other)
            )));
        }
    };
    let embed = match parts.get_mut(2).map(Value::take) {
        None | Some(Value::Null) => Embed::default(),
        Some(value @ Value::Object(_)) => serde_json::from_value(value)
            .map_err(|err| Error::BodyShape(format!("embed is invalid: {err}")))?,
        Some(other) => {
            return Err(Error::BodyShape(format!(
                "embed must be an object, found {}",
                json_kind(&other)
            )));
        }
    };
    Ok((args, kwargs, embed))
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Printable arguments for `argsrepr`/`kwargsrepr`, truncated as Celery does.
fn repr(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(REPR_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
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

/// ISO-8601 timestamps as Python's `isoformat()` writes them; a timestamp
/// without offset is taken as UTC.
mod iso_datetime {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<DateTime<FixedOffset>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(t) => serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, false)),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<FixedOffset>>, D::Error> {
        use serde::de::Error as _;
        let Some(text) = Option::<String>::deserialize(deserializer)? else {
            return Ok(None);
        };
        if let Ok(t) = DateTime::parse_from_rfc3339(&text) {
            return Ok(Some(t));
        }
        NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|naive| Some(naive.and_utc().fixed_offset()))
            .map_err(|_| D::Error::custom(format!("`{text}` is not an ISO-8601 timestamp")))
    }
}
