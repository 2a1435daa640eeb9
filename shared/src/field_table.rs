//! Conversion between AMQP field tables and JSON, the way Python's py-amqp
//! encodes Celery headers.

use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Number, Value};

/// How deep tables and arrays may nest inside one header: deeper ones are
/// refused when decoding a task (as `serde_json` refuses bodies nested
/// deeper than 128), so that no header can exhaust the stack.
pub(crate) const MAX_HEADER_DEPTH: usize = 128;

/// Converts AMQP application headers into a JSON object.
///
/// Every AMQP integer type becomes a JSON integer, strings (short and long)
/// become JSON strings (invalid UTF-8 is replaced), void becomes `null`,
/// timestamps become integers (seconds since the epoch), byte arrays become
/// strings. Tables and arrays nested deeper than 128 levels become `null`.
pub fn field_table_to_json(table: &FieldTable) -> Map<String, Value> {
    (table.inner().iter())
        .map(|(key, value)| (key.as_str().to_owned(), amqp_to_json(value)))
        .collect()
}

/// Converts a JSON object into AMQP application headers.
///
/// Integers become signed 64-bit (`l`), other numbers (integers beyond
/// `i64` included) doubles (`d`), strings long strings (`S`), `null` void
/// (`V`), arrays field arrays (`A`) and objects nested tables (`F`): all
/// types py-amqp reads back as the same Python values.
///
/// Keys longer than 255 bytes cannot be AMQP header names and are skipped.
pub fn json_to_field_table(map: &Map<String, Value>) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in map {
        if let Ok(key) = ShortString::try_new(key.as_str()) {
            table.insert(key, json_to_amqp(value));
        }
    }
    table
}

/// Converts one AMQP value into JSON, as [`field_table_to_json`] does.
pub(crate) fn amqp_to_json(value: &AMQPValue) -> Value {
    to_json(value, MAX_HEADER_DEPTH)
}

/// Whether tables and arrays in `value` nest deeper than `levels`. Looks
/// no deeper than that, so it never recurses further.
pub(crate) fn nests_deeper_than(value: &AMQPValue, levels: usize) -> bool {
    match value {
        AMQPValue::FieldArray(items) => {
            levels == 0 || (items.as_slice().iter()).any(|v| nests_deeper_than(v, levels - 1))
        }
        AMQPValue::FieldTable(table) => {
            levels == 0 || (table.inner().values()).any(|v| nests_deeper_than(v, levels - 1))
        }
        _ => false,
    }
}

/// An AMQP integer of any width as an `i64`; `None` for other types.
pub fn amqp_integer(value: &AMQPValue) -> Option<i64> {
    match *value {
        AMQPValue::ShortShortInt(n) => Some(n.into()),
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::LongLongInt(n) => Some(n),
        _ => None,
    }
}

/// An AMQP long or short string that is UTF-8; `None` otherwise.
pub fn amqp_str(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
        AMQPValue::ShortString(text) => Some(text.as_str()),
        _ => None,
    }
}

/// Header `name` of `headers` as an integer (any AMQP width).
pub fn integer_header(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    amqp_integer(headers?.inner().get(name)?)
}

/// Header `name` of `headers` as UTF-8 text.
pub fn string_header<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a str> {
    amqp_str(headers?.inner().get(name)?)
}

/// Sets a queue's `x-expires` in `arguments`: RabbitMQ deletes the queue
/// once it was unused (no consumer, no `basic.get`, no redeclaration) for
/// `unused`, to the millisecond.
pub fn expire_unused(arguments: &mut FieldTable, unused: std::time::Duration) {
    let millis = i64::try_from(unused.as_millis()).unwrap_or(i64::MAX);
    arguments.insert("x-expires".into(), AMQPValue::LongLongInt(millis));
}

/// Converts `value`, with `levels` more levels of tables and arrays
/// allowed.
fn to_json(value: &AMQPValue, levels: usize) -> Value {
    let nested = |value| to_json(value, levels - 1);
    match value {
        AMQPValue::FieldArray(_) | AMQPValue::FieldTable(_) if levels == 0 => Value::Null,
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Timestamp(n) => Value::from(*n),
        AMQPValue::Float(f) => float_to_json(f64::from(*f)),
        AMQPValue::Double(f) => float_to_json(*f),
        AMQPValue::DecimalValue(d) => {
            float_to_json(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into()),
        AMQPValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b.as_slice()).into()),
        AMQPValue::FieldArray(items) => Value::Array(items.as_slice().iter().map(nested).collect()),
        AMQPValue::FieldTable(table) => Value::Object(
            (table.inner().iter())
                .map(|(key, value)| (key.as_str().to_owned(), nested(value)))
                .collect(),
        ),
        AMQPValue::Void => Value::Null,
    }
}

fn float_to_json(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// Converts one JSON value into AMQP, as [`json_to_field_table`] does.
pub(crate) fn json_to_amqp(value: &Value) -> AMQPValue {
    match value {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(items) => AMQPValue::FieldArray(FieldArray::from(
            items.iter().map(json_to_amqp).collect::<Vec<_>>(),
        )),
        Value::Object(map) => AMQPValue::FieldTable(json_to_field_table(map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_queue_expires_after_its_unused_time_in_milliseconds() {
        let mut arguments = FieldTable::default();
        expire_unused(&mut arguments, std::time::Duration::from_secs(10));
        let expires = arguments.inner().get("x-expires");
        assert_eq!(expires, Some(&AMQPValue::LongLongInt(10_000)));
    }

    #[test]
    fn headers_round_trip_through_a_field_table() {
        let headers = json!({
            "task": "demo.add", "retries": 2, "timelimit": [30, null],
            "ignore_result": false, "shadow": null, "stamps": {}, "ratio": 0.5,
        });
        let map = headers.as_object().cloned().unwrap_or_default();
        assert_eq!(field_table_to_json(&json_to_field_table(&map)), map);
    }

    #[test]
    fn tables_nested_deeper_than_the_limit_become_null() {
        let mut value = AMQPValue::LongLongInt(1);
        for _ in 0..MAX_HEADER_DEPTH + 1 {
            value = AMQPValue::FieldArray(vec![value].into());
        }
        assert!(nests_deeper_than(&value, MAX_HEADER_DEPTH));
        let AMQPValue::FieldArray(inner) = &value else {
            unreachable!()
        };
        assert!(!nests_deeper_than(&inner.as_slice()[0], MAX_HEADER_DEPTH));
        let mut json = amqp_to_json(&value);
        for _ in 0..MAX_HEADER_DEPTH {
            json = json[0].take();
        }
        assert_eq!(json, Value::Null);
    }

    #[test]
    fn every_integer_width_reads_as_a_json_integer() {
        let mut table = FieldTable::default();
        table.insert("a".into(), AMQPValue::ShortShortUInt(5));
        table.insert("b".into(), AMQPValue::LongInt(-7));
        table.insert("c".into(), AMQPValue::ShortString("x".into()));
        let json = field_table_to_json(&table);
        assert_eq!(Value::Object(json), json!({"a": 5, "b": -7, "c": "x"}));
    }
}
