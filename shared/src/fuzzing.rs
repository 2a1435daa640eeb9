//! Random and mutated Celery messages for property tests of the decoders
//! and of a worker's dispatch ("fuzzing" with [`proptest`](mod@proptest)).
//!
//! Every strategy starts from the real captures in `tests/fixtures/` and
//! mutates them: headers dropped, retyped, replaced by random values,
//! nested deeply or made huge; bodies replaced by random bytes, truncated,
//! reshaped or nested deeply; content type, encoding and ids changed.
//! Compiled for this crate's tests and with the `fuzzing` feature (for the
//! worker's tests); `scripts/fuzz` runs them with many more cases.

mod mutation;

use lapin::BasicProperties;
use lapin::types::{
    AMQPValue, ByteArray, DecimalValue, FieldArray, FieldTable, LongString, ShortString,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Number, Value};

use crate::json_to_field_table;
use mutation::{body_mutation, header_mutation, property_mutation};

const TASK_CAPTURES: &str = include_str!("../tests/fixtures/celery-task-messages.json");
const RESULT_CAPTURES: &str = include_str!("../tests/fixtures/celery-rpc-results.json");

/// A message as a consumer receives it: properties (with the application
/// headers) and body.
#[derive(Debug, Clone)]
pub struct RawMessage {
    /// The AMQP properties, application headers included.
    pub properties: BasicProperties,
    /// The body.
    pub body: Vec<u8>,
}

/// Every task message of `tests/fixtures/celery-task-messages.json`, as a
/// worker receives it.
pub fn task_captures() -> Vec<RawMessage> {
    captures(TASK_CAPTURES)
}

/// Every result body of `tests/fixtures/celery-rpc-results.json`.
pub fn result_captures() -> Vec<Vec<u8>> {
    captures(RESULT_CAPTURES)
        .into_iter()
        .map(|m| m.body)
        .collect()
}

fn captures(file: &str) -> Vec<RawMessage> {
    let all: Map<String, Value> = serde_json::from_str(file).unwrap_or_default();
    all.values()
        .filter_map(Value::as_array)
        .flatten()
        .map(|capture| {
            let text = |key: &str| capture["properties"][key].as_str().map(ShortString::from);
            let headers = capture["headers"].as_object().cloned().unwrap_or_default();
            let mut properties = BasicProperties::default()
                .with_headers(json_to_field_table(&headers))
                .with_delivery_mode(2);
            for (key, set) in [
                (
                    "content_type",
                    BasicProperties::with_content_type as fn(_, _) -> _,
                ),
                ("content_encoding", BasicProperties::with_content_encoding),
                ("correlation_id", BasicProperties::with_correlation_id),
                ("reply_to", BasicProperties::with_reply_to),
            ] {
                if let Some(value) = text(key) {
                    properties = set(properties, value);
                }
            }
            let body = capture["body"].as_str().unwrap_or_default();
            RawMessage {
                properties,
                body: body.as_bytes().to_vec(),
            }
        })
        .collect()
}

/// A real task capture with random mutations of its headers, body and
/// properties.
pub fn task_message() -> impl Strategy<Value = RawMessage> {
    (
        select(task_captures()),
        vec(header_mutation(), 0..4),
        body_mutation(),
        vec(property_mutation(), 0..3),
    )
        .prop_map(|(mut message, headers, body, properties)| {
            let mut table = message.properties.headers().clone().unwrap_or_default();
            for mutation in headers {
                mutation.apply(&mut table);
            }
            message.properties = message.properties.with_headers(table);
            body.apply(&mut message.body);
            for mutation in properties {
                message.properties = mutation.apply(message.properties);
            }
            message
        })
}

/// A task message that decodes, for one of `tasks` (names registered
/// with a worker, or not), with random arguments, retries and time limits:
/// what reaches a worker's handlers.
pub fn task_message_for(tasks: Vec<String>) -> impl Strategy<Value = RawMessage> {
    let kwargs = btree_map(
        select(vec![
            "x", "y", "start", "end", "seconds", "message", "failures", "z",
        ]),
        argument(),
        0..4,
    );
    let retries = prop_oneof![4 => 0i64..5, 1 => any::<i64>()];
    let seconds = prop_oneof![4 => 0.0..100.0f64, 1 => -1.0e3..1.0e3f64];
    (
        select(task_captures()),
        select(tasks),
        vec(argument(), 0..4),
        kwargs,
        prop::option::of(retries),
        prop::option::of((seconds, any::<bool>())),
    )
        .prop_map(|(mut message, task, args, kwargs, retries, limit)| {
            let mut table = message.properties.headers().clone().unwrap_or_default();
            table.insert("task".into(), long_string(task.as_bytes()));
            if let Some(retries) = retries {
                table.insert("retries".into(), AMQPValue::LongLongInt(retries));
            }
            if let Some((seconds, hard)) = limit {
                let limit = AMQPValue::Double(seconds);
                let pair = match hard {
                    true => vec![limit, AMQPValue::Void],
                    false => vec![AMQPValue::Void, limit],
                };
                table.insert("timelimit".into(), AMQPValue::FieldArray(pair.into()));
            }
            let table = without(&table, &["eta", "expires"]);
            let kwargs: Map<String, Value> =
                kwargs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let body = Value::Array(vec![Value::Array(args), Value::Object(kwargs), Value::Null]);
            message.properties = message.properties.with_headers(table);
            message.body = body.to_string().into_bytes();
            message
        })
}

