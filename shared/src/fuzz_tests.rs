//! Property tests of the decoders: random and mutated Celery messages
//! decode to a message or to a typed error, never to a panic, and what
//! celeriac decodes it can encode and decode again.
//!
//! `cargo test` runs a few hundred cases per property; `scripts/fuzz`
//! (`PROPTEST_CASES=100000`) many more.

use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use proptest::prelude::*;

use crate::field_table::MAX_HEADER_DEPTH;
use crate::fuzzing::{RawMessage, nested, result_body, task_captures, task_message};
use crate::{
    Error, ResultMessage, TaskMessage, decode_arguments, delay_until, field_table_to_json,
    json_to_field_table,
};

/// The default size limit.
const LIMIT: usize = crate::DEFAULT_MAX_MESSAGE_SIZE;

/// Decodes, then exercises everything a worker does with a decoded
/// message before running it.
fn decode_like_a_worker(message: &RawMessage) -> Result<TaskMessage, Error> {
    let decoded = TaskMessage::decode(&message.properties, &message.body, LIMIT)?;
    let now = Utc::now();
    let _ = decoded.headers.expires.is_some_and(|e| e <= now);
    let _ = decoded
        .headers
        .eta
        .and_then(|eta| delay_until(eta.to_utc(), now));
    let (args, kwargs) = (decoded.args.clone(), decoded.kwargs.clone());
    let _ = decode_arguments::<AddArgs>("demo.add", args.clone(), kwargs.clone());
    let _ = decode_arguments::<SumRangeArgs>("demo.sum_range", args.clone(), kwargs.clone());
    let _ = decode_arguments::<SleepArgs>("demo.sleep", args, kwargs);
    Ok(decoded)
}

/// `message` with its pass-through headers as they come back from a trip
/// through an AMQP table: integers beyond `i64` become doubles, as
/// [`json_to_field_table`] documents.
fn as_sent_again(mut message: TaskMessage) -> TaskMessage {
    let round_trip = |map: &serde_json::Map<String, serde_json::Value>| {
        field_table_to_json(&json_to_field_table(map))
    };
    let headers = &mut message.headers;
    headers.extra = round_trip(&headers.extra);
    headers.stamps = round_trip(&headers.stamps);
    if let Some(stamped) = headers.stamped_headers.take() {
        let map = serde_json::Map::from_iter([("v".to_owned(), stamped)]);
        headers.stamped_headers = round_trip(&map).remove("v");
    }
    message
}

proptest! {
    #[test]
    fn a_mutated_task_message_decodes_or_fails_with_a_typed_error(message in task_message()) {
        let Ok(decoded) = decode_like_a_worker(&message) else {
            return Ok(());
        };
        // What celeriac accepted it can send again (a retry of an eager
        // task re-encodes it), and that decodes to the same message.
        let Ok((body, properties)) = decoded.encode(Utc::now()) else {
            return Ok(());
        };
        let again = TaskMessage::decode(&properties, &body, usize::MAX);
        prop_assert!(again.is_ok(), "re-encoded message fails: {again:?}");
        prop_assert_eq!(again.ok(), Some(as_sent_again(decoded)));
    }

    #[test]
    fn random_bytes_under_any_properties_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        capture in proptest::sample::select(task_captures()),
    ) {
        let _ = TaskMessage::decode(&capture.properties, &body, LIMIT);
        let _ = TaskMessage::decode(&BasicProperties::default(), &body, LIMIT);
        let _ = ResultMessage::decode(&body);
    }

    #[test]
    fn a_mutated_result_decodes_or_fails_with_a_typed_error(body in result_body()) {
        if let Ok(result) = ResultMessage::decode(&body) {
            let _ = result.is_ready();
            let _ = result.outcome();
            let _ = result.encode();
        }
    }
}

fn headers_with(name: &str, value: AMQPValue) -> BasicProperties {
    let capture = task_captures().remove(0);
    let mut table = capture.properties.headers().clone().unwrap_or_default();
    table.insert(name.into(), value);
    capture.properties.with_headers(table)
}

