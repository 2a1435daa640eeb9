//! Celery task protocol v2 messages in JSON: headers, properties and body.

use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::ShortString;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Error, TaskHeaders};

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
        let mut headers = TaskHeaders::new("rs", task, id.clone());
        headers.root_id = Some(id);
        headers.argsrepr = Some(repr(&args));
        headers.kwargsrepr = Some(repr(&kwargs));
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
        let mut properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_content_encoding(CONTENT_ENCODING.into())
            .with_delivery_mode(2)
            .with_correlation_id(short_string("task id", &self.headers.id)?)
            .with_headers(self.headers.to_field_table());
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
        let fallback_id = properties.correlation_id().as_ref().map(|id| id.as_str());
        let headers = match properties.headers() {
            Some(table) => TaskHeaders::from_field_table(table, fallback_id)?,
            None => return Err(Error::MissingHeader("task")),
        };
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

type Body = (Vec<Value>, Map<String, Value>, Embed);

/// `[args, kwargs, embed]`, each possibly null: the body as Celery and
/// celeriac send it, read straight into its parts.
type WireBody = (
    Option<Vec<Value>>,
    Option<Map<String, Value>>,
    Option<Embed>,
);

/// The usual body is read once, into its parts; any other goes through a
/// [`Value`] to say what is wrong with it (or to take the two-part body
/// of older senders).
fn decode_body(body: &[u8]) -> Result<Body, Error> {
    if let Ok((args, kwargs, embed)) = serde_json::from_slice::<WireBody>(body) {
        let (args, kwargs) = (args.unwrap_or_default(), kwargs.unwrap_or_default());
        return Ok((args, kwargs, embed.unwrap_or_default()));
    }
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
fn repr(value: &impl Serialize) -> String {
    let text = serde_json::to_string(value).unwrap_or_default();
    match text.char_indices().nth(REPR_MAX_CHARS) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}