/// A task argument: mostly integers and floats, which the demo tasks take,
/// sometimes any JSON.
fn argument() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => any::<i64>().prop_map(Value::from),
        1 => (-1.0e3..1.0e3f64).prop_map(Value::from),
        1 => json_value(),
    ]
}

/// A real result capture with its body mutated, or random JSON in the
/// shape of a result.
pub fn result_body() -> impl Strategy<Value = Vec<u8>> {
    let mutated = (select(result_captures()), body_mutation()).prop_map(|(mut body, mutation)| {
        mutation.apply(&mut body);
        body
    });
    let shaped = btree_map(
        select(vec![
            "status",
            "result",
            "traceback",
            "children",
            "date_done",
            "task_id",
        ]),
        json_value(),
        0..6,
    )
    .prop_map(|fields| {
        let object: Map<String, Value> =
            fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        Value::Object(object).to_string().into_bytes()
    });
    prop_oneof![mutated, shaped]
}

/// Any JSON value, a few levels deep, with the numbers and strings that
/// break decoders: extreme integers and floats, dates, unicode.
pub fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::String),
        datetime().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Any AMQP field value, a few levels deep: every type of the AMQP 0-9-1
/// field table, strings that are not UTF-8 included.
pub fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        Just(AMQPValue::Void),
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>().prop_map(AMQPValue::Float),
        any::<f64>().prop_map(AMQPValue::Double),
        any::<(u8, u32)>()
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        "\\PC{0,60}".prop_map(|s| AMQPValue::ShortString(short_string(&s))),
        vec(any::<u8>(), 0..60).prop_map(|b| long_string(&b)),
        datetime().prop_map(|s| long_string(s.as_bytes())),
        vec(any::<u8>(), 0..60).prop_map(|b| AMQPValue::ByteArray(ByteArray::from(b))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(|items| AMQPValue::FieldArray(items.into())),
            btree_map("\\PC{0,12}", inner, 0..6).prop_map(|map| {
                let mut table = FieldTable::default();
                for (key, value) in map {
                    table.insert(short_string(&key), value);
                }
                AMQPValue::FieldTable(table)
            }),
        ]
    })
}

/// ISO-8601-looking text with every part out of range now and then.
fn datetime() -> impl Strategy<Value = String> {
    (
        (0u32..100_000, 0u32..14, 0u32..33),
        (0u32..26, 0u32..61, 0u32..62),
        select(vec!["", ".617982", ".1234567890123", "."]),
        select(vec!["+00:00", "Z", "-23:59", "+25:00", "", "+0530"]),
    )
        .prop_map(|((y, mo, d), (h, mi, s), fraction, zone)| {
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{fraction}{zone}")
        })
}

/// Tables nested `depth` levels deep, alternating with arrays.
pub fn nested(depth: usize) -> AMQPValue {
    let mut value = AMQPValue::LongLongInt(1);
    for level in 0..depth {
        value = match level % 2 {
            0 => AMQPValue::FieldArray(FieldArray::from(vec![value])),
            _ => {
                let mut table = FieldTable::default();
                table.insert("a".into(), value);
                AMQPValue::FieldTable(table)
            }
        };
    }
    value
}

/// `table` without the headers named `names`.
fn without(table: &FieldTable, names: &[&str]) -> FieldTable {
    let mut copy = FieldTable::default();
    for (key, value) in table.inner() {
        if !names.contains(&key.as_str()) {
            copy.insert(key.clone(), value.clone());
        }
    }
    copy
}

/// `text` cut to the 255 bytes an AMQP short string holds.
fn short_string(text: &str) -> ShortString {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&text[..end])
}

fn long_string(bytes: &[u8]) -> AMQPValue {
    AMQPValue::LongString(LongString::from(bytes.to_vec()))
}