#[test]
fn deeply_nested_json_bodies_are_refused_without_overflowing_the_stack() {
    for depth in [127, 129, 10_000, 1_000_000] {
        let body = ["[".repeat(depth), "]".repeat(depth)].concat();
        let properties = task_captures().remove(0).properties;
        let decoded = TaskMessage::decode(&properties, body.as_bytes(), usize::MAX);
        assert!(decoded.is_err(), "depth {depth}");
        assert!(ResultMessage::decode(body.as_bytes()).is_err());
    }
}

/// Runs `test` on a thread with a big stack, for the test's own deeply
/// nested values (building and dropping them recurses), while `test` runs
/// the code under test through [`on_a_small_stack`].
fn with_a_big_stack(test: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().stack_size(512 << 20);
        thread
            .spawn_scoped(scope, test)
            .expect("a thread")
            .join()
            .expect("no panic");
    });
}

/// Runs `code` on a thread with a 1 MiB stack: half of what a worker's
/// threads have (tokio's and lapin's 2 MiB).
fn on_a_small_stack<T: Send>(code: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().stack_size(1 << 20);
        thread
            .spawn_scoped(scope, code)
            .expect("a thread")
            .join()
            .expect("no panic")
    })
}

#[test]
fn deeply_nested_header_tables_are_refused_without_overflowing_the_stack() {
    with_a_big_stack(|| {
        let body = br#"[[], {}, null]"#;
        for name in ["stamps", "stamped_headers", "timelimit", "x-custom"] {
            let properties = headers_with(name, nested(100_000));
            let decoded = on_a_small_stack(|| TaskMessage::decode(&properties, body, LIMIT));
            let err = decoded.unwrap_err();
            assert!(
                matches!(err, Error::InvalidHeader { .. }),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains("nested deeper than 128"), "{err}");
        }
        let properties = headers_with("x-custom", nested(MAX_HEADER_DEPTH));
        on_a_small_stack(|| TaskMessage::decode(&properties, body, LIMIT)).unwrap();
        let table = properties.headers().clone().unwrap_or_default();
        let deeper = headers_with("x-custom", nested(100_000));
        let deeper = deeper.headers().clone().unwrap_or_default();
        on_a_small_stack(|| (field_table_to_json(&table), field_table_to_json(&deeper)));
    });
}

#[test]
fn very_large_header_arrays_decode_or_fail_quickly() {
    let body = br#"[[], {}, null]"#;
    let huge = || AMQPValue::FieldArray(vec![AMQPValue::LongLongInt(i64::MAX); 1_000_000].into());
    let mut table = FieldTable::default();
    table.insert("task".into(), AMQPValue::LongString("demo.add".into()));
    table.insert("id".into(), AMQPValue::LongString("1".into()));
    table.insert("stamped_headers".into(), huge());
    table.insert("x-custom".into(), huge());
    let properties = BasicProperties::default().with_headers(table);
    let decoded = TaskMessage::decode(&properties, body, LIMIT).unwrap();
    assert!(decoded.headers.extra.contains_key("x-custom"));
    let err = TaskMessage::decode(&headers_with("timelimit", huge()), body, LIMIT).unwrap_err();
    assert!(err.to_string().contains("timelimit"), "{err}");
}

#[test]
fn floats_in_arguments_decode_to_exactly_the_number_sent() {
    // Found by the fuzzer: without serde_json's `float_roundtrip`, some
    // floats parsed one unit in the last place off what Python sent.
    let sent = 2.370_598_566_315_071_8e-17_f64;
    let capture = task_captures().remove(0);
    let body = format!("[[{sent:?}], {{}}, null]");
    let decoded = TaskMessage::decode(&capture.properties, body.as_bytes(), LIMIT).unwrap();
    assert_eq!(decoded.args[0].as_f64(), Some(sent));
}

/// Argument shapes of the demo tasks: integers, and a float.
#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "only decoded")]
struct AddArgs {
    x: i64,
    y: i64,
}

#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "only decoded")]
struct SumRangeArgs {
    start: i64,
    end: i64,
}

#[derive(serde::Deserialize)]
#[allow(dead_code, reason = "only decoded")]
struct SleepArgs {
    seconds: f64,
}
