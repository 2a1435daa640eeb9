//! The mutations applied to real captures: to their headers, body and
//! properties.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::Value;

use super::{amqp_value, json_value, nested, short_string, without};

/// Content types a broker may deliver: JSON and its spellings, Celery's
/// other serializers, and nonsense.
const CONTENT_TYPES: [&str; 8] = [
    "application/json",
    "Application/JSON; charset=utf-8",
    "application/x-python-serialize",
    "application/x-yaml",
    "application/x-msgpack",
    "application/data",
    "",
    ";",
];

/// One change to the application headers.
#[derive(Debug, Clone)]
pub(super) enum HeaderMutation {
    /// Remove the header at this position.
    Drop(Index),
    /// Give the header at this position another value.
    Replace(Index, AMQPValue),
    /// Set a well-known header to a random value.
    Set(&'static str, AMQPValue),
    /// Set a well-known header to tables nested this deep.
    Deep(&'static str, usize),
    /// Set a well-known header to an array this long.
    Huge(&'static str, usize),
}

/// The headers Celery and celeriac read.
const HEADER_NAMES: [&str; 18] = [
    "task",
    "id",
    "lang",
    "shadow",
    "eta",
    "expires",
    "group",
    "group_index",
    "retries",
    "timelimit",
    "root_id",
    "parent_id",
    "argsrepr",
    "ignore_result",
    "replaced_task_nesting",
    "stamped_headers",
    "stamps",
    crate::DELIVERIES_HEADER,
];

pub(super) fn header_mutation() -> impl Strategy<Value = HeaderMutation> {
    let name = || select(HEADER_NAMES.to_vec());
    prop_oneof![
        any::<Index>().prop_map(HeaderMutation::Drop),
        (any::<Index>(), amqp_value()).prop_map(|(i, v)| HeaderMutation::Replace(i, v)),
        (name(), amqp_value()).prop_map(|(n, v)| HeaderMutation::Set(n, v)),
        (name(), 1usize..300).prop_map(|(n, depth)| HeaderMutation::Deep(n, depth)),
        (name(), 0usize..20_000).prop_map(|(n, len)| HeaderMutation::Huge(n, len)),
    ]
}

impl HeaderMutation {
    pub(super) fn apply(self, table: &mut FieldTable) {
        let key_at = |table: &FieldTable, index: Index| {
            let keys: Vec<ShortString> = table.inner().keys().cloned().collect();
            (!keys.is_empty()).then(|| keys[index.index(keys.len())].clone())
        };
        match self {
            HeaderMutation::Drop(index) => {
                if let Some(key) = key_at(table, index) {
                    *table = without(table, &[key.as_str()]);
                }
            }
            HeaderMutation::Replace(index, value) => {
                if let Some(key) = key_at(table, index) {
                    table.insert(key, value);
                }
            }
            HeaderMutation::Set(name, value) => {
                table.insert(name.into(), value);
            }
            HeaderMutation::Deep(name, depth) => {
                table.insert(name.into(), nested(depth));
            }
            HeaderMutation::Huge(name, len) => {
                let items = vec![AMQPValue::LongLongInt(i64::MAX); len];
                table.insert(name.into(), AMQPValue::FieldArray(items.into()));
            }
        }
    }
}

/// One change to the body.
#[derive(Debug, Clone)]
pub(super) enum BodyMutation {
    /// Leave it as captured.
    Keep,
    /// Replace it with random bytes.
    Random(Vec<u8>),
    /// Cut it at this position.
    Truncate(Index),
    /// Overwrite the byte at this position.
    Flip(Index, u8),
    /// Replace it with any JSON value (mostly the wrong shape).
    Json(Value),
    /// Replace it with `[args, kwargs, embed]` of random values.
    Parts(Value, Value, Value),
    /// Replace it with arrays nested this deep.
    Deep(usize),
}

pub(super) fn body_mutation() -> impl Strategy<Value = BodyMutation> {
    prop_oneof![
        Just(BodyMutation::Keep),
        vec(any::<u8>(), 0..200).prop_map(BodyMutation::Random),
        any::<Index>().prop_map(BodyMutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| BodyMutation::Flip(i, b)),
        json_value().prop_map(BodyMutation::Json),
        (json_value(), json_value(), json_value())
            .prop_map(|(a, k, e)| BodyMutation::Parts(a, k, e)),
        (1usize..5_000).prop_map(BodyMutation::Deep),
    ]
}

impl BodyMutation {
    pub(super) fn apply(self, body: &mut Vec<u8>) {
        match self {
            BodyMutation::Keep => {}
            BodyMutation::Random(bytes) => *body = bytes,
            BodyMutation::Truncate(index) => body.truncate(index.index(body.len() + 1)),
            BodyMutation::Flip(index, byte) => {
                if !body.is_empty() {
                    let at = index.index(body.len());
                    body[at] = byte;
                }
            }
            BodyMutation::Json(value) => *body = value.to_string().into_bytes(),
            BodyMutation::Parts(args, kwargs, embed) => {
                *body = Value::Array(vec![args, kwargs, embed])
                    .to_string()
                    .into_bytes();
            }
            BodyMutation::Deep(depth) => {
                *body = [b"[".repeat(depth), b"]".repeat(depth)].concat();
            }
        }
    }
}

/// One change to the AMQP properties.
#[derive(Debug, Clone)]
pub(super) enum PropertyMutation {
    ContentType(String),
    ContentEncoding(String),
    CorrelationId(String),
    ReplyTo(String),
    Priority(u8),
    NoHeaders,
}

pub(super) fn property_mutation() -> impl Strategy<Value = PropertyMutation> {
    let content_type = prop_oneof![
        select(CONTENT_TYPES.to_vec()).prop_map(str::to_owned),
        "\\PC{0,40}"
    ];
    let encoding = prop_oneof![
        select(vec!["utf-8", "UTF8", "binary", "latin-1", "gzip", ""]).prop_map(str::to_owned),
        "\\PC{0,20}"
    ];
    prop_oneof![
        content_type.prop_map(PropertyMutation::ContentType),
        encoding.prop_map(PropertyMutation::ContentEncoding),
        "\\PC{0,80}".prop_map(PropertyMutation::CorrelationId),
        "\\PC{0,80}".prop_map(PropertyMutation::ReplyTo),
        any::<u8>().prop_map(PropertyMutation::Priority),
        Just(PropertyMutation::NoHeaders),
    ]
}

impl PropertyMutation {
    pub(super) fn apply(self, properties: BasicProperties) -> BasicProperties {
        match self {
            PropertyMutation::ContentType(s) => properties.with_content_type(short_string(&s)),
            PropertyMutation::ContentEncoding(s) => {
                properties.with_content_encoding(short_string(&s))
            }
            PropertyMutation::CorrelationId(s) => properties.with_correlation_id(short_string(&s)),
            PropertyMutation::ReplyTo(s) => properties.with_reply_to(short_string(&s)),
            PropertyMutation::Priority(p) => properties.with_priority(p),
            PropertyMutation::NoHeaders => {
                let mut copy = BasicProperties::default();
                if let Some(v) = properties.content_type() {
                    copy = copy.with_content_type(v.clone());
                }
                copy
            }
        }
    }
}
